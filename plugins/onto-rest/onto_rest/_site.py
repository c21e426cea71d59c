"""What every REST component on one web server shares: JSON errors, the spec and the docs UI.

The first REST component to claim a server installs, once per server:

* an error handler turning every HTTP error the server raises (unknown path 404, wrong
  method 405, body too large 413, unhandled exception 500) into the JSON error format
  ``{"error": message, "field": null}``, keeping headers such as ``Allow``;
* ``GET /openapi.json``: one OpenAPI document listing the routes of every REST component
  on the server (each under its own prefix), built when first asked for;
* ``GET /apidocs``: Swagger UI, its files served from the ``swagger-ui-bundle`` package.
"""

from __future__ import annotations

import html
import json
import threading
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, request, send_from_directory
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from onto_rest._endpoint import RestEndpoint
from onto_rest._openapi import openapi_document
from onto_web import WebServer, json_error

__all__ = ["OPENAPI_PATH", "SWAGGER_PATH", "RestSite", "error_response", "rest_site"]

OPENAPI_PATH = "/openapi.json"
SWAGGER_PATH = "/apidocs"
_SWAGGER_FILES = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-16x16.png",
        "favicon-32x32.png",
    }
)


# The web server's JSON error shape, shared by every transport on it.
error_response = json_error


class RestSite:
    """The REST components of one server: their routes' owners, JSON errors, spec and docs."""

    def __init__(self, server: WebServer) -> None:
        self.server = server
        self.endpoints: list[RestEndpoint] = []
        self._bases: dict[str, str] = {}  # route base -> component serving it
        self._document: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._docs_installed = False
        server.app.register_error_handler(HTTPException, self._http_error)

    @property
    def app(self) -> Flask:
        return self.server.app

    def add(self, endpoint: RestEndpoint) -> None:
        """Record ``endpoint``'s routes; ``ValueError`` if another component serves one."""
        reserved = {OPENAPI_PATH: "the OpenAPI document", SWAGGER_PATH: "the API docs"}
        for view in endpoint.views:
            base = endpoint.base(view)
            owner = self._bases.get(base) or reserved.get(base)
            if owner is not None:
                raise ValueError(
                    f"{self.server.url}{base} is already served by {owner}; give one of "
                    "them a different 'prefix'"
                )
        for view in endpoint.views:
            self._bases[endpoint.base(view)] = endpoint.component
        with self._lock:
            self.endpoints.append(endpoint)
            self._document = None
        if endpoint.in_openapi and not self._docs_installed:
            self._install_docs()

    def document(self) -> dict[str, Any]:
        """The OpenAPI document of every endpoint here (built once, after the last add)."""
        with self._lock:
            if self._document is None:
                self._document = openapi_document(self.endpoints)
            return self._document

    def _install_docs(self) -> None:
        self._docs_installed = True
        self.app.add_url_rule(OPENAPI_PATH, "onto_rest:openapi", self._serve_document)
        self.app.add_url_rule(SWAGGER_PATH, "onto_rest:apidocs", self._serve_swagger_page)
        self.app.add_url_rule(f"{SWAGGER_PATH}/", "onto_rest:apidocs/", self._serve_swagger_page)
        self.app.add_url_rule(
            f"{SWAGGER_PATH}/<path:filename>", "onto_rest:apidocs-file", self._serve_swagger_file
        )

    def _serve_document(self) -> Response:
        document = self.document()
        if request.script_root:  # mounted below a path (e.g. by a WSGI server)
            document = {**document, "servers": [{"url": request.script_root}]}
        return jsonify(document)

    def _serve_swagger_page(self) -> Response:
        root = request.script_root
        page = _SWAGGER_PAGE.format(
            assets=html.escape(f"{root}{SWAGGER_PATH}"),
            config=json.dumps(
                {
                    "url": f"{root}{OPENAPI_PATH}",
                    "dom_id": "#swagger-ui",
                    "deepLinking": True,
                }
            ).replace("</", "<\\/"),
        )
        return Response(page, mimetype="text/html")

    def _serve_swagger_file(self, filename: str) -> Response:
        if filename not in _SWAGGER_FILES:
            abort(404)
        return send_from_directory(Path(str(swagger_ui_path)), filename, max_age=3600)

    def _http_error(self, exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {
            name: value
            for name, value in exc.get_headers()
            if name.lower() not in ("content-type", "content-length")
        }
        return error_response(status, self._describe(exc, status), headers=headers)

    def _describe(self, exc: HTTPException, status: int) -> str:
        where = f"{request.method} {request.path}"
        if status == 404:
            hint = f"; the routes are listed at {OPENAPI_PATH}" if self._docs_installed else ""
            return f"nothing is served at {request.path}{hint}"
        if status == 405 and isinstance(exc, MethodNotAllowed):
            allowed = ", ".join(sorted(exc.valid_methods or []))
            return f"{where} is not allowed; {request.path} accepts {allowed}"
        if status == 413:
            limit = request.max_content_length
            return f"the request body is larger than the {limit} bytes this endpoint accepts"
        if status >= 500:
            return f"internal error handling {where}; the server log has the details"
        return exc.description or exc.name


def rest_site(server: WebServer) -> RestSite:
    """The ``RestSite`` of ``server``, made by the first REST component to ask."""
    return server.shared("onto-rest", lambda: RestSite(server))


# Swagger UI's own files come from the swagger-ui-bundle package, served by this server.
_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>onto REST API</title>
  <link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script src="{assets}/swagger-ui-standalone-preset.js"></script>
  <script>
    const config = {config};
    window.ui = SwaggerUIBundle(Object.assign(config, {{
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout"
    }}));
  </script>
</body>
</html>
"""
