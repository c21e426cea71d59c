"""docs/leancloud.md keeps up with the LeanEngine sources: every setting, every route form."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from onto_leancloud.engine import ROUTE_PREFIXES, LeanEngineFunctionsSource, LeanEngineSource

DOC = (Path(__file__).parents[3] / "docs" / "leancloud.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("component", [LeanEngineSource, LeanEngineFunctionsSource])
def test_every_setting_is_documented(component: type) -> None:
    config: type[BaseModel] = component.Config
    for name, field in config.model_fields.items():
        assert f"`{field.alias or name}`" in DOC, f"{component.__name__}.{name}"


def test_every_route_prefix_is_documented() -> None:
    for prefix in ROUTE_PREFIXES:
        assert f"`{prefix}`" in DOC


def test_the_example_config_is_the_one_the_docs_name() -> None:
    example = Path(__file__).parents[3] / "examples" / "meeting_room" / "leancloud.yaml"
    assert example.exists()
    assert "examples/meeting_room/leancloud.yaml" in DOC


def test_the_example_config_printed_keeps_every_key_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from onto_core.cli import cli

    secrets = {
        "LEANCLOUD_APP_KEY": "the-app-key",
        "LEANCLOUD_APP_MASTER_KEY": "the-master-key",
        "LEANCLOUD_APP_HOOK_KEY": "the-hook-key",
    }
    for name, value in {
        **secrets,
        "LEANCLOUD_APP_ID": "app",
        "LEANCLOUD_API_SERVER": "http://127.0.0.1:9",
    }.items():
        monkeypatch.setenv(name, value)
    example = Path(__file__).parents[3] / "examples" / "meeting_room" / "leancloud.yaml"
    done = CliRunner().invoke(cli, ["validate", "--show", str(example)])
    assert done.exit_code == 0, done.output
    assert "hook_key: '***'" in done.output or "hook_key: ***" in done.output
    for value in secrets.values():
        assert value not in done.output
