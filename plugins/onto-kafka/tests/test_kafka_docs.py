"""docs/kafka.md keeps up with the components' settings."""

from __future__ import annotations

from pathlib import Path

from onto_core.cli import components_markdown
from onto_core.plugins import list_components

DOC = Path(__file__).parents[3] / "docs" / "kafka.md"


def test_the_reference_section_matches_the_component_specs() -> None:
    found = [c for c in list_components() if c.plugin == "kafka"]
    assert {(c.kind, c.name) for c in found} == {
        ("source", "kafka"),
        ("processor", "kafka_decode"),
        ("sink", "kafka"),
        ("coordinator", "kafka"),
    }
    generated = "## " + components_markdown(found).split("\n## ", 1)[1]
    for kind in ("source", "processor", "sink", "coordinator"):
        generated = generated.replace(f"## {kind} ", f"### {kind} ")
    written = DOC.read_text(encoding="utf-8")
    marker = "<!-- reference: generated, do not edit by hand -->\n\n"
    assert written.split(marker, 1)[1] == generated, "regenerate the Reference section"


def test_every_dead_letter_header_the_source_sets_is_documented() -> None:
    from onto_kafka import (
        ERROR_HEADER,
        LAST_OFFSET_HEADER,
        OFFSET_HEADER,
        PARTITION_HEADER,
        TOPIC_HEADER,
    )

    written = DOC.read_text(encoding="utf-8")
    for header in (
        TOPIC_HEADER,
        PARTITION_HEADER,
        OFFSET_HEADER,
        LAST_OFFSET_HEADER,
        ERROR_HEADER,
        "onto-error",
    ):
        assert f"| `{header}` |" in written
