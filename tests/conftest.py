"""Fixtures shared by onto's core tests.

- ``installed_plugins``: the test plugin distributions in ``tests/plugins/`` built and
  installed into a temporary directory, once per session.
- ``onto``: runs the real ``onto`` command in a subprocess, optionally with those plugins
  importable.
- ``seeded_store``: a sqlite datastore holding the meeting room's seed data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from examples.meeting_room.seed import seed
from onto_core.builtin.sqlite import SqliteDatastore

PLUGIN_SOURCES = Path(__file__).parent / "plugins"

OntoCommand = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def installed_plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed ``onto-sample`` and ``onto-broken`` distributions.

    Put it on ``PYTHONPATH`` and their entry points are found like any installed plugin's.
    """
    target = tmp_path_factory.mktemp("site-packages")
    sources = [str(PLUGIN_SOURCES / "onto-sample"), str(PLUGIN_SOURCES / "onto-broken")]
    uv = shutil.which("uv")
    if uv is not None:
        command = [uv, "pip", "install", "--python", sys.executable]
    else:
        command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    command += ["--no-deps", "--target", str(target), *sources]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        pytest.fail(f"installing the test plugins failed:\n{done.stdout}\n{done.stderr}")
    return target


@pytest.fixture
def onto(tmp_path: Path) -> OntoCommand:
    """``onto(*args, plugins=None, env=None, cwd=tmp_path)`` runs ``python -m onto_core``.

    ``plugins`` is a directory put first on ``PYTHONPATH`` (``installed_plugins``); ``env``
    entries are added to a copy of this process's environment, from which any
    ``ONTO_LOAD_PLUGINS`` is removed first.
    """

    def run(
        *args: str,
        plugins: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if k != "ONTO_LOAD_PLUGINS"}
        if plugins is not None:
            environ["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(plugins), environ.get("PYTHONPATH", "")) if p
            )
        environ.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "onto_core", *args],
            capture_output=True,
            text=True,
            cwd=cwd or tmp_path,
            env=environ,
            timeout=60,
            check=False,
        )

    return run


@pytest.fixture
def seeded_store(tmp_path: Path) -> Iterator[SqliteDatastore]:
    """A sqlite datastore in ``tmp_path`` holding the meeting room's seed data."""
    datastore = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    datastore.open()
    try:
        seed(datastore)
        yield datastore
    finally:
        datastore.close()
