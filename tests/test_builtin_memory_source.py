"""The memory source against the shared source conformance suite."""

from __future__ import annotations

import asyncio
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


@pytest.mark.parametrize(("keep", "kept"), [(None, [0, 1, 2, 3, 4]), (2, [3, 4]), (0, [])])
def test_keep_acked_bounds_the_channels_record_of_acks(
    onto_plugins_reset: None, keep: int | None, kept: list[int]
) -> None:
    channel("bounded").put(*range(5))
    source = MemorySource(MemorySource.Config(channel="bounded", keep_acked=keep))

    async def scenario() -> None:
        messages = await source.read_batch(5)
        await source.ack(messages[0])
        await source.ack_batch(messages[1:])

    asyncio.run(scenario())
    assert [m.value for m in channel("bounded").acked] == kept
