"""The memory and file sinks against the shared sink conformance suite."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from onto_core.builtin.files import FileSink
from onto_core.builtin.memory import MemorySink, channel
from onto_core.testing import SinkConformance


class TestMemorySink(SinkConformance):
    @pytest.fixture
    def sink_factory(self, onto_plugins_reset: None) -> tuple[MemorySink, Callable[[], Any]]:
        return MemorySink(MemorySink.Config(channel="out")), channel("out").values


def json_lines(path: Path) -> list[Any]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class TestFileSinkBareValues(SinkConformance):
    @pytest.fixture
    def sink_factory(self, tmp_path: Path) -> tuple[FileSink, Callable[[], Any]]:
        path = tmp_path / "out" / "values.jsonl"
        sink = FileSink(FileSink.Config(path=path, envelope=False))
        return sink, lambda: json_lines(path)

    @pytest.fixture
    def refusing_sink_factory(self) -> FileSink:
        full = Path("/dev/full")  # every write to it fails with "no space left on device"
        if not full.exists():
            pytest.skip("no /dev/full on this system")
        return FileSink(FileSink.Config(path=full, envelope=False))


class TestFileSinkEnvelope(SinkConformance):
    @pytest.fixture
    def sink_factory(self, tmp_path: Path) -> tuple[FileSink, Callable[[], Any]]:
        path = tmp_path / "messages.jsonl"
        sink = FileSink(FileSink.Config(path=path, envelope=True, fsync=True))
        return sink, lambda: [line["value"] for line in json_lines(path)]


def test_a_line_cut_short_by_a_crash_is_dropped_before_appending(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "views.jsonl"
    path.write_text('{"n": 1}\n{"n": 2}\n{"n": 3, "par', encoding="utf-8")  # killed mid-write
    sink = FileSink(FileSink.Config(path=path, envelope=False))
    sink.start()
    sink._write('{"n": 4}\n')
    sink.close()
    assert json_lines(path) == [{"n": 1}, {"n": 2}, {"n": 4}]
    assert "ended in an unfinished line (13 bytes" in caplog.text
    only_partial = tmp_path / "partial.jsonl"
    only_partial.write_text('{"n": 1', encoding="utf-8")
    again = FileSink(FileSink.Config(path=only_partial, envelope=False))
    again.start()
    again.close()
    assert only_partial.read_text() == ""
