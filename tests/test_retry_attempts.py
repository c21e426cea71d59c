"""``retry.max_attempts``: how often a failing message is tried, as docs/configuration.md says."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field

from onto_core import plugins
from onto_core.builtin.memory import channel
from onto_core.config import parse_config
from onto_core.hookspecs import hookimpl
from onto_core.protocols import Guarantee, Message
from onto_core.runtime import Runtime

tries: Counter[int] = Counter()


class RefusingSink:
    """Refuses every write holding the value 3 (the first ``fail_times`` of them, if set)."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        fail_times: int | None = Field(None, description="Refusals before accepting.")

    def __init__(self, config: Config) -> None:
        self.left = config.fail_times

    def write(self, messages: list[Message]) -> None:
        tries.update(m.value for m in messages)
        if any(m.value == 3 for m in messages) and (self.left is None or self.left > 0):
            if self.left is not None:
                self.left -= 1
            raise ValueError("refused 3")


class RetryComponents:
    @hookimpl
    def register_components(self, register: plugins.ComponentRegistrar) -> None:
        register.sink("refusing", RefusingSink)


@pytest.fixture(autouse=True)
def refusing_sink(onto_plugins_reset: None) -> None:
    # onto_plugins_reset forgets the plugin again after the test.
    tries.clear()
    plugins.register_plugin(RetryComponents(), name="retry-tests")


def run(text: str) -> Runtime:
    runtime = Runtime(parse_config(text, "retry.yaml"))
    asyncio.run(asyncio.wait_for(runtime.run(), 30))
    return runtime


@pytest.mark.parametrize("max_attempts", [1, 2, 3])
def test_a_message_written_alone_is_tried_max_attempts_times(max_attempts: int) -> None:
    run(f"""
pipelines:
  p:
    source: {{type: memory, messages: [3]}}
    sinks: [{{type: refusing}}]
    dead_letter: {{type: memory, channel: dead}}
    retry: {{max_attempts: {max_attempts}, initial_backoff: 0}}
""")
    assert tries[3] == max_attempts
    assert channel("dead").values() == [3]


@pytest.mark.parametrize("max_attempts", [1, 2, 3])
def test_a_failed_batch_write_comes_on_top_of_max_attempts_tries_alone(
    max_attempts: int,
) -> None:
    run(f"""
pipelines:
  p:
    source: {{type: memory, messages: [1, 2, 3, 4]}}
    sinks: [{{type: refusing}}]
    dead_letter: {{type: memory, channel: dead}}
    batch: {{size: 4, linger_ms: 1000}}
    retry: {{max_attempts: {max_attempts}, initial_backoff: 0}}
""")
    assert tries[3] == max_attempts + 1
    assert (tries[1], tries[2], tries[4]) == (2, 2, 2)  # the batch, then once alone
    assert channel("dead").values() == [3]


def test_a_message_retried_aside_goes_to_every_sink_again() -> None:
    run("""
pipelines:
  p:
    source: {type: memory, messages: [3]}
    sinks: [{type: refusing, fail_times: 1}, {type: memory, channel: out}]
    retry: {max_attempts: 3, initial_backoff: 0}
""")
    assert tries[3] == 2
    assert channel("out").values() == [3, 3]
