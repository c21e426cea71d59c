"""The web server's Prometheus metrics, and ``/metrics`` on every server the runtime runs.

``serve_metrics(server, registry)`` adds the route; ``WebRequestsCollector`` reads each
server's request counts (``WebServer.requests``) at scrape time. ``/metrics`` passes the
server's Host and Origin checks like every route, and needs no token: it shows counts by
pipeline, component, route and status, never a secret, a message or a view key.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from onto_core.prometheus import MetricSpec, SpecCollector
from onto_web.server import WebServer, all_servers

__all__ = ["HTTP_REQUESTS", "WEB_METRICS", "WebRequestsCollector", "serve_metrics"]

HTTP_REQUESTS = MetricSpec(
    "onto_http_requests_total",
    "counter",
    "HTTP answers of the shared web server by route rule (not the path; socket.io for"
    " Socket.IO's own requests, unmatched when no route matched, refused when the Host"
    " or Origin check refused it) and status code.",
    ("server", "route", "status"),
)

WEB_METRICS: tuple[MetricSpec, ...] = (HTTP_REQUESTS,)
"""What ``WebRequestsCollector`` exposes."""


class WebRequestsCollector(SpecCollector):
    """Requests answered by every web server of this process, by route and status."""

    specs = WEB_METRICS

    def fill(self, families: dict[str, Any]) -> None:
        for server in all_servers():
            if not server.claimed_by:
                continue
            name = f"{server.host}:{server.port}"
            for (route, status), count in server.requests.copy().items():
                families[HTTP_REQUESTS.name].add_metric([name, route, status], count)


def serve_metrics(server: WebServer, registry: CollectorRegistry) -> None:
    """Serve ``registry`` at ``GET /metrics`` on ``server`` (before it starts)."""
    if "onto_metrics" in server.app.view_functions:
        return

    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_LATEST)

    server.app.add_url_rule("/metrics", "onto_metrics", metrics, methods=["GET"])
