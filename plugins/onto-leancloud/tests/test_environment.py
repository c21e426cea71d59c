"""onto-leancloud installs beside every other onto plugin: one environment, no conflicts."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

PLUGINS = ["onto-leancloud", "onto-rest", "onto-jsonrpc", "onto-websocket", "onto-web"]


def test_every_plugin_shares_one_environment_with_flask_3_and_pip_check_is_clean() -> None:
    installed = {name: importlib.metadata.version(name) for name in PLUGINS}
    assert all(installed.values()), installed
    assert int(importlib.metadata.version("flask").split(".")[0]) >= 3
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv not found (UV unset, none on PATH): cannot run uv pip check")
    done = subprocess.run(
        [uv, "pip", "check", "--python", sys.executable],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_plugin_does_not_need_the_official_sdk() -> None:
    # The SDK's pins (Werkzeug<2, ...) cannot live here; the plugin speaks REST itself.
    assert importlib.util.find_spec("leancloud") is None
    requires = importlib.metadata.requires("onto-leancloud") or []
    assert not [r for r in requires if r.lower().startswith("leancloud")], requires
