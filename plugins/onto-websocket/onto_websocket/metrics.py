"""The Socket.IO servers' Prometheus metrics: connections and subscriptions now.

``SocketMetricsCollector`` reads every ``SocketHub`` of this process at scrape time
(``SocketHub.metrics()``); onto-websocket adds it to the runtime's registry in
``runtime_started``.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from onto_core.prometheus import MetricSpec, SpecCollector

if TYPE_CHECKING:
    from onto_websocket.hub import SocketHub

__all__ = [
    "SOCKET_CONNECTIONS",
    "SOCKET_METRICS",
    "SOCKET_SUBSCRIPTIONS",
    "SocketMetricsCollector",
    "track",
]

SOCKET_CONNECTIONS = MetricSpec(
    "onto_websocket_connections",
    "gauge",
    "Socket.IO connections open now.",
    ("server",),
)
SOCKET_SUBSCRIPTIONS = MetricSpec(
    "onto_websocket_subscriptions",
    "gauge",
    "Subscriptions held now by view (one per connection and view key subscribed).",
    ("server", "view"),
)

SOCKET_METRICS: tuple[MetricSpec, ...] = (SOCKET_CONNECTIONS, SOCKET_SUBSCRIPTIONS)
"""What ``SocketMetricsCollector`` exposes."""

_hubs: weakref.WeakSet[SocketHub] = weakref.WeakSet()


def track(hub: SocketHub) -> None:
    """Have ``hub`` counted by every ``SocketMetricsCollector`` (while it exists)."""
    _hubs.add(hub)


class SocketMetricsCollector(SpecCollector):
    """Connections and subscriptions of every Socket.IO server of this process."""

    specs = SOCKET_METRICS

    def fill(self, families: dict[str, Any]) -> None:
        for hub in list(_hubs):
            figures = hub.metrics()
            server = f"{hub.server.host}:{hub.server.port}"
            families[SOCKET_CONNECTIONS.name].add_metric([server], figures["connections"])
            for view, count in sorted(figures["subscriptions"].items()):
                families[SOCKET_SUBSCRIPTIONS.name].add_metric([server, view], count)
