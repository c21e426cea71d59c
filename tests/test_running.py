"""``onto_core.testing.running``: a runtime in a background thread, stopped when the block
ends, including a runtime whose pipelines ended on their own just before."""

from __future__ import annotations

import gc
import threading
import warnings

import pytest

from onto_core import plugins
from onto_core.hookspecs import hookimpl
from onto_core.runtime import Runtime
from onto_core.testing import running

FINITE = """
pipelines:
  numbers:
    source: {type: generate, count: 3}
    sinks: [{type: memory, channel: running-out}]
"""


@pytest.mark.parametrize("round_", range(5))
def test_a_block_ending_as_the_runtime_ends_by_itself_stops_cleanly(round_: int) -> None:
    stopped = threading.Event()

    class Stopped:
        @hookimpl
        def runtime_stopped(self, runtime: Runtime) -> None:
            stopped.set()

    name = plugins.register_plugin(Stopped(), name=f"running-tests-{round_}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with running(FINITE, timeout=5) as runtime:
                assert stopped.wait(10), "the finite pipeline ended"
                # The block ends now, while the runtime's thread is finishing on its own.
            gc.collect()
        assert runtime.metrics()["numbers"]["acked"] == 3
        assert not [w for w in caught if "never awaited" in str(w.message)]
    finally:
        plugins.unregister_plugin(name)
