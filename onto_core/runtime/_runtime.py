"""Running every pipeline of a config in one process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from onto_core import tracing
from onto_core._memory import young_threshold
from onto_core.config import ComponentSpec, OntoConfig, load_config
from onto_core.errors import DatastoreError, OntoError, ShutdownTimeout
from onto_core.models.datastore import Datastore
from onto_core.plugins import get_component, get_plugin_manager
from onto_core.prometheus import MetricsServer, RuntimeCollector
from onto_core.runtime._calls import as_async
from onto_core.runtime._pipeline import PipelineRunner
from onto_core.runtime._tracing import PipelineTracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["Runtime", "open_datastore", "run"]

log = logging.getLogger("onto.runtime")


def _default_datastore() -> Datastore:
    info = get_component("datastore", "sqlite")
    return info.cls(info.config_model())  # type: ignore[no-any-return]


@contextlib.contextmanager
def open_datastore(
    config: OntoConfig | str | os.PathLike[str] | None = None,
) -> Iterator[Datastore]:
    """The datastore a config names, open for the ``with`` block and closed after it.

    ``config`` is a config file's path or a parsed config. One that names no datastore
    (or ``None``) gives the embedded sqlite store ``./onto.db``, the one ``onto run``
    would use. For seeding a store, running actions or building views from Python
    against the data a running config serves.
    """
    if config is not None and not isinstance(config, OntoConfig):
        config = load_config(config)
    spec = config.datastore if config is not None else None
    store: Datastore = spec.build() if spec is not None else _default_datastore()
    store.open()
    try:
        yield store
    finally:
        store.close()


class Runtime:
    """Runs a config's pipelines concurrently until each finishes or ``stop`` is called.

    The datastore is opened before any pipeline starts and closed after all have stopped.
    When the config names none but a component needs one, the embedded sqlite store
    (``./onto.db``) is used. On SIGINT/SIGTERM (when ``handle_signals``), reading stops and
    each pipeline gets ``runtime.drain_timeout`` seconds to finish what it holds; a second
    signal stops at once.

    ``metrics_registry`` holds the runtime's Prometheus metrics (``onto_core.prometheus``),
    served on ``runtime.metrics`` when set, and by onto-web at ``/metrics``.

    Traces are recorded when the config sets ``runtime.tracing`` or a ``tracer_provider``
    (an OpenTelemetry SDK ``TracerProvider``) is given, which then takes the place of
    the one the config describes; one the runtime made itself is flushed and shut down
    when it stops, a given one is only flushed (docs/observability.md#traces).
    """

    def __init__(
        self,
        config: OntoConfig,
        datastore: Datastore | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.config = config
        self.datastore = datastore
        self.tracer_provider = tracer_provider
        self.runners: dict[str, PipelineRunner] = {}
        self.metrics_registry = CollectorRegistry(auto_describe=True)
        self.metrics_registry.register(RuntimeCollector(self))
        self.metrics_server: MetricsServer | None = None
        self._stopping: asyncio.Task[bool] | None = None
        self._signal_stop: asyncio.Future[bool] | None = None

    def _needs_datastore(self) -> bool:
        specs: list[ComponentSpec] = []
        for p in self.config.pipelines.values():
            specs += [p.source, *p.processors, *p.sinks]
        return any(getattr(s.info.cls, "needs_datastore", False) for s in specs)

    def _open_datastore(self) -> Datastore | None:
        if self.datastore is None:
            spec = self.config.datastore
            if spec is not None:
                self.datastore = spec.build()
            elif self._needs_datastore():
                self.datastore = _default_datastore()
        if self.datastore is not None:
            try:
                self.datastore.open()
            except OntoError:
                raise
            except Exception as exc:
                raise DatastoreError(f"cannot open the datastore: {exc}") from exc
        return self.datastore

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Each pipeline's counters and latency."""
        snapshot = {}
        for name, runner in self.runners.items():
            snapshot[name] = runner.snapshot()
        return snapshot

    async def run(self, handle_signals: bool = False) -> None:
        """Run every pipeline; returns when all are done. Raises the first pipeline error."""
        provider, own_provider = self._tracing()
        datastore = await asyncio.to_thread(self._open_datastore)
        freeze = self.config.runtime.freeze_gc
        if provider is not None:
            tracing._runtime_traces(+1)
        try:
            self.runners = {
                name: PipelineRunner(
                    p,
                    datastore,
                    freeze_gc=freeze,
                    tracer=None if provider is None else PipelineTracer(provider, name),
                )
                for name, p in self.config.pipelines.items()
            }
            started: list[PipelineRunner] = []
            try:
                self._serve_metrics()
                for runner in self.runners.values():
                    started.append(runner)
                    await runner.start()
                get_plugin_manager().hook.runtime_started(runtime=self)
                log.info("started: %s", ", ".join(self.runners))
                if freeze:
                    self._settle_memory()
                with (
                    self._signals(handle_signals),
                    young_threshold(self.config.runtime.gc_threshold),
                ):
                    await self._run_all()
            finally:
                for runner in started:
                    await runner.close()
                if self.metrics_server is not None:
                    self.metrics_server.stop()
                try:
                    get_plugin_manager().hook.runtime_stopped(runtime=self)
                except Exception:
                    log.exception("a runtime_stopped hook failed")
        finally:
            if provider is not None:
                tracing._runtime_traces(-1)
                await asyncio.to_thread(provider.shutdown if own_provider else provider.force_flush)
            if datastore is not None:
                await as_async(datastore.close)()
            if freeze:
                # What was frozen lived as long as the runtime: the collector gets it
                # back, so a process that runs several in turn frees each one's cycles.
                gc.unfreeze()
            self._log_metrics()

    def _tracing(self) -> tuple[TracerProvider | None, bool]:
        """The tracer provider this run records with, and whether the runtime made it."""
        if self.tracer_provider is not None:
            return self.tracer_provider, False
        settings = self.config.runtime.tracing
        if settings is None:
            return None, False
        return tracing.tracer_provider(settings), True

    def _serve_metrics(self) -> None:
        """Serve ``metrics_registry`` on ``runtime.metrics``, when the config sets it."""
        endpoint = self.config.runtime.metrics
        if endpoint is None:
            return
        server = MetricsServer(self.metrics_registry, endpoint.host, endpoint.port)
        server.start()
        self.metrics_server = server

    @staticmethod
    def _settle_memory() -> None:
        """Collect, then exempt what is alive from later collections (``gc.freeze``).

        Start-up objects (modules, models, configs) live as long as the process; without
        this every full collection walks them all again. Called once every component has
        started; what processors build at start is frozen by their pipeline once due out
        (``PipelineRunner._due``).
        """
        gc.collect()
        gc.freeze()

    async def _run_all(self) -> None:
        tasks = {
            asyncio.create_task(r.run(), name=f"pipeline-{n}"): n for n, r in self.runners.items()
        }
        stats = self.config.runtime.stats_interval
        reporter = asyncio.create_task(self._report(stats)) if stats else None
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if task.cancelled():
                        continue
                    error = task.exception()
                    if error is not None:
                        log.error("pipeline %r failed: %s", tasks[task], error)
                        await self.stop()
                        for other in pending:
                            other.cancel()
                        await asyncio.gather(*pending, return_exceptions=True)
                        if isinstance(error, OntoError) and error.pipeline is None:
                            error.pipeline = tasks[task]
                        raise error
            if self._stopping is not None and not await self._stopping:
                raise ShutdownTimeout(
                    f"in-flight messages were not finished within "
                    f"{self.config.runtime.drain_timeout}s; they will be delivered again"
                )
        finally:
            if reporter is not None:
                reporter.cancel()

    async def stop(self) -> bool:
        """Stop reading and drain every pipeline; False if any was cut short."""
        if self._stopping is None:
            for runner in self.runners.values():
                runner.stop_reading()  # at once, not after the tasks below are scheduled
            timeout = self.config.runtime.drain_timeout

            async def drain() -> bool:
                results = await asyncio.gather(*(r.stop(timeout) for r in self.runners.values()))
                return all(results)

            self._stopping = asyncio.create_task(drain())
        return await self._stopping

    @contextlib.contextmanager
    def _signals(self, enabled: bool) -> Iterator[None]:
        if not enabled:
            yield
            return
        loop = asyncio.get_running_loop()
        received = 0

        def on_signal(signum: int) -> None:
            nonlocal received
            received += 1
            if received == 1:
                log.info("received %s, draining", signal.Signals(signum).name)
                self._signal_stop = asyncio.ensure_future(self.stop())
            else:
                log.warning("received %s again, stopping now", signal.Signals(signum).name)
                for task in asyncio.all_tasks(loop):
                    if task.get_name().startswith("pipeline-"):
                        task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def _report(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._log_metrics()

    def _log_metrics(self) -> None:
        for name, figures in self.metrics().items():
            log.info(
                "metrics %s", json.dumps(figures), extra={"pipeline": name, "metrics": figures}
            )


def run(config: OntoConfig, handle_signals: bool = True) -> Runtime:
    """Run ``config`` to completion in a new event loop; returns the finished runtime."""
    runtime = Runtime(config)
    asyncio.run(runtime.run(handle_signals=handle_signals))
    return runtime
