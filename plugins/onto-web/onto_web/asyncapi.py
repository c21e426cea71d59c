"""``/asyncapi.json`` on every server the runtime runs: the AsyncAPI document of its config.

The document is ``onto_core.asyncapi.asyncapi_document`` of the running config, the one
``onto asyncapi CONFIG`` prints, made at the first request and kept. The route passes
the server's Host and Origin checks like every route, and needs no token: it describes
channels and payload schemas, never a secret, a message or a view key.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from flask import Response

from onto_web.server import WebServer, json_error

__all__ = ["serve_asyncapi"]

log = logging.getLogger("onto.web")


class _Document:
    """The document of one config, made once, on first use."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._body: str | None = None

    def body(self) -> str:
        with self._lock:
            if self._body is None:
                from onto_core.asyncapi import asyncapi_document

                self._body = json.dumps(asyncapi_document(self.config), indent=2)
            return self._body


def serve_asyncapi(server: WebServer, config: Any) -> None:
    """Serve the AsyncAPI document of ``config`` (an ``OntoConfig``) at ``GET
    /asyncapi.json`` on ``server`` (before it starts)."""
    if "onto_asyncapi" in server.app.view_functions:
        return
    document = _Document(config)

    def asyncapi() -> Response:
        try:
            body = document.body()
        except Exception:
            log.exception("the AsyncAPI document of %s could not be made", config.file)
            return json_error(500, "the AsyncAPI document could not be made; the server logged why")
        return Response(body, mimetype="application/json")

    server.app.add_url_rule("/asyncapi.json", "onto_asyncapi", asyncapi, methods=["GET"])
