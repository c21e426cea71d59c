"""The fenced code blocks of a markdown page, with the HTML comment written before each.

A docs test walks a page's blocks in order and decides what to do with each from its
language and its note: the ``<!-- ... -->`` comment on the line (or lines, blank ones
skipped) right before the fence. The comment does not show in the rendered page, so it
can tell the test what the prose tells the reader (``not run: installs from PyPI``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NOT_RUN", "CodeBlock", "code_blocks"]

NOT_RUN = re.compile(r"^not run: \S")
_FENCE = re.compile(r"^(?P<fence>```+)(?P<lang>[\w+-]*)\s*$")
_NOTE = re.compile(r"^<!--\s*(?P<note>.*?)\s*-->$")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block: its language (``""`` if none), text, note and where it starts."""

    lang: str
    text: str
    note: str | None
    line: int  # 1-based line of the opening fence

    @property
    def not_run(self) -> bool:
        """Whether the note says the block is shown only (``<!-- not run: why -->``)."""
        return self.note is not None and NOT_RUN.match(self.note) is not None

    def where(self, page: Path) -> str:
        return f"{page.name}:{self.line}"


def code_blocks(markdown: str) -> list[CodeBlock]:
    """Every top-level fenced block of ``markdown``, in order.

    ``ValueError`` names the line of a fence that is never closed.
    """
    blocks: list[CodeBlock] = []
    lines = markdown.splitlines()
    note: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        opening = _FENCE.match(line)
        if opening is None:
            comment = _NOTE.match(line.strip())
            if comment is not None:
                note = comment["note"]
            elif line.strip():
                note = None  # prose between a comment and a fence detaches the comment
            index += 1
            continue
        fence = opening["fence"]
        body: list[str] = []
        for end in range(index + 1, len(lines)):
            if lines[end].strip() == fence:
                break
            body.append(lines[end])
        else:
            raise ValueError(f"line {index + 1}: the code block opened here is never closed")
        blocks.append(CodeBlock(opening["lang"], "\n".join(body) + "\n", note, index + 1))
        note = None
        index = end + 1
    return blocks
