"""Where a REST component's routes live: one description shared by the routes and the spec."""

from __future__ import annotations

from dataclasses import dataclass

from onto_core.models.view import ViewModel

__all__ = ["RestEndpoint", "field_alias"]


def field_alias(view: type[ViewModel], name: str) -> str:
    """The name field ``name`` has in the view's JSON (its camelCase alias)."""
    return view.model_fields[name].alias or name


@dataclass(frozen=True)
class RestEndpoint:
    """The views one REST component serves, under which prefix, and whether it needs a token.

    Routes per view (``base`` is ``{prefix}/{view_name}``)::

        GET   {base}                  list (query: camelCase field filters, limit)
        GET   {base}/{key}            read; the key's parts are separate path segments
        PATCH {base}/{key}            the view's ``update`` action
        POST  {base}/{key}/{action}   any action
    """

    component: str
    prefix: str
    views: tuple[type[ViewModel], ...]
    secured: bool
    in_openapi: bool = True

    def base(self, view: type[ViewModel]) -> str:
        """The path of ``view``'s list route, e.g. ``/api/meeting_session``."""
        return f"{self.prefix}/{view.view_name}"

    def item_template(self, view: type[ViewModel]) -> str:
        """The path of one view as an OpenAPI template: ``{base}/{meetingId}/{userId}``."""
        keys = "/".join(f"{{{field_alias(view, f)}}}" for f in view.key_fields)
        return f"{self.base(view)}/{keys}"

    @property
    def operation_prefix(self) -> str:
        """Prepended to operation ids, so views served under two prefixes stay distinct."""
        slug = "".join(c if c.isalnum() else "_" for c in self.prefix.strip("/"))
        return f"{slug}_" if slug else ""
