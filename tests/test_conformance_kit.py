"""The conformance suites catch what connectors commonly get wrong, and say so usefully.

Each case is a connector broken in one way, run through the suites by pytest in a
subprocess, as a connector author's own test run would; the report must fail the test
that checks the broken promise, with the message the author acts on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

CONNECTORS = '''
import threading
from typing import Any

import pytest

from onto_core import Guarantee, Message
from onto_core.testing import SinkConformance, SourceConformance, SourceHarness


class Log:
    """An in-process append-only log: what a broker or a file would be."""

    def __init__(self) -> None:
        self.entries: list[Any] = []
        self.committed: set[int] = set()
        self.changed = threading.Condition()

    def append(self, values: list[Any]) -> None:
        with self.changed:
            self.entries.extend(values)
            self.changed.notify_all()


class LogSource:
    """A correct source over a Log: waits when idle, redelivers nacks, resumes after acks."""

    guarantees = frozenset({Guarantee.AT_LEAST_ONCE})

    def __init__(self, log: Log) -> None:
        self.log = log
        self.next = 0
        self.again: list[Message] = []
        self.closed = False

    def ready(self, max_messages: int) -> list[Message]:
        out, self.again = self.again[:max_messages], self.again[max_messages:]
        while len(out) < max_messages and self.next < len(self.log.entries):
            offset, self.next = self.next, self.next + 1
            if offset not in self.log.committed:
                value = self.log.entries[offset]
                out.append(Message(value, id=f"log-{offset}", offset=offset))
        return out

    def read_batch(self, max_messages: int) -> list[Message]:
        with self.log.changed:
            while not self.closed:
                batch = self.ready(max_messages)
                if batch:
                    return batch
                self.log.changed.wait()
            return []

    def read(self) -> Message | None:
        batch = self.read_batch(1)
        return batch[0] if batch else None

    def ack(self, message: Message) -> None:
        with self.log.changed:
            self.log.committed.add(message.offset)

    def nack(self, message: Message, error: BaseException) -> None:
        with self.log.changed:
            self.again.append(message)
            self.log.changed.notify_all()

    def close(self) -> None:
        with self.log.changed:
            self.closed = True
            self.log.changed.notify_all()


class IdleReturnsEmptySource(LogSource):
    def read_batch(self, max_messages: int) -> list[Message]:
        with self.log.changed:
            return self.ready(max_messages)  # [] whenever nothing is ready right now


class ForgetsOnRestartSource(LogSource):
    def ack(self, message: Message) -> None:
        pass  # nothing saved: a new instance starts over from the beginning

    def start(self, ctx: Any) -> None:
        self.next = len(self.log.entries)  # "latest": what was not acked is skipped


class IgnoresNackSource(LogSource):
    def nack(self, message: Message, error: BaseException) -> None:
        pass


class ListSink:
    guarantees = frozenset({Guarantee.AT_LEAST_ONCE})

    def __init__(self, held: list[Any], refuse: bool = False) -> None:
        self.held = held
        self.refuse = refuse

    def store(self, messages: list[Message]) -> None:
        if self.refuse:
            raise OSError("the destination refused the write")
        self.held.extend(m.value for m in messages)

    def write(self, messages: list[Message]) -> None:
        self.store(messages)


class SwallowsErrorsSink(ListSink):
    def write(self, messages: list[Message]) -> None:
        try:
            self.store(messages)
        except OSError:
            pass  # logged and forgotten: the runtime will ack what never landed


class SkipsSeenKeysSink(ListSink):
    def write(self, messages: list[Message]) -> None:
        if any(m.key in self.seen for m in messages):
            return  # "a duplicate batch": drops the messages that never landed with it
        self.seen.update(m.key for m in messages)
        self.store(messages)

    seen: set[Any] = set()


def harness(source_class: type[LogSource]) -> SourceHarness:
    log = Log()
    return SourceHarness(new_source=lambda: source_class(log), write=log.append)


class TestLogSource(SourceConformance):
    @pytest.fixture
    def source_factory(self) -> SourceHarness:
        return harness(LogSource)


class TestIdleReturnsEmptySource(SourceConformance):
    @pytest.fixture
    def source_factory(self) -> SourceHarness:
        return harness(IdleReturnsEmptySource)


class TestForgetsOnRestartSource(SourceConformance):
    @pytest.fixture
    def source_factory(self) -> SourceHarness:
        return harness(ForgetsOnRestartSource)


class TestIgnoresNackSource(SourceConformance):
    timeout = 1.0

    @pytest.fixture
    def source_factory(self) -> SourceHarness:
        return harness(IgnoresNackSource)


class TestListSink(SinkConformance):
    @pytest.fixture
    def sink_factory(self):
        held: list[Any] = []
        return ListSink(held), lambda: held

    @pytest.fixture
    def refusing_sink_factory(self):
        return ListSink([], refuse=True)


class TestSwallowsErrorsSink(TestListSink):
    @pytest.fixture
    def refusing_sink_factory(self):
        return SwallowsErrorsSink([], refuse=True)


class TestSkipsSeenKeysSink(TestListSink):
    @pytest.fixture
    def sink_factory(self):
        held: list[Any] = []
        sink = SkipsSeenKeysSink(held)
        sink.seen = set()
        return sink, lambda: held
'''


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Each test of the suites run against the connectors: its failure message, or None."""
    folder = tmp_path_factory.mktemp("connectors")
    (folder / "test_connectors.py").write_text(textwrap.dedent(CONNECTORS), encoding="utf-8")
    junit = folder / "report.xml"
    env = {**os.environ, "ONTO_LOAD_PLUGINS": ""}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert junit.exists(), done.stdout + done.stderr
    results: dict[str, str | None] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        results[name] = None if failure is None else (failure.get("message") or "")
    return results


def failures_of(report: dict[str, str | None], suite: str) -> dict[str, str]:
    return {
        name.split("::")[1]: message
        for name, message in report.items()
        if name.startswith(f"{suite}::") and message is not None
    }


def test_a_correct_source_and_sink_pass_every_test(report: dict[str, str | None]) -> None:
    assert failures_of(report, "TestLogSource") == {}
    assert failures_of(report, "TestListSink") == {}
    ran = [n for n in report if n.startswith("TestLogSource::")]
    assert "TestLogSource::test_unacked_messages_are_redelivered_after_reopen" in ran


def test_a_source_returning_empty_when_idle_fails_read_waits(
    report: dict[str, str | None],
) -> None:
    failed = failures_of(report, "TestIdleReturnsEmptySource")
    assert set(failed) == {"test_an_idle_source_waits_and_delivers_what_arrives_later"}
    message = failed["test_an_idle_source_waits_and_delivers_what_arrives_later"]
    assert "with nothing written, read_batch returned [] at once" in message
    assert "stops the pipeline" in message
    assert "endless = False" in message
    assert "docs/writing-connectors.md#read-waits" in message


def test_a_source_that_loses_unacked_messages_on_restart_fails_durability(
    report: dict[str, str | None],
) -> None:
    failed = failures_of(report, "TestForgetsOnRestartSource")
    assert set(failed) == {"test_unacked_messages_are_redelivered_after_reopen"}
    message = failed["test_unacked_messages_are_redelivered_after_reopen"]
    assert "what was not acked is delivered again after a restart" in message
    assert "set durable = False if the source keeps nothing across restarts" in message
    assert "docs/writing-connectors.md#durability" in message


def test_a_source_whose_nack_does_nothing_fails_redelivery(
    report: dict[str, str | None],
) -> None:
    failed = failures_of(report, "TestIgnoresNackSource")
    assert "test_nacked_message_is_delivered_again" in failed
    message = failed["test_nacked_message_is_delivered_again"]
    assert "a nacked message is delivered again" in message
    assert "read 0 of 1 messages within 1.0s" in message
    assert "docs/writing-connectors.md#ack-and-nack" in message


def test_a_sink_that_swallows_write_errors_fails(report: dict[str, str | None]) -> None:
    failed = failures_of(report, "TestSwallowsErrorsSink")
    assert set(failed) == {"test_write_raises_when_its_messages_did_not_land"}
    message = failed["test_write_raises_when_its_messages_did_not_land"]
    assert "write returned normally although the destination refused the batch" in message
    assert "docs/writing-connectors.md#sink-errors" in message


def test_a_sink_that_drops_a_batch_written_again_fails(report: dict[str, str | None]) -> None:
    failed = failures_of(report, "TestSkipsSeenKeysSink")
    assert "test_a_failed_batch_written_again_lands_every_message" in failed
    message = failed["test_a_failed_batch_written_again_lands_every_message"]
    assert "the destination lacks" in message
    assert "docs/writing-connectors.md#sink-errors" in message


def test_every_section_a_failure_names_exists_in_the_guide() -> None:
    import re

    from onto_core.testing import conformance

    source = Path(conformance.__file__).read_text(encoding="utf-8")
    named = set(re.findall(r'"(read-waits|durability|ack-and-nack|sink-errors|sources)"', source))
    guide = (Path(__file__).parents[1] / "docs" / "writing-connectors.md").read_text("utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#{2,4} (.+)$", guide, re.M)
    }
    assert named <= anchors, f"sections missing from the guide: {sorted(named - anchors)}"


def test_onto_run_env_extends_the_environment_of_the_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onto_core.testing import json_lines, onto_run

    monkeypatch.setenv("KIT_OUT", str(tmp_path / "out.jsonl"))  # inherited
    config = tmp_path / "onto.yaml"
    config.write_text(
        "pipelines:\n"
        "  numbers:\n"
        "    source: {type: generate, count: '${KIT_COUNT}', interval: 0}\n"
        "    sinks: [{type: file, path: '${KIT_OUT}', envelope: false}]\n",
        encoding="utf-8",
    )
    with onto_run(config, tmp_path / "onto.log", env={"KIT_COUNT": "3"}) as process:
        code = process.wait(60)
    log = (tmp_path / "onto.log").read_text(encoding="utf-8")
    assert code == 0, log
    assert len(json_lines(tmp_path / "out.jsonl")) == 3, log
