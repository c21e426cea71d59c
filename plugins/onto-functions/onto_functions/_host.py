"""What a built function's ``main.py`` calls: one onto runtime per function instance."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from onto_core.config import OntoConfig, load_config
from onto_core.models.datastore import Change, ChangeOp
from onto_core.protocols import Message, RuntimeContext
from onto_core.runtime import maybe_await, running
from onto_functions._events import (
    DocumentEvent,
    EventRejected,
    change_of_event,
    document_event,
    micros,
)
from onto_functions._source import EVENT_ID_HEADER, TaskMode, started_source

__all__ = ["FunctionHost"]

log = logging.getLogger("onto.functions")
_START_TIMEOUT = 60.0


class FunctionHost:
    """Runs a config's pipelines for the functions of one instance.

    The config is read and checked when the host is made (at import of ``main.py``,
    which is the instance's cold start); the runtime, and with it the datastore
    connection, starts on the first invocation, in a thread of its own. It starts then,
    not at import, because the Functions Framework's server may fork after importing,
    and neither threads nor gRPC channels survive a fork.
    """

    def __init__(self, config: OntoConfig) -> None:
        self.config = config
        self.started_at = time.monotonic()
        self._lock = threading.Lock()
        self._stack: contextlib.ExitStack | None = None

    @classmethod
    def from_file(cls, near: str, name: str) -> FunctionHost:
        """The host of config ``name`` in the folder of file ``near`` (``__file__``)."""
        logging.basicConfig(level=os.environ.get("ONTO_LOG_LEVEL", "INFO"))
        return cls(load_config(Path(near).resolve().parent / name))

    # --- invocations --------------------------------------------------------------------

    def handle_event(self, pipeline: str, event: Any) -> None:
        """Run one CloudEvent through ``pipeline``; return once every sink confirmed.

        An event that can never be handled (another type, a payload that is not a
        ``DocumentEventData``) is dead-lettered naming its id and answered 400, which the
        platform does not retry as a failure of the function; a pipeline failure raises, so the
        invocation fails (500) and the platform delivers the event again.
        """
        event_id = _attribute(event, "id") or "(no id)"
        event_type = str(_attribute(event, "type") or "")
        tasks = self._task_mode(pipeline)
        try:
            if tasks is not None:
                document = document_event(event)
            else:
                change = change_of_event(event)
        except EventRejected as exc:
            self.reject(pipeline, event, exc)
            _abort(400, f"event {event_id} rejected: {exc}")
            return
        if tasks is None:
            self.deliver(pipeline, change, event_id, event_type)
        else:
            self.deliver_task(pipeline, document, event_id, event_type)

    def deliver_task(
        self, pipeline: str, event: DocumentEvent, event_id: str, event_type: str = ""
    ) -> str:
        """Task mode: commit the trigger ``event`` carries through ``pipeline`` and wait.

        Returns (and, in a request, answers as the body) the outcome: ``applied``,
        ``taken``, ``stale``, ``gone``, or ``not a task: <why>`` for an event that is no
        task, which is answered from its payload alone: the runtime is not even started
        for it, so it reads nothing. Raises when the commit failed (500: the platform
        delivers the event again).
        """
        tasks = self._task_mode(pipeline)
        if tasks is None:
            raise KeyError(f"pipeline {pipeline!r} has no cloud_event source in task mode")
        why = tasks.not_a_task(event)
        if why is not None:
            answer = f"not a task: {why}"
        else:
            answer = self._source(pipeline).deliver_task(event, event_id, event_type)
        log.info("event %s (%s): %s", event_id, event.path, answer)
        _answer(answer)
        return answer

    def deliver(self, pipeline: str, change: Change, event_id: str, event_type: str = "") -> None:
        """Put one change through ``pipeline`` (a ``cloud_event`` source) and wait."""
        source = self._source(pipeline)
        source.deliver(change, event_id, event_type)

    def handle_firebase_event(self, pipeline: str, event: Any) -> None:
        """Run one ``firestore_fn.on_document_written`` event through ``pipeline``.

        The firebase-functions SDK has decoded the payload already: ``event.data`` is a
        ``Change`` of ``DocumentSnapshot`` (``before``, ``after``).
        """
        snapshot = event.data.after if event.data.after is not None else event.data.before
        path = snapshot.reference.path
        collection, _, doc_id = path.rpartition("/")
        after = event.data.after
        if self._task_mode(pipeline) is not None:
            alive = after is not None and after.exists
            document = DocumentEvent(
                "written",
                path,
                (after.to_dict() or {}) if alive else None,
                after.update_time if alive else None,
            )
            self.deliver_task(pipeline, document, str(event.id))
            return
        if after is None or not after.exists:
            seq = _micros_of(event.time)
            change = Change(seq, collection, doc_id, ChangeOp.DELETE, None, seq / 1e6)
        else:
            seq = _micros_of(after.update_time)
            op = ChangeOp.CREATE if event.data.before is None else ChangeOp.UPDATE
            change = Change(seq, collection, doc_id, op, after.to_dict(), seq / 1e6)
        self.deliver(pipeline, change, str(event.id))

    def handle_request(self, pipeline: str, request: Any) -> Any:
        """Answer one HTTP request with ``pipeline`` (an ``http_function`` source)."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return {"error": "the body must be a JSON object (an API request)", "field": None}, 400
        source = self._source(pipeline)
        try:
            answer = source.submit(body, timeout=source.config.timeout)
        except TimeoutError as exc:
            return {"error": str(exc), "field": None}, 504
        return answer.get("body"), int(answer.get("status", 200))

    def reject(self, pipeline: str, event: Any, error: Exception) -> None:
        """Write ``event`` to ``pipeline``'s dead-letter sink with why it was rejected."""
        event_id = str(_attribute(event, "id") or "")
        attributes: dict[str, str] = {}
        with contextlib.suppress(Exception):  # whatever the envelope holds, if anything
            attributes = {k: str(v) for k, v in event.get_attributes().items()}
        message = Message({"event": attributes, "error": str(error)}, key=event_id, id=event_id)
        message.headers.update(
            {
                "onto-error": f"{type(error).__name__}: {error}",
                "onto-attempts": "1",
                "onto-stage": "source (cloud_event)",
                "onto-pipeline": pipeline,
                "onto-source-id": event_id,
                EVENT_ID_HEADER: event_id,
            }
        )
        log.error("event %s rejected by pipeline %s: %s", event_id, pipeline, error)
        spec = (
            self.config.pipelines[pipeline].dead_letter
            if pipeline in self.config.pipelines
            else None
        )
        if spec is None:
            return
        try:
            asyncio.run(_dead_letter(pipeline, spec, message))
        except Exception as exc:
            log.error("could not dead-letter event %s: %s", event_id, exc)

    # --- the runtime --------------------------------------------------------------------

    def _task_mode(self, pipeline: str) -> TaskMode | None:
        """The task settings of ``pipeline``'s ``cloud_event`` source, if in task mode."""
        spec = self.config.pipelines.get(pipeline)
        tasks = getattr(spec.source.config, "tasks", None) if spec is not None else None
        return tasks if isinstance(tasks, TaskMode) else None

    def _source(self, pipeline: str) -> Any:
        if pipeline not in self.config.pipelines:
            raise KeyError(f"the config has no pipeline {pipeline!r}")
        self._ensure_started()
        return started_source(pipeline, _START_TIMEOUT)

    def _ensure_started(self) -> None:
        with self._lock:
            if self._stack is None:
                stack = contextlib.ExitStack()
                stack.enter_context(running(self.config, timeout=_START_TIMEOUT))
                self._stack = stack
                log.info(
                    "onto pipelines started %.3fs after the function was loaded",
                    time.monotonic() - self.started_at,
                )

    def close(self) -> None:
        """Stop the runtime, draining what it holds (the instance is going away)."""
        with self._lock:
            stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()


def _micros_of(stamp: Any) -> int:
    if isinstance(stamp, str):
        import datetime as dt

        stamp = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return micros(stamp)


def _attribute(event: Any, name: str) -> Any:
    try:
        return event[name]
    except (KeyError, TypeError):
        return None


async def _dead_letter(pipeline: str, spec: Any, message: Message) -> None:
    """Write ``message`` with a dead-letter sink of its own (rejections are rare)."""
    sink = spec.build()
    start = getattr(sink, "start", None)
    if start is not None:
        ctx = RuntimeContext(pipeline, f"dead_letter ({spec.type})", log)
        await maybe_await(start(ctx))
    try:
        await maybe_await(sink.write([message]))
    finally:
        close = getattr(sink, "close", None)
        if close is not None:
            await maybe_await(close())


def _answer(text: str) -> None:
    """Make ``text`` the body of the current request's answer (when there is one)."""
    import flask

    if not flask.has_request_context():
        return

    def body(response: Any) -> Any:
        if response.status_code == 200:
            response.set_data(text)
        return response

    flask.after_this_request(body)


def _abort(status: int, description: str) -> None:
    import flask

    flask.abort(status, description=description)
