"""``FirestoreSink``: view updates materialized as Firestore documents.

Each view update (``{view, key, fields, version, removed, data}``, as the ``view``
processor emits it) goes to the document its ``path`` template names, e.g.
``users/{user_id}/meetingSessions/{meeting_id}``, filled from the update's key fields.
A batch is written with one Firestore commit.

Versioned: the document holds the view's data plus ``version_field`` (``_version`` by
default). An update whose version is not newer than the stored one is dropped, so an older
version never overwrites a newer one, and a redelivered update changes nothing. A removed
view deletes its document and leaves a tombstone (in ``tombstones_collection``) with the
removal's version, so a late, older update cannot bring the document back.

Each commit carries preconditions on what it read (``exists=False`` for a new document,
the ``update_time`` read for an existing one), so two sink instances writing the same
document never let the older version win on real Firestore: the losing commit fails,
re-reads and retries. The npm emulator checks ``exists`` but not ``update_time``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, field_validator

from onto_core.builtin.view import newest_per_target, update_parts
from onto_core.errors import OntoError, SinkError
from onto_core.protocols import Guarantee, Message, RuntimeContext
from onto_core.runtime import SOURCE_ID_HEADER
from onto_firestore.datastore import check_collection, component_client
from onto_firestore.tasks import TaskOutcome

__all__ = ["FirestoreSink", "document_path"]

_PLACEHOLDER = re.compile(r"\{([^{}/]+)\}")
# Concurrent sink instances that keep beating this one to the same documents: retries.
_COMMIT_ATTEMPTS = 10


def document_path(template: str, fields: dict[str, Any]) -> str:
    """``template`` with each ``{name}`` replaced by ``fields[name]``.

    ``KeyError`` naming the missing field; ``ValueError`` when a value holds a ``/``
    (it would change the path's shape).
    """

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in fields:
            raise KeyError(name)
        value = str(fields[name])
        if not value or "/" in value:
            raise ValueError(f"field {name!r} = {value!r} cannot be a path segment")
        return value

    return _PLACEHOLDER.sub(fill, template)


class FirestoreSink:
    """Writes view updates to Firestore documents, newest version wins, in batches."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE, Guarantee.EXACTLY_ONCE}
    )
    max_batch_size: ClassVar[int] = 200  # two writes per update at most, 500 per commit

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        path: str = Field(
            description=(
                "Document path template, e.g. 'users/{user_id}/meetingSessions/{meeting_id}';"
                " placeholders are the view's key fields."
            )
        )
        project: str | None = Field(
            None,
            description=(
                "Google Cloud project; default: the pipeline's firestore datastore's project,"
                " else $GOOGLE_CLOUD_PROJECT."
            ),
        )
        database: str = Field("(default)", description="Firestore database id.")
        emulator_host: str | None = Field(
            None, description="host:port of a Firestore emulator (default: the datastore's)."
        )
        version_field: str = Field("_version", description="Document field holding the version.")
        rpc_timeout: float = Field(
            30.0,
            gt=0,
            description=(
                "Seconds one read or commit may take, transient errors retried within it;"
                " past it the batch fails and the pipeline's retry policy takes over."
            ),
        )
        tombstones_collection: str = Field(
            "_onto_tombstones", description="Where removed views' versions are kept."
        )

        @field_validator("path")
        @classmethod
        def _path_names_a_document(cls, path: str) -> str:
            parts = path.split("/")
            if len(parts) % 2 or any(not p for p in parts):
                raise ValueError(
                    f"path {path!r} must name a document: an even number of non-empty "
                    "segments, e.g. 'users/{user_id}/meetingSessions/{meeting_id}'"
                )
            return path

    def __init__(self, config: Config) -> None:
        self.config = config
        check_collection(config.tombstones_collection)
        self._client: firestore.Client | None = None
        self._own_client = False
        self._ctx: RuntimeContext | None = None

    async def start(self, ctx: RuntimeContext) -> None:
        """Connect: through the pipeline's firestore datastore unless told otherwise."""
        self._ctx = ctx
        config = self.config
        self._client, self._own_client = await component_client(
            ctx, "firestore sink", SinkError, config.project, config.database, config.emulator_host
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._own_client:
            client.close()  # type: ignore[no-untyped-call]

    async def write(self, messages: list[Message]) -> None:
        """Write ``messages`` (view updates) in one commit; returns once Firestore confirmed."""
        if self._client is None:
            raise SinkError.at(self._ctx, "the firestore sink was used before start(ctx)")
        await asyncio.to_thread(self._commit, self._client, self._latest(messages))

    def _latest(self, messages: list[Message]) -> dict[str, tuple[int, dict[str, Any] | None]]:
        """The newest ``(version, data)`` per document path among ``messages``."""
        return newest_per_target(self._target(message) for message in messages)

    def _target(self, message: Message) -> tuple[str, int, dict[str, Any] | None]:
        value = message.value
        if not isinstance(value, dict) or not isinstance(value.get("fields"), dict):
            raise SinkError.at(
                self._ctx,
                f"message {message.id}: expected a view update {{view, key, fields, version,"
                f" removed, data}}, got {type(value).__name__}",
            )
        try:
            path = document_path(self.config.path, value["fields"])
        except KeyError as exc:
            raise SinkError.at(
                self._ctx,
                f"message {message.id}: path {self.config.path!r} needs field {exc.args[0]!r},"
                f" but the view's fields are {sorted(value['fields'])}",
            ) from None
        except ValueError as exc:
            raise SinkError.at(self._ctx, f"message {message.id}: {exc}") from None
        try:
            version, data = update_parts(message)
        except ValueError as exc:
            raise SinkError.at(self._ctx, str(exc)) from None
        return path, version, data

    def _tombstone(self, client: firestore.Client, path: str) -> Any:
        # One flat collection: a document id cannot hold '/', and '|' cannot occur in the
        # segments the path template produces from key fields... unless a key holds one;
        # '|' is doubled first so distinct paths never share a tombstone.
        doc_id = path.replace("|", "||").replace("/", "|")
        return client.collection(self.config.tombstones_collection).document(doc_id)

    def _plan(
        self,
        client: firestore.Client,
        latest: dict[str, tuple[int, dict[str, Any] | None]],
        read: Callable[[list[Any]], Iterable[Any]],
        batch: firestore.WriteBatch,
        guarded: bool,
    ) -> None:
        """Read the targets of ``latest`` with ``read`` and add the winning writes to ``batch``.

        ``guarded`` adds preconditions on what was read (a plain commit needs them; inside
        a transaction the transaction itself guards the reads).
        """
        vf = self.config.version_field
        paths = list(latest)
        refs = [client.document(p) for p in paths]
        tombs = [self._tombstone(client, p) for p in paths]
        snaps = {s.reference.path: s for s in read([*refs, *tombs])}

        def unchanged(read_time: Any) -> Any:
            return client.write_option(last_update_time=read_time) if guarded else None

        for path, ref, tomb in zip(paths, refs, tombs, strict=True):
            version, data = latest[path]
            doc, stone = snaps.get(ref.path), snaps.get(tomb.path)
            doc_data, read_time = None, None
            if doc is not None and doc.exists:
                doc_data, read_time = doc.to_dict() or {}, doc.update_time
            stored = int(doc_data.get(vf, 0)) if doc_data is not None else 0
            if stone is not None and stone.exists:
                stored = max(stored, int((stone.to_dict() or {}).get(vf, 0)))
            if version <= stored:
                continue  # older or the same: the newer document stays
            if data is None:
                if doc_data is not None:
                    batch.delete(ref, option=unchanged(read_time))
                batch.set(tomb, {vf: version, "path": path})
                continue
            body = {**data, vf: version}
            if doc_data is None:
                if guarded:
                    batch.create(ref, body)
                else:
                    batch.set(ref, body)
            elif set(doc_data) - set(body):
                # Delete then set in this commit: a plain set would do on real Firestore,
                # but the npm emulator merges a set into the old fields.
                batch.delete(ref, option=unchanged(read_time))
                batch.set(ref, body)
            else:
                batch.set(ref, body)
                if guarded:
                    batch._write_pbs[-1].current_document.update_time = read_time

    def _commit(
        self, client: firestore.Client, latest: dict[str, tuple[int, dict[str, Any] | None]]
    ) -> None:
        timeout = self.config.rpc_timeout
        retry = self._retry()
        last: Exception | None = None
        for _ in range(_COMMIT_ATTEMPTS):
            batch = client.batch()
            try:
                self._plan(
                    client,
                    latest,
                    lambda refs: client.get_all(refs, retry=retry, timeout=timeout),
                    batch,
                    guarded=True,
                )
            except gexc.GoogleAPIError as exc:
                raise SinkError.at(self._ctx, f"firestore read failed: {exc}") from exc
            if not batch._write_pbs:
                return
            try:
                batch.commit(retry=retry, timeout=timeout)
                return
            except (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound) as exc:
                last = exc  # another writer got there first: re-read and decide again
            except gexc.GoogleAPIError as exc:
                raise SinkError.at(self._ctx, f"firestore commit failed: {exc}") from exc
        raise SinkError.at(
            self._ctx, f"gave up after {_COMMIT_ATTEMPTS} conflicting commits: {last}"
        )

    def _retry(self) -> gretry.Retry:
        return gretry.Retry(
            predicate=gretry.if_transient_error,
            initial=0.05,
            maximum=1.0,
            timeout=self.config.rpc_timeout,
        )

    async def write_exactly_once(
        self, outputs: list[Message], consumed: list[Message], source: Any
    ) -> int:
        """Commit each consumed trigger together with the views built from it.

        With a ``firestore_tasks`` source, each consumed trigger gets one Firestore
        transaction (``FirestoreTaskSource.commit_task``): the views that came from it
        (the runtime names the consumed message in each output's ``onto-source-id``
        header) are written, versioned as usual, in the same commit that claims the
        trigger's version and marks it done, or not at all. With any other source the
        writes are the usual idempotent ones (an older or equal version never wins).
        Returns how many outputs were committed.
        """
        client = self._client
        if client is None:
            raise SinkError.at(self._ctx, "the firestore sink was used before start(ctx)")
        commit_task = getattr(source, "commit_task", None)
        if commit_task is None:
            await self.write(outputs)
            return len(outputs)
        by_input: dict[str, list[Message]] = {m.id: [] for m in consumed}
        for out in outputs:
            owner = out.headers.get(SOURCE_ID_HEADER)
            if owner not in by_input:
                raise SinkError.at(
                    self._ctx,
                    f"message {out.id}: its {SOURCE_ID_HEADER} header {owner!r} names none of"
                    " the consumed triggers",
                )
            by_input[owner].append(out)
        timeout = self.config.rpc_timeout
        written = 0
        for trigger in consumed:
            latest = self._latest(by_input[trigger.id])

            def stage(
                transaction: firestore.Transaction,
                latest: dict[str, tuple[int, dict[str, Any] | None]] = latest,
            ) -> Callable[[firestore.Transaction], None]:
                staged = client.batch()
                self._plan(
                    client,
                    latest,
                    lambda refs: transaction.get_all(refs, timeout=timeout),
                    staged,
                    guarded=False,
                )

                def write(into: firestore.Transaction) -> None:
                    into._add_write_pbs(staged._write_pbs)

                return write

            try:
                outcome = await asyncio.to_thread(commit_task, trigger, stage)
            except OntoError as exc:
                raise SinkError.at(self._ctx, str(exc)) from exc
            if outcome is TaskOutcome.APPLIED:
                written += len(by_input[trigger.id])
        return written
