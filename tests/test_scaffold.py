"""``onto new``: the connector and app templates, as a user scaffolds, installs and tests them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from onto_core.__about__ import __version__
from onto_core.cli import cli

ROOT = Path(__file__).parents[1]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="onto")


def test_new_connector_writes_a_plugin_package(tmp_path: Path) -> None:
    result = invoke("new", "connector", "redis_streams", "--dir", str(tmp_path / "plugin"))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote the connector into {tmp_path / 'plugin'}")
    written = sorted(
        str(p.relative_to(tmp_path / "plugin")) for p in (tmp_path / "plugin").rglob("*")
    )
    assert written == [
        "README.md",
        "onto_redis_streams",
        "onto_redis_streams/__init__.py",
        "onto_redis_streams/_records.py",
        "onto_redis_streams/_sink.py",
        "onto_redis_streams/_source.py",
        "onto_redis_streams/py.typed",
        "pyproject.toml",
        "tests",
        "tests/test_onto_redis_streams.py",
    ]
    project = tomllib.loads((tmp_path / "plugin" / "pyproject.toml").read_text())
    assert project["project"]["name"] == "onto-redis-streams"
    assert f"onto-core>={__version__},<0.2" in project["project"]["dependencies"]
    entry_points = project["project"]["entry-points"]
    assert entry_points["onto"] == {"redis_streams": "onto_redis_streams"}
    assert entry_points["onto.components"] == {
        "source.redis_streams": "onto_redis_streams",
        "sink.redis_streams": "onto_redis_streams",
    }


def test_new_app_writes_into_a_folder_named_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("new", "app", "todo")
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "todo").iterdir()} == {
        "README.md",
        "onto.yaml",
        "pyproject.toml",
        "rest.yaml",
        "tests",
        "todo",
    }
    assert 'view: "todo.views:TaskView"' in (tmp_path / "todo" / "onto.yaml").read_text()


def test_the_connector_folder_defaults_to_onto_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke("new", "connector", "ledger").exit_code == 0
    assert (tmp_path / "onto-ledger" / "onto_ledger" / "__init__.py").is_file()


@pytest.mark.parametrize("kind", ["connector", "app"])
def test_a_folder_that_is_not_empty_is_refused_and_left_alone(tmp_path: Path, kind: str) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    result = invoke("new", kind, "ledger", "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {tmp_path} already exists and is not empty; choose another folder with --dir"
        " or remove it\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("Redis-Streams", "redis_streams"), ("2fast", "redis_streams"), ("my__sink", "my_sink")],
)
def test_a_name_that_is_not_allowed_says_what_is(
    tmp_path: Path, name: str, suggestion: str
) -> None:
    result = invoke("new", "connector", name, "--dir", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: connector name {name!r} is not allowed: use lowercase letters, digits and"
        f" underscores, starting with a letter, with single underscores between words (e.g."
        f" {suggestion!r})\n"
    )
    assert not (tmp_path / "x").exists()


def test_an_app_named_like_a_standard_module_is_refused(tmp_path: Path) -> None:
    result = invoke("new", "app", "json", "--dir", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert result.stderr == (
        "error: app name 'json' would shadow the module 'json' it is imported as; choose another\n"
    )


# --- installed into a fresh virtual environment and tested there ---------------------


def run(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "ONTO_LOAD_PLUGINS"}}
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def scaffolds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fresh venv with onto-core built from this checkout, and both scaffolds installed.

    The scaffolds are written by that venv's ``onto new``, so the templates are proven to
    ship in the onto-core wheel.
    """
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is needed to make the virtual environment")
    work = tmp_path_factory.mktemp("scaffolds")
    venv = work / "venv"
    run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], work)
    python = str(venv / "bin" / "python")
    # --reinstall-package: build onto-core from the checkout as it is now, not from cache.
    install = [uv, "pip", "install", "--quiet", "--python", python]
    run([*install, "--reinstall-package", "onto-core", str(ROOT)], work)
    onto = str(venv / "bin" / "onto")
    run([onto, "new", "connector", "sample_log"], work)
    run([onto, "new", "app", "todo"], work)
    folders = {"connector": work / "onto-sample_log", "app": work / "todo"}
    run([*install, "-e", f"{folders['connector']}[test]", "-e", f"{folders['app']}[test]"], work)
    return {**folders, "python": Path(python)}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["connector", "app"])
def test_the_scaffold_installs_and_passes_its_own_tests(
    scaffolds: dict[str, Path], kind: str
) -> None:
    done = run(
        [str(scaffolds["python"]), "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA"],
        scaffolds[kind],
    )
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary
    assert "failed" not in summary
    assert "error" not in summary
    passed = [line for line in done.stdout.splitlines() if line.startswith("PASSED")]
    if kind == "connector":  # the conformance suites ran, restart tests included
        assert any(
            "TestSampleLogSource::test_unacked_messages_are_redelivered" in p for p in passed
        )
        assert any("TestSampleLogSink::test_every_message_of_a_batch_arrives" in p for p in passed)
    else:
        assert any("test_marking_a_task_done_updates_its_view" in p for p in passed)
