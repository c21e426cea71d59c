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


class TestFileSinkEnvelope(SinkConformance):
    @pytest.fixture
    def sink_factory(self, tmp_path: Path) -> tuple[FileSink, Callable[[], Any]]:
        path = tmp_path / "messages.jsonl"
        sink = FileSink(FileSink.Config(path=path, envelope=True, fsync=True))
        return sink, lambda: [line["value"] for line in json_lines(path)]
