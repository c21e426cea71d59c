"""docs/jsonrpc.md keeps up with the code: every setting with its default, every error code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic.fields import FieldInfo

from onto_jsonrpc import ErrorCode, JsonRpcSource

DOC = (Path(__file__).parents[3] / "docs" / "jsonrpc.md").read_text(encoding="utf-8")


def written(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if not isinstance(value, str | int | float | bool):
        return "see below"
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


@pytest.mark.parametrize(
    ("key", "field"), list(JsonRpcSource.Config.model_fields.items()), ids=lambda v: str(v)[:20]
)
def test_every_setting_is_in_the_table_with_its_default(key: str, field: FieldInfo) -> None:
    row = re.search(rf"^\| `{re.escape(key)}` \| (?P<default>[^|]+) \|", DOC, re.M)
    assert row, f"docs/jsonrpc.md has no settings row for `{key}`"
    assert row["default"].strip() == written(field)


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_every_error_code_is_in_the_table(code: ErrorCode) -> None:
    assert re.search(rf"^\| {int(code)} \| ", DOC, re.M), f"no row for {int(code)}"


def test_the_table_lists_no_code_the_plugin_does_not_have() -> None:
    listed = {int(c) for c in re.findall(r"^\| (-32\d{3}) \| ", DOC, re.M)}
    assert listed == {int(c) for c in ErrorCode}
