"""The ``websocket`` source: clients' ``action`` events as API requests through a pipeline."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field, field_validator

from onto_core.builtin.api import RequestSource
from onto_core.builtin.view import load_view
from onto_core.protocols import RuntimeContext
from onto_web import Authenticator, WebEndpointConfig, get_server
from onto_websocket.hub import SocketHub, hub_for

__all__ = ["WebSocketSource"]


class WebSocketSource(RequestSource):
    """Turns each ``action`` event into an API request and acks the client with the answer.

    The event ``{"view": name, "key": key, "action": name, "arguments": {...}}`` becomes
    ``{"op": "action", "view": "module:Class", ...}`` for the ``api`` processor; the
    client's ack carries its answer ``{"status": 200, "body": view}`` or an error answer
    ``{"status": code, "body": {"error": message, "field": name or null}}``. Auth is
    checked before anything is submitted (401, 403); a view not listed in ``views`` is
    404; no answer within ``timeout`` seconds is 504.
    """

    class Config(WebEndpointConfig):
        views: list[str] = Field(
            min_length=1,
            description="ViewModel classes ('package.module:Class') whose actions clients may run.",
        )
        timeout: float = Field(30.0, gt=0, description="Seconds an action may take to answer.")

        @field_validator("views")
        @classmethod
        def _loadable(cls, refs: list[str]) -> list[str]:
            for ref in refs:
                load_view(ref)
            return refs

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.views = {ref: load_view(ref) for ref in config.views}
        self.label = "websocket source"
        self._hub: SocketHub | None = None

    async def start(self, ctx: RuntimeContext) -> None:
        await super().start(ctx)
        self.label = f"{ctx.pipeline}.{ctx.component}"
        server = get_server(self.config.host, self.config.port)
        server.claim(self.label, self.config)
        self._hub = hub_for(server)
        self._hub.accept_actions(
            self.label, self, self.views, Authenticator(self.config.auth), self.config.timeout
        )

    def asyncapi_channels(self, incoming: Any) -> list[Any]:
        """The ``action`` event of this source, for the AsyncAPI document (docs/asyncapi.md)."""
        from onto_websocket._asyncapi import source_channels

        return source_channels(self)

    async def close(self) -> None:
        if self._hub is not None:
            # Withdrawing may close every client connection: not on the event loop.
            await asyncio.to_thread(self._hub.withdraw, self.label)
        await super().close()
