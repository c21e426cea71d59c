"""The ``graphql`` source: queries and mutations, each answered by the pipeline."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from pydantic import Field, field_validator

from onto_core.builtin.api import RequestSource
from onto_core.builtin.view import load_view
from onto_core.protocols import RuntimeContext
from onto_graphql._config import GraphQLEndpointConfig, loadable_views
from onto_graphql._schema import ServedView, api_error
from onto_graphql._server import get_server
from onto_graphql._types import camel
from onto_web import Authenticator

__all__ = ["GraphQLSource"]

log = logging.getLogger("onto.graphql")

_ASKING = 32
"""Requests of one source waiting for the pipeline at once, each holding a thread;
more wait their turn on the server's event loop."""


class GraphQLSource(RequestSource):
    """Serves view models as GraphQL queries and their actions as mutations.

    Each query or mutation field becomes an API request message (``onto_core.builtin.api``):
    a read by key, a list with filters, or an action with its arguments. The pipeline's
    ``api`` processor answers it and the ``reply`` sink hands the answer back, which the
    resolver returns as the field's value, or raises as a GraphQL error whose
    ``extensions`` carry the answer's ``status``, a ``code`` and the ``field`` at fault.
    Authentication is checked before anything enters the pipeline.
    """

    class Config(GraphQLEndpointConfig):
        """Settings of a ``graphql`` source: the endpoint's, and which views it serves."""

        views: list[str] = Field(
            min_length=1,
            description="View models to serve as queries and mutations, as 'package.module:Class'.",
        )
        timeout: float = Field(
            30.0, gt=0, description="Seconds to wait for the pipeline's answer (then TIMEOUT)."
        )

        @field_validator("views")
        @classmethod
        def _loadable(cls, refs: list[str]) -> list[str]:
            return loadable_views(refs)

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.views = [ServedView(load_view(ref), ref) for ref in config.views]
        self.authenticator = Authenticator(config.auth)
        self.label = "graphql source"
        self._asking = asyncio.Semaphore(_ASKING)
        self._server = get_server(config.host, config.port)

    async def start(self, ctx: RuntimeContext) -> None:
        """Register this component's views with the shared server (which starts later)."""
        await super().start(ctx)
        self.label = f"{ctx.pipeline}.{ctx.component}"
        self._server.claim(self.label, self.config)
        self._server.serve_queries(
            self.label, self, self.views, self.authenticator, self.config.timeout
        )

    async def ask(
        self, request: dict[str, Any], timeout: float, headers: dict[str, str] | None = None
    ) -> Any:
        """Send ``request`` through the pipeline (from the server's loop); the answer's
        body, or a GraphQL error carrying its status. ``headers`` go on the message (the
        caller's trace context)."""
        async with self._asking:
            try:
                answer = await asyncio.to_thread(
                    functools.partial(self.submit, request, timeout, headers)
                )
            except TimeoutError:
                raise api_error(
                    504,
                    f"no answer within {timeout:g}s (the 'timeout' setting); is the pipeline "
                    "overloaded, or does it not end with the api processor and reply sink?",
                ) from None
            except RuntimeError as exc:  # not started, or already stopped
                raise api_error(503, f"the GraphQL source is not running: {exc}") from None
            except Exception:
                log.exception("the pipeline failed a %s request", request.get("op"))
                raise api_error(
                    500, "the pipeline failed this request; the server log has why"
                ) from None
        if not (isinstance(answer, dict) and isinstance(answer.get("status"), int)):
            log.error("the pipeline answered with %r, not {status, body}", answer)
            raise api_error(
                500, "the pipeline's answer has no status; does it use the api processor?"
            )
        body = answer.get("body")
        if answer["status"] == 200:
            return body
        error = body if isinstance(body, dict) else {}
        field = error.get("field")
        raise api_error(
            answer["status"],
            str(error.get("error") or "the request failed"),
            camel(field) if isinstance(field, str) else None,
        )

    async def close(self) -> None:
        self._server.withdraw(self.label)
        await super().close()
