"""``stdout`` and ``file`` sinks: one JSON object per line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import IO, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from onto_core.errors import SinkError
from onto_core.protocols import Guarantee, Message

__all__ = ["FileSink", "StdoutSink", "encode_line"]

log = logging.getLogger("onto.file")


def encode_line(message: Message, envelope: bool) -> str:
    """``message`` as one JSON line: the whole envelope, or just its value."""
    data = message.to_dict() if envelope else message.to_dict()["value"]
    return json.dumps(data, default=str, separators=(",", ":"), ensure_ascii=False) + "\n"


class StdoutSink:
    """Prints each message as a JSON line on standard output."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        envelope: bool = Field(
            False, description="Print id, key, headers and value instead of the value alone."
        )

    def __init__(self, config: Config) -> None:
        self.config = config

    def write(self, messages: list[Message]) -> None:
        out = sys.stdout
        out.write("".join(encode_line(m, self.config.envelope) for m in messages))
        out.flush()


class FileSink:
    """Appends each message as a JSON line to a file (created with its folders if missing).

    A write returns once the lines are handed to the operating system (``fsync: true`` waits
    for the disk), so a killed process loses nothing it confirmed.
    """

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: Path = Field(description="File to append to.")
        envelope: bool = Field(
            True, description="Write id, key, headers and value instead of the value alone."
        )
        fsync: bool = Field(False, description="Wait for the disk on every write.")

    def __init__(self, config: Config) -> None:
        self.config = config
        self._file: IO[str] | None = None

    def start(self, ctx: Any = None) -> None:
        path = self.config.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _drop_unfinished_line(path)
            self._file = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise SinkError(f"cannot open {path} for appending: {exc}") from exc

    def _write(self, text: str) -> None:
        if self._file is None:
            self.start()
        assert self._file is not None
        try:
            self._file.write(text)
            self._file.flush()
            if self.config.fsync:
                os.fsync(self._file.fileno())
        except OSError:
            # Drop what is still buffered, so neither a retry nor close writes it again;
            # the next write reopens the file, cutting a line this one left unfinished.
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
            raise

    async def write(self, messages: list[Message]) -> None:
        text = "".join(encode_line(m, self.config.envelope) for m in messages)
        await asyncio.to_thread(self._write, text)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _drop_unfinished_line(path: Path) -> None:
    """Cut a last line with no newline: a write a crash cut short, so never confirmed.

    Appending after it would glue the next record onto it and lose both.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with path.open("rb+") as file:
        file.seek(size - 1)
        if file.read(1) == b"\n":
            return
        end = size
        while end > 0:
            start = max(0, end - 65536)
            file.seek(start)
            found = file.read(end - start).rfind(b"\n")
            if found >= 0:
                end = start + found + 1
                break
            end = start
        file.truncate(end)
    log.warning(
        "%s ended in an unfinished line (%d bytes, cut short by a crash): removed it",
        path,
        size - end,
    )
