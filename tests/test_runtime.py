"""The runtime's promises: delivery guarantees, retries, dead letters, backpressure, drain."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from onto_core import plugins
from onto_core.builtin.memory import channel, drop_channels
from onto_core.config import PipelineConfig, parse_config
from onto_core.errors import ConfigError, DatastoreError, ShutdownTimeout, SourceError
from onto_core.hookspecs import hookimpl
from onto_core.protocols import Guarantee, Message
from onto_core.runtime import SOURCE_ID_HEADER, Runtime, open_datastore

BOTH = frozenset({Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE})
# Shared between the test and the components it configures, reset for every test.
state: dict[str, Any] = {}


class FlakySink:
    """Records every value it is given, then fails the first ``fail_times`` writes."""

    guarantees: ClassVar[frozenset[Guarantee]] = BOTH

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        fail_times: int = 0
        poison: list[int] = []

    def __init__(self, config: Config) -> None:
        self.config = config
        self.calls = 0
        state["flaky"] = self

    async def write(self, messages: list[Message]) -> None:
        self.calls += 1
        state.setdefault("batches", []).append(len(messages))
        poisoned = [m for m in messages if m.value["n"] in self.config.poison]
        if poisoned:
            raise ValueError(f"cannot store n={poisoned[0].value['n']}")
        state.setdefault("written", []).extend(m.value["n"] for m in messages)
        state.setdefault("timeline", []).extend(("ok", m.value["n"]) for m in messages)
        if self.calls <= self.config.fail_times:
            # Fails after writing: the partial write at-least-once must tolerate.
            raise ConnectionError(f"write {self.calls} timed out")


class GatedSink:
    """Blocks every write until the test lets one through (a sink as slow as we like)."""

    guarantees: ClassVar[frozenset[Guarantee]] = BOTH

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        self.gate: asyncio.Semaphore = state["gate"]

    async def write(self, messages: list[Message]) -> None:
        await self.gate.acquire()
        state.setdefault("written", []).extend(m.value["n"] for m in messages)


class BlockingSink:
    """A sync sink stuck on a threading.Event, as a blocking client library would be."""

    guarantees: ClassVar[frozenset[Guarantee]] = BOTH

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        self.release: threading.Event = state["release"]

    def write(self, messages: list[Message]) -> None:
        self.release.wait(timeout=30)


class PoisonProcessor:
    """Doubles ``n``; raises on the values listed in ``poison``."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        poison: list[int] = []

    def __init__(self, config: Config) -> None:
        self.poison = config.poison

    def process(self, message: Message) -> Message:
        if message.value["n"] in self.poison:
            raise KeyError(f"no such order {message.value['n']}")
        return message.derive({"n": message.value["n"] * 2})


class UnreliableSource:
    """Emits ``count`` values, but the first ``fail_reads`` reads raise SourceError."""

    guarantees: ClassVar[frozenset[Guarantee]] = BOTH

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        count: int = 3
        fail_reads: int = 2

    def __init__(self, config: Config) -> None:
        self.config = config
        self.reads = 0
        self.sent = 0

    def read(self) -> Message | None:
        self.reads += 1
        if self.reads <= self.config.fail_reads:
            raise SourceError("broker not reachable")
        if self.sent == self.config.count:
            return None
        self.sent += 1
        return Message({"n": self.sent})

    def ack(self, message: Message) -> None:
        pass

    def nack(self, message: Message, error: BaseException) -> None:
        pass


class CountingSource:
    """Emits ``count`` values ``{n}``; exactly_once only into a ``ledger`` sink."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(Guarantee)

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        count: int = 3

    @classmethod
    def check_pipeline(cls, pipeline: PipelineConfig) -> None:
        others = [s.type for s in pipeline.sinks if s.type != "ledger"]
        if pipeline.guarantee is Guarantee.EXACTLY_ONCE and others:
            raise ValueError(f"exactly_once needs ledger sinks only, not {others}")

    def __init__(self, config: Config) -> None:
        self.left = config.count
        self.count = config.count

    def read(self) -> Message | None:
        if not self.left:
            return None
        self.left -= 1
        return Message({"n": self.count - self.left - 1})

    def ack(self, message: Message) -> None:
        state.setdefault("acked", []).append(message.value["n"])

    def nack(self, message: Message, error: BaseException) -> None:
        raise AssertionError(f"nothing fails here, yet {message.value} was nacked: {error}")


class TwiceProcessor:
    """Two outputs per input: ``{n, copy: 0}`` and ``{n, copy: 1}``."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        pass

    def process(self, message: Message) -> list[Message]:
        return [message.derive({**message.value, "copy": c}) for c in (0, 1)]


class TwiceBatchProcessor(TwiceProcessor):
    """``twice`` taking whole batches."""

    def process_batch(self, messages: list[Message]) -> list[list[Message]]:
        return [self.process(m) for m in messages]


class BatchAckSource:
    """Emits ``count`` values ``{n}`` in batches; records each ``ack_batch`` call."""

    guarantees: ClassVar[frozenset[Guarantee]] = BOTH

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        count: int = 10

    def __init__(self, config: Config) -> None:
        self.left = list(range(config.count))

    async def read_batch(self, max_messages: int) -> list[Message]:
        taken, self.left = self.left[:max_messages], self.left[max_messages:]
        return [Message({"n": n}) for n in taken]

    async def read(self) -> Message | None:
        raise AssertionError("read_batch is used when present")

    async def ack(self, message: Message) -> None:
        state.setdefault("acks", []).append(("ack", message.value["n"]))

    async def ack_batch(self, messages: list[Message]) -> None:
        state.setdefault("acks", []).append(("ack_batch", [m.value["n"] for m in messages]))

    async def nack(self, message: Message, error: BaseException) -> None:
        state.setdefault("acks", []).append(("nack", message.value["n"]))


class LedgerSink:
    """A transactional sink: records each ``write_exactly_once`` call."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        pass

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(Guarantee)

    def write(self, messages: list[Message]) -> None:
        raise AssertionError("exactly_once must call write_exactly_once")

    def write_exactly_once(
        self, outputs: list[Message], consumed: list[Message], source: Any
    ) -> None:
        state.setdefault("ledger", []).append((outputs, consumed, source))


class TimelineSink:
    """A dead-letter sink noting when each letter arrived, next to FlakySink's writes."""

    guarantees: ClassVar[frozenset[Guarantee]] = BOTH

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        pass

    def write(self, messages: list[Message]) -> None:
        state.setdefault("timeline", []).extend(("dead", m.value["n"]) for m in messages)


class TestComponents:
    @hookimpl
    def register_components(self, register: plugins.ComponentRegistrar) -> None:
        register.source("counting", CountingSource)
        register.processor("twice", TwiceProcessor)
        register.processor("twice_batch", TwiceBatchProcessor)
        register.source("batch_ack", BatchAckSource)
        register.sink("ledger", LedgerSink)
        register.sink("journal", LedgerSink)
        register.sink("flaky", FlakySink)
        register.sink("timeline", TimelineSink)
        register.sink("gated", GatedSink)
        register.sink("blocking", BlockingSink)
        register.processor("poison", PoisonProcessor)
        register.source("unreliable", UnreliableSource)


@pytest.fixture(autouse=True)
def components() -> Iterator[None]:
    state.clear()
    drop_channels()
    name = plugins.register_plugin(TestComponents(), name="runtime-tests")
    yield
    plugins.unregister_plugin(name)


def run(yaml_text: str, timeout: float = 20) -> Runtime:
    runtime = Runtime(parse_config(yaml_text, "test.yaml"))
    asyncio.run(asyncio.wait_for(runtime.run(), timeout))
    return runtime


def values(count: int) -> str:
    return "[" + ", ".join(f"{{n: {i}}}" for i in range(count)) + "]"


def test_sink_failing_then_succeeding_loses_nothing_and_duplicates_stay_bounded() -> None:
    runtime = run(f"""
pipelines:
  orders:
    source: {{type: memory, messages: {values(40)}}}
    sinks: [{{type: flaky, fail_times: 3}}]
    batch: {{size: 8}}
    retry: {{max_attempts: 4, initial_backoff: 0.001}}
""")
    written = Counter(state["written"])
    assert set(written) == set(range(40))
    assert max(written.values()) <= 4  # never more often than the attempts allowed
    assert sum(written.values()) > 40  # the failed partial writes did duplicate
    figures = runtime.metrics()["orders"]
    assert figures["acked"] == 40
    assert figures["dead_lettered"] == 0
    assert figures["retried"] >= 3


def test_permanently_failing_message_is_dead_lettered_and_later_messages_flow() -> None:
    runtime = run(f"""
pipelines:
  orders:
    source: {{type: memory, messages: {values(10)}}}
    sinks: [{{type: flaky, poison: [3]}}]
    dead_letter: {{type: memory, channel: dead}}
    batch: {{size: 4}}
    retry: {{max_attempts: 3, initial_backoff: 0.001}}
""")
    assert state["written"] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    [letter] = channel("dead").messages
    assert letter.value == {"n": 3}
    assert letter.headers["onto-error"] == "ValueError: cannot store n=3"
    assert letter.headers["onto-stage"] == "sinks[0] (flaky)"
    assert letter.headers["onto-pipeline"] == "orders"
    assert letter.headers["onto-attempts"] == "2"  # the batch write, then 2 alone
    figures = runtime.metrics()["orders"]
    assert (figures["acked"], figures["nacked"], figures["dead_lettered"]) == (10, 0, 1)


def test_processor_error_is_dead_lettered_with_the_message_id() -> None:
    runtime = run(f"""
pipelines:
  orders:
    source: {{type: memory, messages: {values(5)}}}
    processors: [{{type: poison, poison: [1]}}]
    sinks: [{{type: memory, channel: out}}]
    dead_letter: {{type: memory, channel: dead}}
    retry: {{max_attempts: 2, initial_backoff: 0}}
""")
    assert channel("out").values() == [{"n": 0}, {"n": 4}, {"n": 6}, {"n": 8}]
    [letter] = channel("dead").messages
    assert letter.value == {"n": 1}
    assert letter.headers["onto-error"] == "KeyError: 'no such order 1'"
    assert letter.headers["onto-stage"] == "processors[0] (poison)"
    assert letter.headers["onto-source-id"] == letter.id
    assert runtime.metrics()["orders"]["acked"] == 5


def test_without_dead_letter_sink_a_failed_message_is_nacked_not_acked() -> None:
    runtime = run(f"""
pipelines:
  orders:
    source: {{type: memory, messages: {values(4)}, redeliver: false}}
    processors: [{{type: poison, poison: [2]}}]
    sinks: [{{type: memory, channel: out}}]
    retry: {{max_attempts: 1}}
""")
    source_channel = runtime.runners["orders"].source.instance.channel
    assert [m.value for m in source_channel.acked] == [{"n": 0}, {"n": 1}, {"n": 3}]
    [(nacked, error)] = source_channel.nacked
    assert nacked.value == {"n": 2}
    assert "no such order 2" in str(error)


def test_at_most_once_acks_on_receipt_and_never_writes_twice() -> None:
    runtime = run(f"""
pipelines:
  orders:
    source: {{type: memory, messages: {values(6)}}}
    sinks: [{{type: flaky, fail_times: 1}}]
    dead_letter: {{type: memory, channel: dead}}
    guarantee: at_most_once
    batch: {{size: 3}}
""")
    assert Counter(state["written"]) == Counter(range(6))  # each once, none retried
    assert len(channel("dead").messages) == 3  # the batch whose write failed
    figures = runtime.metrics()["orders"]
    assert (figures["acked"], figures["retried"]) == (6, 0)


def test_fan_out_delivers_every_message_to_every_sink() -> None:
    run(f"""
pipelines:
  orders:
    source: {{type: memory, messages: {values(25)}}}
    sinks: [{{type: memory, channel: a}}, {{type: memory, channel: b}}]
    batch: {{size: 10}}
""")
    assert channel("a").values() == channel("b").values() == [{"n": i} for i in range(25)]


def test_batches_never_exceed_the_configured_size() -> None:
    run(f"""
pipelines:
  orders:
    source: {{type: memory, messages: {values(50)}}}
    sinks: [{{type: flaky}}]
    batch: {{size: 7, linger_ms: 50}}
""")
    assert sum(state["batches"]) == 50
    assert max(state["batches"]) == 7


def test_source_errors_are_retried_with_backoff() -> None:
    runtime = run("""
pipelines:
  feed:
    source: {type: unreliable, count: 3, fail_reads: 2}
    sinks: [{type: memory, channel: out}]
    retry: {initial_backoff: 0.001}
""")
    assert channel("out").values() == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert runtime.metrics()["feed"]["failed"] == 2


def test_slow_sink_never_lets_the_buffer_grow_past_its_bound() -> None:
    async def scenario() -> tuple[list[int], int]:
        state["gate"] = gate = asyncio.Semaphore(0)
        runtime = Runtime(
            parse_config("""
pipelines:
  firehose:
    source: {type: generate, count: null}
    sinks: [{type: gated}]
    buffer: 50
    batch: {size: 10}
""")
        )
        task = asyncio.create_task(runtime.run())
        runner = await _wait_for_runner(runtime, "firehose")
        in_flight = []
        for _ in range(30):  # let writes through one at a time, checking the bound each time
            await _until(lambda: runner.metrics.messages_in - len(state.get("written", [])) >= 60)
            in_flight.append(runner.metrics.messages_in - len(state.get("written", [])))
            gate.release()
        await runtime.stop()
        for _ in range(100):
            gate.release()
        await asyncio.wait_for(task, 10)
        return in_flight, runner.buffer.high_water

    in_flight, high_water = asyncio.run(asyncio.wait_for(scenario(), 30))
    # Read but not yet written: at most the buffer (50) plus the batch in the sink (10).
    assert set(in_flight) == {60}
    assert high_water == 50


def test_blocking_sync_sink_does_not_stall_other_pipelines() -> None:
    state["release"] = release = threading.Event()

    async def scenario() -> None:
        runtime = Runtime(
            parse_config(f"""
pipelines:
  stuck:
    source: {{type: memory, messages: {values(3)}}}
    sinks: [{{type: blocking}}]
  flowing:
    source: {{type: memory, messages: {values(100)}}}
    sinks: [{{type: memory, channel: out}}]
""")
        )
        task = asyncio.create_task(runtime.run())
        await _until(lambda: len(channel("out").messages) == 100)
        release.set()
        await asyncio.wait_for(task, 10)

    try:
        asyncio.run(asyncio.wait_for(scenario(), 20))
    finally:
        release.set()
    assert len(channel("out").messages) == 100


def test_stop_drains_in_flight_messages_and_acks_them() -> None:
    async def scenario() -> Runtime:
        state["gate"] = gate = asyncio.Semaphore(0)
        runtime = Runtime(
            parse_config("""
pipelines:
  firehose:
    source: {type: generate, count: null}
    sinks: [{type: gated}]
    buffer: 20
    batch: {size: 5}
""")
        )
        task = asyncio.create_task(runtime.run())
        runner = await _wait_for_runner(runtime, "firehose")
        await _until(lambda: runner.metrics.messages_in == 25)
        stopping = asyncio.create_task(runtime.stop())
        for _ in range(100):
            gate.release()
        assert await asyncio.wait_for(stopping, 10)
        await asyncio.wait_for(task, 10)
        return runtime

    runtime = asyncio.run(asyncio.wait_for(scenario(), 30))
    figures = runtime.metrics()["firehose"]
    assert figures["in"] == figures["acked"] == len(state["written"]) == 25


def test_drain_timeout_leaves_unfinished_messages_unacked() -> None:
    async def scenario() -> tuple[Runtime, BaseException | None]:
        state["gate"] = asyncio.Semaphore(0)  # never opens: the sink hangs
        runtime = Runtime(
            parse_config("""
pipelines:
  firehose:
    source: {type: generate, count: null}
    sinks: [{type: gated}]
    buffer: 10
    batch: {size: 5}
runtime: {drain_timeout: 0.2}
""")
        )
        task = asyncio.create_task(runtime.run())
        runner = await _wait_for_runner(runtime, "firehose")
        await _until(lambda: runner.metrics.messages_in == 15)
        assert not await runtime.stop()
        try:
            await asyncio.wait_for(task, 10)
        except ShutdownTimeout as exc:
            return runtime, exc
        return runtime, None

    runtime, error = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert isinstance(error, ShutdownTimeout)
    assert "not finished within 0.2s" in str(error)
    assert runtime.metrics()["firehose"]["acked"] == 0


async def _until(condition: Any, timeout: float = 10) -> None:
    """Wait for ``condition()`` to hold, checking on every turn of the event loop.

    The conditions are counters the runtime keeps, which no event announces.
    """
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def _wait_for_runner(runtime: Runtime, name: str) -> Any:
    await _until(lambda: name in runtime.runners)
    return runtime.runners[name]


def test_runtime_hooks_run_after_every_component_started_and_after_all_closed() -> None:
    calls: list[str] = []

    class Lifecycle:
        @hookimpl
        def runtime_started(self, runtime: Runtime) -> None:
            calls.append(f"started:{sorted(runtime.runners)}")

        @hookimpl
        def runtime_stopped(self, runtime: Runtime) -> None:
            calls.append("stopped")

    name = plugins.register_plugin(Lifecycle(), name="lifecycle-test")
    try:
        run(f"""
pipelines:
  a:
    source: {{type: memory, messages: {values(2)}}}
    sinks: [{{type: memory, channel: out}}]
  b:
    source: {{type: memory, messages: {values(2)}}}
    sinks: [{{type: memory, channel: out}}]
""")
    finally:
        plugins.unregister_plugin(name)
    assert calls == ["started:['a', 'b']", "stopped"]
    assert len(channel("out").messages) == 4


def test_exactly_once_hands_a_transactional_sink_each_output_with_its_input() -> None:
    run("""
pipelines:
  orders:
    source: {type: counting, count: 6}
    processors: [{type: twice}]
    sinks: [{type: ledger}]
    guarantee: exactly_once
    batch: {size: 4, linger_ms: 10}
""")
    calls = state["ledger"]
    consumed = [m for _, inputs, _ in calls for m in inputs]
    assert [m.value["n"] for m in consumed] == list(range(6))
    assert all(isinstance(source, CountingSource) for _, _, source in calls)
    assert sorted(state["acked"]) == list(range(6))
    input_of = {m.id: m.value["n"] for m in consumed}
    for outputs, inputs, _ in calls:
        ids = {m.id for m in inputs}
        # every output names the consumed message it came from, within the same call
        assert sorted(
            (input_of[o.headers[SOURCE_ID_HEADER]], o.value["copy"]) for o in outputs
        ) == [(m.value["n"], c) for m in inputs for c in (0, 1)]
        assert {o.headers[SOURCE_ID_HEADER] for o in outputs} <= ids


def test_a_component_can_refuse_the_pipeline_around_it_naming_its_line() -> None:
    text = """\
pipelines:
  orders:
    source: {type: counting}
    sinks: [{type: ledger}, {type: journal}]
    guarantee: exactly_once
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "onto.yaml")
    assert str(caught.value) == (
        "onto.yaml:3: pipelines.orders.source: source 'counting':"
        " exactly_once needs ledger sinks only, not ['journal']"
    )
    parse_config(text.replace("exactly_once", "at_least_once"), "onto.yaml")


def test_retries_of_failing_messages_do_not_hold_up_the_healthy_ones() -> None:
    """10% of messages fail for good; every healthy one is written before the first
    failing one has used up its retries (they used to wait behind each retry)."""
    poison = list(range(5, 100, 10))
    channel("keyed").put(*[Message({"n": n}, key=f"k{n}") for n in range(100)])
    channel("keyed").close()
    runtime = run(
        f"""
pipelines:
  orders:
    source: {{type: memory, channel: keyed}}
    sinks: [{{type: flaky, poison: {poison}}}]
    dead_letter: {{type: timeline}}
    batch: {{size: 10}}
    retry: {{max_attempts: 3, initial_backoff: 0.2, max_backoff: 0.2}}
""",
        timeout=30,
    )
    timeline = state["timeline"]
    healthy = [n for n in range(100) if n not in poison]
    assert sorted(n for kind, n in timeline if kind == "ok") == healthy
    assert [n for kind, n in timeline if kind == "dead"] == poison
    first_dead = timeline.index(("dead", poison[0]))
    assert {n for _, n in timeline[:first_dead]} == set(healthy)
    figures = runtime.metrics()["orders"]
    assert (figures["acked"], figures["dead_lettered"]) == (100, len(poison))


def test_a_message_waiting_behind_a_retry_of_its_key_keeps_its_order() -> None:
    values = [Message({"n": n}, key="same" if n in (1, 2, 3) else f"other{n}") for n in range(8)]
    channel("ordered").put(*values)
    channel("ordered").close()
    run("""
pipelines:
  orders:
    source: {type: memory, channel: ordered}
    sinks: [{type: flaky, poison: [1]}]
    dead_letter: {type: memory, channel: dead}
    batch: {size: 8}
    retry: {max_attempts: 3, initial_backoff: 0.05, max_backoff: 0.05}
""")
    written = state["written"]
    # 2 and 3 share 1's key: they wait until 1 is dead-lettered, then go in order;
    # the other keys did not wait at all.
    assert written.index(2) < written.index(3)
    assert written.index(0) < written.index(2)
    assert all(written.index(n) < written.index(2) for n in (4, 5, 6, 7))
    assert [m.value["n"] for m in channel("dead").messages] == [1]


def test_a_source_with_ack_batch_has_each_batch_acked_in_one_call_in_order() -> None:
    run("""
pipelines:
  orders:
    source: {type: batch_ack, count: 10}
    sinks: [{type: flaky, poison: [5]}]
    dead_letter: {type: memory, channel: dead}
    batch: {size: 4}
    retry: {max_attempts: 1}
""")
    assert [m.value["n"] for m in channel("dead").messages] == [5]
    # The dead-lettered message is done too: every batch is acked whole, never one by one.
    assert state["acks"] == [
        ("ack_batch", [0, 1, 2, 3]),
        ("ack_batch", [4, 5, 6, 7]),
        ("ack_batch", [8, 9]),
    ]


def test_acks_batched_around_a_nack_keep_the_order_of_the_messages() -> None:
    run("""
pipelines:
  orders:
    source: {type: batch_ack, count: 10}
    sinks: [{type: flaky, poison: [5]}]
    batch: {size: 4}
    retry: {max_attempts: 1}
""")
    assert state["acks"] == [
        ("ack_batch", [0, 1, 2, 3]),
        ("ack_batch", [4]),
        ("nack", 5),
        ("ack_batch", [6, 7]),
        ("ack_batch", [8, 9]),
    ]


def test_a_sink_failing_on_fanned_out_outputs_dead_letters_only_those() -> None:
    runtime = run(f"""
pipelines:
  orders:
    source: {{type: memory, messages: {values(6)}}}
    processors: [{{type: twice_batch}}]
    sinks: [{{type: flaky, poison: [2]}}, {{type: memory, channel: copy}}]
    dead_letter: {{type: memory, channel: dead}}
    batch: {{size: 6}}
    retry: {{max_attempts: 2, initial_backoff: 0}}
""")
    assert state["written"] == [0, 0, 1, 1, 3, 3, 4, 4, 5, 5]
    assert [(m["n"], m["copy"]) for m in channel("copy").values()] == [
        (n, c) for n in range(6) for c in (0, 1)
    ]
    letters = channel("dead").messages
    assert [(m.value["n"], m.value["copy"]) for m in letters] == [(2, 0), (2, 1)]
    assert all(m.headers["onto-stage"] == "sinks[0] (flaky)" for m in letters)
    figures = runtime.metrics()["orders"]
    assert (figures["acked"], figures["nacked"], figures["dead_lettered"]) == (6, 0, 2)


TICKS = [0]


def note_tick(value: dict[str, Any]) -> dict[str, Any]:
    state.setdefault("ticks", []).append(TICKS[0])
    return value


def test_a_pipeline_that_never_waits_still_lets_other_tasks_run_between_batches() -> None:
    async def ticker() -> None:
        while True:
            TICKS[0] += 1
            await asyncio.sleep(0)

    async def scenario() -> None:
        ticking = asyncio.create_task(ticker())
        try:
            await Runtime(
                parse_config(f"""
pipelines:
  busy:
    source: {{type: memory, messages: {values(200)}}}
    processors: [{{type: map, function: "{__name__}:note_tick"}}]
    sinks: [{{type: memory, channel: out}}]
    buffer: 200
    batch: {{size: 10}}
""")
            ).run()
        finally:
            ticking.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 20))
    batches = [state["ticks"][i : i + 10] for i in range(0, 200, 10)]
    assert all(len(set(batch)) == 1 for batch in batches)  # a batch runs without yielding
    starts = [batch[0] for batch in batches]
    assert starts == sorted(set(starts)), f"other tasks did not run between batches: {starts}"


class BuildsAtStart:
    """Builds ``size`` long-lived objects at start and emits one message (a view's first build)."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        size: int = 5000

    def __init__(self, config: Config) -> None:
        self.size = config.size
        self.held: list[list[int]] = []
        self.emitted = False

    async def due_messages(self) -> list[Message]:
        if self.emitted:
            return []
        self.emitted = True
        state["frozen_at_build"] = gc.get_freeze_count()
        collections = [0]

        def count(phase: str, info: dict[str, int]) -> None:
            collections[0] += phase == "start"

        gc.callbacks.append(count)
        try:
            # Lists: tracked by the collector; many times its gen-0 threshold.
            self.held = [[n] for n in range(self.size)]
        finally:
            gc.callbacks.remove(count)
        state["collections_in_build"] = collections[0]
        return [Message({"n": -1})]

    def process(self, message: Message) -> Message:
        return message


class FreezeNotingSink:
    guarantees: ClassVar[frozenset[Guarantee]] = BOTH

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        pass

    async def write(self, messages: list[Message]) -> None:
        state.setdefault("frozen_at_write", gc.get_freeze_count())
        state.setdefault("collector_on_at_write", gc.isenabled())


@pytest.mark.parametrize("freeze", [True, False])
def test_a_start_up_build_is_frozen_uncollected_before_it_goes_out(freeze: bool) -> None:
    name = plugins.register_plugin(_StartComponents(), name="start-build")
    try:
        run(f"""
pipelines:
  views:
    source: {{type: memory, messages: []}}
    processors: [{{type: builds_at_start, size: 50000}}]
    sinks: [{{type: freeze_noting}}]
runtime: {{freeze_gc: {str(freeze).lower()}}}
""")
    finally:
        plugins.unregister_plugin(name)
    grown = state["frozen_at_write"] - state["frozen_at_build"]
    assert state["collector_on_at_write"], "the collector stayed off after the start-up build"
    assert gc.get_freeze_count() == 0  # handed back once the runtime stopped
    if freeze:
        assert grown >= 50_000, f"only {grown} objects frozen after the start-up build"
        # Paused while it ran: no collection walked what it was building.
        assert state["collections_in_build"] == 0
    else:
        assert grown < 50_000
        assert state["collections_in_build"] > 0


class _StartComponents:
    @hookimpl
    def register_components(self, register: plugins.ComponentRegistrar) -> None:
        register.processor("builds_at_start", BuildsAtStart)
        register.sink("freeze_noting", FreezeNotingSink)


def test_open_datastore_opens_the_store_a_config_names_or_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "app.yaml"
    config.write_text(f"""
datastore: {{type: sqlite, path: "{tmp_path / "app.db"}"}}
pipelines:
  p: {{source: {{type: memory, messages: []}}, sinks: [{{type: stdout}}]}}
""")
    with open_datastore(config) as store:
        store.set("users", "u1", {"name": "Ada"})
    assert (tmp_path / "app.db").exists()
    with open_datastore(str(config)) as store:
        assert store.get("users", "u1") == {"name": "Ada"}
    with pytest.raises(DatastoreError, match="not open"):
        store.get("users", "u1")
    monkeypatch.chdir(tmp_path)
    with open_datastore() as default:
        default.set("users", "u2", {"name": "Grace"})
    assert (tmp_path / "onto.db").exists()


def note_threshold(value: Any) -> Any:
    state.setdefault("thresholds", []).append(gc.get_threshold())
    return value


@pytest.mark.parametrize(("setting", "expected"), [("20000", 20_000), ("null", None)])
def test_the_young_generation_is_collected_less_often_while_the_runtime_runs(
    setting: str, expected: int | None
) -> None:
    state.clear()
    before = gc.get_threshold()
    run(f"""
pipelines:
  p:
    source: {{type: memory, messages: [1]}}
    processors: [{{type: map, function: "{__name__}:note_threshold"}}]
    sinks: [{{type: memory, channel: out}}]
runtime: {{gc_threshold: {setting}}}
""")
    (during,) = state["thresholds"]
    assert during == (before if expected is None else (expected, *before[1:]))
    assert gc.get_threshold() == before  # given back once it stopped
