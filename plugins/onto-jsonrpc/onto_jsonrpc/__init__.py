"""onto-jsonrpc: view models as JSON-RPC 2.0 methods, on flask-jsonrpc.

Installing it adds the source type ``jsonrpc``::

    pipelines:
      rpc:
        source: {type: jsonrpc, port: 8000, views: ["examples.meeting_room.views:MeetingSession"]}
        processors: [{type: api}]
        sinks: [{type: reply}]

serves ``meeting_session.get``, ``meeting_session.list`` and one method per action
(``meeting_session.set_attendance(key, attending)``) at ``http://127.0.0.1:8000/api``.
docs/jsonrpc.md has the settings, error codes and authentication.
"""

from __future__ import annotations

from onto_core import hookimpl
from onto_core.plugins import ComponentRegistrar
from onto_jsonrpc._errors import ErrorCode
from onto_jsonrpc._methods import ViewMethod, view_methods
from onto_jsonrpc._source import JsonRpcSource

__all__ = [
    "ErrorCode",
    "JsonRpcSource",
    "ViewMethod",
    "register_components",
    "view_methods",
]


@hookimpl
def register_components(register: ComponentRegistrar) -> None:
    register.source("jsonrpc", JsonRpcSource)
