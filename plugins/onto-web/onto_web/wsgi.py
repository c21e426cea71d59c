"""Serving onto's web transports from a production WSGI server instead of ``onto run``.

    ONTO_CONFIG=app.yaml gunicorn --workers 1 --threads 100 'onto_web.wsgi:app'

Importing this module loads the config named by ``ONTO_CONFIG``, runs every pipeline in
a background thread (exactly as ``onto run`` would, without its own HTTP server) and
exposes the one Flask app its web components share as ``app``. Use one worker process:
each worker runs the pipelines, so several would deliver every view several times. The
threads serve concurrent requests and WebSocket connections (Flask-SocketIO's threading
mode, through simple-websocket).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from flask import Flask

from onto_core.config import load_config
from onto_core.errors import ConfigError
from onto_core.runtime import running
from onto_web import server as servers

__all__ = ["create_app"]

_keep: list[Any] = []  # the running runtime's context, alive as long as the process


def create_app(config_path: str | os.PathLike[str]) -> Flask:
    """Start the config's pipelines in the background; the Flask app its components share.

    Raises ``ConfigError`` when the config has no web component, or has them on more than
    one host and port (a WSGI server serves one app).
    """
    config = load_config(config_path)
    servers.serve_externally(True)
    context = running(config)
    context.__enter__()
    _keep.append(context)
    claimed = [s for s in servers.all_servers() if s.claimed_by]
    if len(claimed) != 1:
        where = ", ".join(f"{s.host}:{s.port}" for s in claimed) or "none"
        raise ConfigError(
            f"a WSGI server serves exactly one web endpoint; the config has: {where}",
            file=str(config_path),
        )
    return claimed[0].app


def _from_environment() -> Flask:
    path = os.environ.get("ONTO_CONFIG")
    if not path:
        raise ConfigError("set ONTO_CONFIG to the pipeline config to serve")
    return create_app(path)


_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    # ``app`` is built on first access, so importing the module alone starts nothing.
    if name != "app":
        raise AttributeError(name)
    with _lock:
        if "app" not in globals():
            globals()["app"] = _from_environment()
    return globals()["app"]
