"""docs/writing-connectors.md: its worked example runs as written and passes its tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

PAGE = Path(__file__).parents[1] / "docs" / "writing-connectors.md"


def example_blocks() -> list[str]:
    """The Python blocks of the page's worked example, in order."""
    text = PAGE.read_text(encoding="utf-8")
    example = text[text.index("\n## A worked example") :]
    return re.findall(r"```python\n(.*?)```", example, re.S)


def test_the_worked_example_runs_and_passes_the_conformance_suites(tmp_path: Path) -> None:
    module = tmp_path / "test_linefile.py"
    module.write_text("".join(example_blocks()), encoding="utf-8")
    junit = tmp_path / "report.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"],
        cwd=tmp_path,
        env={**os.environ, "ONTO_LOAD_PLUGINS": ""},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    ran = {c.get("name") for c in cases if c.find("skipped") is None}
    assert "test_unacked_messages_are_redelivered_after_reopen" in ran
    assert "test_an_idle_source_waits_and_delivers_what_arrives_later" in ran
    assert "test_a_failed_batch_written_again_lands_every_message" in ran
    assert "test_lines_flow_from_one_file_to_another" in ran


def test_the_page_is_linked_from_the_hook_reference_and_the_readme() -> None:
    root = PAGE.parents[1]
    assert "(writing-connectors.md)" in (root / "docs" / "hooks.md").read_text("utf-8")
    assert "(docs/writing-connectors.md)" in (root / "README.md").read_text("utf-8")
