"""Who is asking, and may they: bearer-token verification and per-view authorization.

A web component's ``auth`` settings choose the verifier (a list of bearer tokens, or a
``module:function`` taking a token and returning a principal id or ``None``) and the rule
deciding what a principal may touch (``owner_field``: only views whose key field of that
name equals the principal's id; or a ``module:function`` of your own). With neither
tokens nor a verifier, the endpoint is open: every request is allowed, and the server
says so when it starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from onto_core.builtin.transform import import_object
from onto_core.models import ViewModel

__all__ = ["AuthConfig", "AuthError", "Authenticator", "Operation", "TokenEntry", "bearer_token"]

Operation = Literal["read", "list", "action", "subscribe"]


class AuthError(Exception):
    """A request that may not proceed: ``status`` is 401 (who are you?) or 403 (not you)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(description="The bearer token (keep it in an environment variable).")
    principal: str = Field(description="Who presents it, e.g. a user id.")


def _importable(ref: str | None) -> str | None:
    if ref is not None and not callable(import_object(ref)):
        raise ValueError(f"{ref!r} is not callable")
    return ref


class AuthConfig(BaseModel):
    """Authentication and authorization of one web endpoint."""

    model_config = ConfigDict(extra="forbid")
    tokens: list[TokenEntry] = Field(
        default_factory=list, description="Accepted bearer tokens and who each belongs to."
    )
    verifier: str | None = Field(
        None, description="'module:function' mapping a token to a principal id, or None."
    )
    owner_field: str | None = Field(
        "user_id",
        description="A principal may only touch views whose key field of this name is its id.",
    )
    authorize: str | None = Field(
        None,
        description="'module:function(principal, view, key, operation) -> bool' to decide.",
    )

    @field_validator("verifier", "authorize")
    @classmethod
    def _callable(cls, ref: str | None) -> str | None:
        return _importable(ref)

    @property
    def open(self) -> bool:
        return not self.tokens and self.verifier is None


class Authenticator:
    """Applies an ``AuthConfig``: ``principal(token)`` then ``check(principal, view, ...)``."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self._tokens = {entry.token: entry.principal for entry in config.tokens}
        self._verifier: Callable[[str], str | None] | None = (
            import_object(config.verifier) if config.verifier else None
        )
        self._authorize: Callable[..., bool] | None = (
            import_object(config.authorize) if config.authorize else None
        )

    @property
    def open(self) -> bool:
        return self.config.open

    def principal(self, token: str | None) -> str | None:
        """The principal presenting ``token``; ``None`` on an open endpoint.

        Raises ``AuthError(401)`` when the endpoint needs a token and none, or an unknown
        one, was given.
        """
        if self.open:
            return None
        if not token:
            raise AuthError(401, "a bearer token is required")
        found = self._tokens.get(token)
        if found is None and self._verifier is not None:
            found = self._verifier(token)
        if found is None:
            raise AuthError(401, "the bearer token is not valid")
        return found

    def check(
        self, principal: str | None, view: type[ViewModel], key: str | None, operation: Operation
    ) -> None:
        """Raise ``AuthError(403)`` unless ``principal`` may do ``operation`` on the view."""
        if self.open:
            return
        if self._authorize is not None:
            if not self._authorize(principal, view, key, operation):
                raise AuthError(403, f"{principal} may not {operation} {view.view_name}")
            return
        field = self.config.owner_field
        if field is None or field not in view.key_fields:
            return
        if key is None:
            raise AuthError(403, f"{principal} may only {operation} their own {view.view_name}")
        parts = dict(zip(view.key_fields, key.split("/"), strict=False))
        if parts.get(field) != principal:
            raise AuthError(403, f"{principal} may not {operation} {view.view_name} {key!r}")


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
