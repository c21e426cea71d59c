"""Running a whole runtime in a background thread: for embedding, WSGI servers and tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from onto_core.config import OntoConfig, parse_config
from onto_core.hookspecs import hookimpl
from onto_core.plugins import register_plugin, unregister_plugin
from onto_core.runtime._runtime import Runtime

__all__ = ["running"]


@contextlib.contextmanager
def running(
    config: OntoConfig | str,
    datastore: Any = None,
    timeout: float = 20.0,
    tracer_provider: Any = None,
) -> Iterator[Runtime]:
    """Run ``config`` (a config or its YAML text) in a background thread.

    ``tracer_provider``: an OpenTelemetry SDK ``TracerProvider`` to record traces with
    (see ``Runtime``).

    Yields the runtime once every component has started (``runtime_started`` has run, so
    shared servers listen), and stops it, draining, when the block ends. An error the
    runtime raised is re-raised there.
    """
    parsed = parse_config(config, "test-config") if isinstance(config, str) else config
    runtime = Runtime(parsed, datastore=datastore, tracer_provider=tracer_provider)
    started = threading.Event()

    class Started:
        @hookimpl(trylast=True)
        def runtime_started(self, runtime: Runtime) -> None:
            started.set()

    hook = register_plugin(Started(), name=f"onto-running-{id(runtime)}")
    loop = asyncio.new_event_loop()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            loop.run_until_complete(runtime.run())
        except BaseException as exc:
            errors.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=serve, name="onto-runtime", daemon=True)
    thread.start()
    try:
        if not started.wait(timeout):
            raise TimeoutError(f"the runtime did not start within {timeout}s")
        if errors:
            raise errors[0]
        yield runtime
    finally:
        if thread.is_alive() and not loop.is_closed():
            stopping = asyncio.run_coroutine_threadsafe(runtime.stop(), loop)
            thread.join(timeout)  # run() returns once stopped, or once it ended by itself
            if thread.is_alive():
                raise TimeoutError(f"the runtime did not stop within {timeout}s")
            if not stopping.done():
                # It ended by itself as the stop was handed over, and the loop stopped
                # before running it: run it here, on the loop no thread runs now.
                waiting = asyncio.wrap_future(stopping, loop=loop)
                loop.run_until_complete(asyncio.wait_for(waiting, timeout))
            stopping.result()  # what stop() raised, if it did
        thread.join(timeout)
        if not loop.is_running():
            loop.close()
        unregister_plugin(hook)
    if errors:
        raise errors[0]
