"""docs/tutorial.md works as written: its blocks run in order and show what it says.

The test plays the reader in a temporary folder. Each block is, by its first line or
the HTML comment before it:

- a file to write (a ``python`` or ``yaml`` block whose first line is ``# path``), or a
  part of one to replace (``# in app.yaml, replace pipelines.api.source with:``);
- shell commands (``sh``), run by bash; ``cd`` and ``export`` carry over to the next
  block as in the reader's terminal. ``<!-- keeps running; ready when it prints "X" -->``
  starts one in the background, waiting for ``X`` in its output; starting the same
  command again stops the running one first (Ctrl-C, as the reader would);
- the output the reader sees (``text``): that of the commands just before it, or with
  ``<!-- output of: COMMAND -->`` everything that background command printed so far;
- shown only, with ``<!-- not run: why -->``.

The tutorial's port 8000 becomes a free port, and the generated ids it shows stand for
the ones this run generates: the first output showing an id binds it, and later files
and commands get the real one.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
import yaml
from doc_blocks import CodeBlock, code_blocks

TUTORIAL = Path(__file__).parents[1] / "docs" / "tutorial.md"
WAIT = 60.0  # seconds any one command, start or expected output may take

FILE = re.compile(r"^# (?P<path>[\w./-]+\.(?:py|yaml))$")
REPLACE = re.compile(r"^# in (?P<path>[\w./-]+\.yaml), replace (?P<key>[\w.]+) with:$")
KEEPS_RUNNING = re.compile(r'^keeps running(?:; ready when it prints "(?P<ready>[^"]+)")?$')
OUTPUT_OF = re.compile(r"^output of: (?P<command>.+)$")
ID = re.compile(r"\b[0-9a-f]{20}\b")  # a generated document id
PORT = re.compile(r"\b8000\b")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def first_line(block: CodeBlock) -> str:
    return block.text.split("\n", 1)[0]


def kind(block: CodeBlock) -> str:
    """What the test does with ``block``: write, replace, run, start, output or show."""
    if block.not_run:
        return "show"
    if block.lang in ("python", "yaml") and FILE.match(first_line(block)):
        return "write"
    if block.lang == "yaml" and REPLACE.match(first_line(block)):
        return "replace"
    if block.lang == "sh":
        return "start" if block.note and KEEPS_RUNNING.match(block.note) else "run"
    if block.lang == "text":
        return "output"
    raise AssertionError(
        f"{block.where(TUTORIAL)}: a {block.lang or 'plain'} block the test cannot run; "
        "start it with '# <file>', or put <!-- not run: why --> before it"
    )


@dataclass
class Background:
    process: subprocess.Popen[bytes]
    log: Path
    out: IO[bytes]

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


class Reader:
    """Follows the tutorial in ``home``: its files, its terminals, what it has seen."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.cwd = home
        self.port = free_port()
        bin_dir = str(Path(sys.executable).parent)  # `python` and `onto` of this environment
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ONTO_")}
        self.env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        self.env["PYTHONUNBUFFERED"] = "1"  # a background command's lines show as printed
        self.ids: dict[str, str] = {}  # id shown in the tutorial -> id generated here
        self.running: dict[str, Background] = {}
        self.state = home / ".terminal"
        self.state.mkdir()
        self.started = 0

    def local(self, text: str) -> str:
        """``text`` with this run's port and the ids generated so far."""
        text = PORT.sub(str(self.port), text)
        return ID.sub(lambda m: self.ids.get(m[0], m[0]), text)

    def expected(self, block: CodeBlock) -> str:
        """An output block as this run should print it, ids still as the tutorial shows."""
        return tidy(PORT.sub(str(self.port), block.text))

    def write(self, block: CodeBlock) -> None:
        match = FILE.match(first_line(block))
        assert match is not None
        path = self.cwd / match["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.local(block.text), encoding="utf-8")

    def replace(self, block: CodeBlock) -> None:
        match = REPLACE.match(first_line(block))
        assert match is not None
        path = self.cwd / match["path"]
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        *parents, last = match["key"].split(".")
        target = config
        for key in parents:
            target = target[key]
        assert last in target, f"{block.where(TUTORIAL)}: {path.name} has no {match['key']}"
        target[last] = yaml.safe_load(self.local(block.text))
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def run(self, block: CodeBlock) -> tuple[int, str]:
        """Run the block's commands as the reader's terminal would; exit status and output."""
        keep = f"pwd > {self.state / 'cwd'}; env -0 > {self.state / 'env'}"
        script = f"cd {shlex.quote(str(self.cwd))}\ntrap {shlex.quote(keep)} EXIT\n"
        done = subprocess.run(
            ["bash", "-c", script + self.local(block.text)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=WAIT,
            check=False,
        )
        self.cwd = Path((self.state / "cwd").read_text(encoding="utf-8").strip())
        pairs = (self.state / "env").read_bytes().decode().split("\0")
        self.env = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        return done.returncode, done.stdout.decode(errors="replace")

    def start(self, block: CodeBlock, ready: str | None) -> None:
        command = self.local(block.text).strip()
        if command in self.running:
            self.stop(command)
        self.started += 1
        log = self.home / f"background-{self.started}.log"
        out = log.open("wb")
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Ctrl-C reaches all of it
        )
        started = self.running[command] = Background(process, log, out)
        if ready is None:
            return
        deadline = time.monotonic() + WAIT
        while ready not in started.output():
            assert process.poll() is None, (
                f"{block.where(TUTORIAL)}: `{command}` exited ({process.returncode}) before "
                f"printing {ready!r}:\n{started.output()}"
            )
            assert time.monotonic() < deadline, (
                f"{block.where(TUTORIAL)}: `{command}` did not print {ready!r} within "
                f"{WAIT}s:\n{started.output()}"
            )
            time.sleep(0.05)

    def stop(self, command: str) -> None:
        started = self.running.pop(command)
        if started.process.poll() is None:
            os.killpg(started.process.pid, signal.SIGINT)
            try:
                started.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(started.process.pid, signal.SIGKILL)
                started.process.wait(10)
        started.out.close()

    def stop_all(self) -> None:
        for command in reversed(list(self.running)):
            self.stop(command)

    def sees(self, expected: str, actual: str) -> bool:
        """Whether ``actual`` is ``expected`` (ids standing for any generated id); binds them."""
        pattern, new = [], []
        position = 0
        for found in ID.finditer(expected):
            pattern.append(re.escape(expected[position : found.start()]))
            shown = found[0]
            if shown in self.ids:
                pattern.append(re.escape(self.ids[shown]))
            elif shown in new:
                pattern.append(f"(?P=id{new.index(shown)})")
            else:
                pattern.append(f"(?P<id{len(new)}>[0-9a-f]{{20}})")
                new.append(shown)
            position = found.end()
        pattern.append(re.escape(expected[position:]))
        match = re.fullmatch("".join(pattern), actual)
        if match is None:
            return False
        for number, shown in enumerate(new):
            generated = match[f"id{number}"]
            assert generated not in self.ids.values(), f"{shown} and another id are one id"
            self.ids[shown] = generated
        return True


def tidy(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    blocks = code_blocks(TUTORIAL.read_text(encoding="utf-8"))
    reader = Reader(tmp_path)
    try:
        for index, block in enumerate(blocks):
            where = block.where(TUTORIAL)
            what = kind(block)
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            shows_output = following is not None and kind(following) == "output"
            if what == "write":
                reader.write(block)
            elif what == "replace":
                reader.replace(block)
            elif what == "start":
                assert block.note is not None
                ready = KEEPS_RUNNING.match(block.note)
                reader.start(block, ready["ready"] if ready else None)
            elif what == "run":
                status, output = reader.run(block)
                if shows_output and not (following and following.note):
                    expected = reader.expected(following)
                    assert reader.sees(expected, tidy(output)), (
                        f"{where}: the commands printed\n{output}\n"
                        f"where {following.where(TUTORIAL)} shows\n{expected}"
                    )
                else:
                    assert status == 0, f"{where}: exit status {status}:\n{output}"
            elif what == "output" and block.note:
                output_of = OUTPUT_OF.match(block.note)
                assert output_of, f"{where}: unknown note {block.note!r}"
                command = reader.local(output_of["command"])
                assert command in reader.running, f"{where}: `{command}` was not started"
                started = reader.running[command]
                expected = reader.expected(block)
                deadline = time.monotonic() + WAIT
                while not reader.sees(expected, tidy(started.output())):
                    assert time.monotonic() < deadline, (
                        f"{where}: within {WAIT}s `{command}` printed\n{started.output()}\n"
                        f"instead of\n{expected}"
                    )
                    time.sleep(0.05)
            elif what == "output":
                previous = kind(blocks[index - 1]) if index else None
                assert previous == "run", f"{where}: output must follow the commands printing it"
    finally:
        reader.stop_all()


def test_every_tutorial_block_is_run_but_a_few_shown_with_a_reason() -> None:
    blocks = code_blocks(TUTORIAL.read_text(encoding="utf-8"))
    kinds = [kind(block) for block in blocks]  # fails on a block the test cannot run
    shown = [b for b in blocks if b.not_run]
    assert len(shown) <= 3, [b.where(TUTORIAL) for b in shown]
    assert kinds.count("write") >= 5  # models, views, seed, config, watcher
    notes = [b.note for b in blocks if b.note and not b.not_run]
    for note in notes:
        assert KEEPS_RUNNING.match(note) or OUTPUT_OF.match(note), note


def test_code_blocks_keep_the_comment_written_just_before_them() -> None:
    page = (
        "Intro.\n\n<!-- not run: needs PyPI -->\n\n```sh\npip install x\n```\n"
        "<!-- keeps running -->\nThen prose.\n```text\nout\n```\n"
        "````md\n```py\nnested\n```\n````\n"
    )
    blocks = code_blocks(page)
    assert [(b.lang, b.note, b.line) for b in blocks] == [
        ("sh", "not run: needs PyPI", 5),
        ("text", None, 10),
        ("md", None, 13),
    ]
    assert blocks[0].not_run
    assert not blocks[1].not_run
    assert blocks[2].text == "```py\nnested\n```\n"
    with pytest.raises(ValueError, match="line 1: "):
        code_blocks("```sh\nnever closed\n")
