"""The official LeanCloud SDK as a peer in tests, in a virtual environment of its own.

``leancloud`` 3.0.2 pins Werkzeug<2 (and more) and imports its engine on import, so it
can never live in the workspace environment next to Flask 3. ``SdkPeer.create(cache)``
makes (once; later sessions reuse it) a venv under ``cache`` with ``uv venv`` and
``uv pip install leancloud==3.0.2``; ``peer.run(script, env)`` runs a Python script in
it and returns its stdout, ``peer.run_json`` the JSON its last line prints.

``PRELUDE`` initialises the SDK from ``double_env(double)``'s variables (app id, keys,
``LEANCLOUD_API_SERVER`` pointing at the double), so a script reads::

    peer.run_json(PRELUDE + "print(json.dumps(leancloud.Query('Ticket').count()))",
                  double_env(double))
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onto_leancloud.double import LeanCloudDouble

__all__ = ["PRELUDE", "SDK_REQUIREMENT", "SdkPeer", "double_env"]

SDK_REQUIREMENT = "leancloud==3.0.2"

PRELUDE = """\
import json, os, sys
import leancloud
leancloud.init(
    os.environ["LEANCLOUD_APP_ID"],
    os.environ.get("LEANCLOUD_APP_KEY"),
    master_key=os.environ.get("LEANCLOUD_APP_MASTER_KEY"),
    hook_key=os.environ.get("LEANCLOUD_APP_HOOK_KEY"),
)
"""
"""Script opening: imports ``json``, ``os``, ``sys``, ``leancloud`` and calls ``leancloud.init``."""


def double_env(double: LeanCloudDouble, hook_key: str | None = None) -> dict[str, str]:
    """The environment that points the SDK at ``double`` with its app's credentials."""
    env = {
        "LEANCLOUD_API_SERVER": double.url,  # client.get_url: requests go to {server}/1.1/...
        "LEANCLOUD_APP_ID": double.app_id,
        "LEANCLOUD_APP_KEY": double.app_key,
        "LEANCLOUD_APP_MASTER_KEY": double.master_key,
    }
    if hook_key is not None:
        env["LEANCLOUD_APP_HOOK_KEY"] = hook_key
    return env


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``, so parallel test processes build the venv once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class SdkPeer:
    """A venv holding the official ``leancloud`` SDK; runs scripts in it."""

    python: Path

    @classmethod
    def create(cls, cache: Path, timeout: float = 300.0) -> SdkPeer:
        """The peer venv under ``cache`` (made on first use: needs ``uv`` and a PyPI index)."""
        venv = cache / "venv"
        python = venv / "bin" / "python"
        ready = cache / f"ready-{SDK_REQUIREMENT}"
        with _locked(cache / "lock"):
            if not ready.exists():
                # ``uv run`` names itself in UV; a user-site install may not be on PATH.
                uv = os.environ.get("UV") or shutil.which("uv")
                if uv is None:
                    raise RuntimeError(
                        "uv not found (UV unset, none on PATH): the SDK peer venv is made with uv"
                    )
                shutil.rmtree(venv, ignore_errors=True)
                version = f"{sys.version_info.major}.{sys.version_info.minor}"
                for command in (
                    [uv, "venv", "--quiet", "--python", version, str(venv)],
                    [uv, "pip", "install", "--quiet", "--python", str(python), SDK_REQUIREMENT],
                ):
                    done = subprocess.run(
                        command, capture_output=True, text=True, timeout=timeout, check=False
                    )
                    if done.returncode != 0:
                        raise RuntimeError(
                            f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}"
                        )
                ready.write_text(SDK_REQUIREMENT)
        return cls(python)

    def run(self, script: str, env: Mapping[str, str] | None = None, timeout: float = 60.0) -> str:
        """Run ``script`` in the peer venv with ``env`` added; its stdout.

        ``AssertionError`` with its stderr when it fails or outlives ``timeout``.
        """
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith(("LEANCLOUD_", "LC_"))
        }
        environment.pop("VIRTUAL_ENV", None)
        environment.update(env or {})
        environment["PYTHONUNBUFFERED"] = "1"
        try:
            done = subprocess.run(
                [str(self.python), "-c", script],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=environment,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"SDK peer script ran past {timeout}s:\n{exc.stderr}") from exc
        if done.returncode != 0:
            raise AssertionError(
                f"SDK peer script failed ({done.returncode}):\n{done.stderr}\n{done.stdout}"
            )
        return done.stdout

    def run_json(
        self, script: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> Any:
        """Run ``script`` (see ``run``); the JSON value its last stdout line holds."""
        lines = self.run(script, env, timeout).strip().splitlines()
        if not lines:
            raise AssertionError("SDK peer script printed nothing")
        return json.loads(lines[-1])

    def popen(self, script: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """Start ``script`` in the peer venv (e.g. a server); the caller stops it."""
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith(("LEANCLOUD_", "LC_"))
        }
        environment.pop("VIRTUAL_ENV", None)
        environment.update(env or {})
        environment["PYTHONUNBUFFERED"] = "1"
        return subprocess.Popen(
            [str(self.python), "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
        )
