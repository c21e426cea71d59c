"""Test helpers for apps served over onto-websocket: a recording Socket.IO client.

::

    with running(config, datastore=store):
        client = ViewClient().connect("http://127.0.0.1:8000", token="...")
        assert client.subscribe("meeting_session", "meeting-1/joshua") == {"ok": True}
        first = client.next_view()
        ...
        client.close()

Needs the Socket.IO client (``pip install "python-socketio[client]"``). Every wait is
bounded by ``timeout`` seconds and fails with ``AssertionError`` saying what never came.
"""

from __future__ import annotations

import queue
import socket
import time
from collections.abc import Callable
from typing import Any

import socketio  # type: ignore[import-untyped]

__all__ = ["ViewClient", "free_port"]


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ViewClient:
    """A real Socket.IO client (WebSocket transport) recording ``view`` and ``error`` events.

    ``views`` and ``errors`` are queues of the events' payloads, in arrival order;
    ``refusals`` holds what the server said when it refused to connect (``{"message"}``).
    """

    def __init__(self, timeout: float = 10.0, event: str = "view") -> None:
        self.timeout = timeout
        self.client = socketio.Client(reconnection=False)
        self.views: queue.Queue[dict[str, Any]] = queue.Queue()
        self.errors: queue.Queue[dict[str, Any]] = queue.Queue()
        self.refusals: queue.Queue[Any] = queue.Queue()
        self.client.on(event, self.views.put)
        self.client.on("error", self.errors.put)
        self.client.on("connect_error", self.refusals.put)

    def connect(self, url: str, token: str | None = None) -> ViewClient:
        """Connect to ``url`` (``http://host:port``), with ``{"token": token}`` if given.

        A refused connection raises ``socketio.exceptions.ConnectionError``; the server's
        reason is then in ``refusals``.
        """
        auth = {"token": token} if token is not None else None
        self.client.connect(url, auth=auth, transports=["websocket"], wait_timeout=self.timeout)
        return self

    @property
    def sid(self) -> str:
        """This client's Socket.IO session id (as the server knows it)."""
        sid: str = self.client.get_sid()
        return sid

    def call(self, event: str, data: Any) -> Any:
        """Emit ``event`` with ``data``; the server's ack payload."""
        return self.client.call(event, data, timeout=self.timeout)

    def subscribe(self, view: str, key: str) -> Any:
        return self.call("subscribe", {"view": view, "key": key})

    def unsubscribe(self, view: str, key: str) -> Any:
        return self.call("unsubscribe", {"view": view, "key": key})

    def action(self, view: str, key: str, action: str, arguments: dict[str, Any]) -> Any:
        """Run ``action`` on the view at ``key``; the answer ``{"status", "body"}``."""
        return self.call(
            "action", {"view": view, "key": key, "action": action, "arguments": arguments}
        )

    def next_view(self) -> dict[str, Any]:
        """The next ``view`` event."""
        try:
            return self.views.get(timeout=self.timeout)
        except queue.Empty:
            raise AssertionError(f"no view event within {self.timeout}s") from None

    def view_where(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first ``view`` event ``wanted`` accepts; the ones before it are dropped."""
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                view = self.views.get(timeout=left)
            except queue.Empty:
                break
            if wanted(view):
                return view
        raise AssertionError(f"no matching view event within {self.timeout}s")

    def received(self) -> list[dict[str, Any]]:
        """Every ``view`` event received so far and not yet taken (without waiting)."""
        found = []
        while True:
            try:
                found.append(self.views.get_nowait())
            except queue.Empty:
                return found

    def close(self) -> None:
        """Disconnect (idempotent)."""
        self.client.disconnect()
