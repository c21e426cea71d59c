"""onto-rest: view models over HTTP, with an OpenAPI document and Swagger UI.

Installing it registers the ``rest`` source. A REST API is a pipeline::

    pipelines:
      api:
        source: {type: rest, port: 8000, views: ["examples.meeting_room.views:UserView"]}
        processors: [{type: api}]
        sinks: [{type: reply}]

See docs/rest.md for the routes, the error format and authentication.
"""

from __future__ import annotations

from onto_core import ComponentRegistrar, hookimpl
from onto_rest._endpoint import RestEndpoint
from onto_rest._openapi import OPENAPI_VERSION, openapi30, openapi_document
from onto_rest._site import OPENAPI_PATH, SWAGGER_PATH, RestSite, rest_site
from onto_rest._source import RestSource

__all__ = [
    "OPENAPI_PATH",
    "OPENAPI_VERSION",
    "SWAGGER_PATH",
    "RestEndpoint",
    "RestSite",
    "RestSource",
    "openapi30",
    "openapi_document",
    "register_components",
    "rest_site",
]


@hookimpl
def register_components(register: ComponentRegistrar) -> None:
    register.source("rest", RestSource)
