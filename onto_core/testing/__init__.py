"""The connector author's kit: conformance suites and helpers for testing components.

A connector's tests subclass a suite and supply one factory fixture::

    from onto_core.testing import SinkConformance

    class TestMySink(SinkConformance):
        @pytest.fixture
        def sink_factory(self): ...

Installing onto-core also installs a pytest plugin (``onto_core.testing.pytest_plugin``)
with the fixtures listed there.
"""

from __future__ import annotations

import pytest

# Before the import below, so failed asserts inside the suites show their values.
pytest.register_assert_rewrite("onto_core.testing.conformance")

from onto_core.runtime import running  # noqa: E402
from onto_core.testing.conformance import (  # noqa: E402
    JSON_VALUES,
    DatastoreConformance,
    SinkConformance,
    SourceConformance,
    SourceHarness,
    broken_promise,
    call,
    run,
)
from onto_core.testing.processes import json_lines, npm_ci, onto_run  # noqa: E402
from onto_core.testing.views import built_views, differing_views, final_views  # noqa: E402

__all__ = [
    "JSON_VALUES",
    "DatastoreConformance",
    "SinkConformance",
    "SourceConformance",
    "SourceHarness",
    "broken_promise",
    "built_views",
    "call",
    "differing_views",
    "final_views",
    "json_lines",
    "npm_ci",
    "onto_run",
    "run",
    "running",
]
