"""The memory source against the shared source conformance suite."""

from __future__ import annotations

from typing import Any

import pytest

from onto_core.builtin.memory import MemorySource, channel
from onto_core.testing import SourceConformance, SourceHarness


class TestMemorySource(SourceConformance):
    durable = False  # channels live in the process only

    @pytest.fixture
    def source_factory(self, onto_plugins_reset: None) -> SourceHarness:
        config = MemorySource.Config(channel="conformance")

        def write(values: list[Any]) -> None:
            channel("conformance").put(*values)

        return SourceHarness(new_source=lambda: MemorySource(config), write=write)
