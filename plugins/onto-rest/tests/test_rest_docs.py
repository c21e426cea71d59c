"""docs/rest.md keeps up with the rest source: every setting, with its default."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from onto_rest import RestSource

PAGE = (Path(__file__).parents[3] / "docs" / "rest.md").read_text(encoding="utf-8")


def written(field: FieldInfo) -> str:
    """A setting's default as the page's table writes it."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{value}`" if isinstance(value, str) and value else f"`{json.dumps(value)}`"


@pytest.mark.parametrize(("name", "field"), list(RestSource.Config.model_fields.items()))
def test_every_setting_is_in_the_table_with_its_default(name: str, field: FieldInfo) -> None:
    row = re.search(rf"^\| `{name}` \| (?P<default>[^|]+) \|", PAGE, re.M)
    assert row, f"docs/rest.md has no settings row for `{name}`"
    assert row["default"].strip() == written(field)


def test_the_page_names_every_error_status_the_document_declares() -> None:
    from onto_rest._openapi import _ERRORS

    for status in [*_ERRORS, "405", "500"]:
        assert re.search(rf"^\| {status} \|", PAGE, re.M), status
