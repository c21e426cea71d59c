"""/openapi.json describes the routes in valid OpenAPI 3.0; /apidocs shows it with Swagger UI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests
import schemathesis

from onto_rest import openapi30
from onto_web.testing import chromium


@pytest.fixture(scope="module")
def document(shared_rest: str) -> dict[str, Any]:
    answer = requests.get(f"{shared_rest}/openapi.json", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    found: dict[str, Any] = answer.json()
    return found


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair anywhere in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def test_the_document_is_valid_openapi_3_0(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.0.3"
    # Validates against the OpenAPI 3.0 meta-schema schemathesis ships.
    schemathesis.openapi.from_dict(document).validate()
    # 3.0 has no null type and no const: the JSON Schema 2020-12 forms were rewritten.
    assert ("type", "null") not in list(walk(document))
    assert "const" not in {key for key, _ in walk(document)}


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    for key, value in walk(document):
        if key == "$ref":
            section, name = re.fullmatch(r"#/components/(\w+)/(.+)", value).groups()  # type: ignore[union-attr]
            assert name in document["components"][section], value


def test_paths_cover_read_list_update_and_each_action(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert sorted(paths) == [
        "/meeting_session",
        "/meeting_session/{meetingId}/{userId}",
        "/meeting_session/{meetingId}/{userId}/set_attendance",
        "/meeting_session/{meetingId}/{userId}/set_in_session",
        "/user_view",
        "/user_view/{userId}",
        "/user_view/{userId}/update",
    ]
    assert set(paths["/user_view/{userId}"]) == {"parameters", "get", "patch"}
    assert "patch" not in paths["/meeting_session/{meetingId}/{userId}"]  # no update action
    ids = [op["operationId"] for item in paths.values() for op in item.values() if "tags" in op]
    assert len(ids) == len(set(ids)) == 8


def test_views_and_action_arguments_are_schemas(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    session = schemas["MeetingSession"]
    assert session["properties"]["attending"]["items"] == {"$ref": "#/components/schemas/Attendee"}
    assert session["properties"]["status"] == {"$ref": "#/components/schemas/MeetingStatus"}
    assert schemas["MeetingStatus"]["enum"] == ["not-started", "in-session", "closed"]
    action = document["paths"]["/meeting_session/{meetingId}/{userId}/set_attendance"]["post"]
    body = action["requestBody"]
    assert body["required"] is True
    arguments = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert schemas[arguments]["properties"]["attending"]["type"] == "boolean"
    assert schemas[arguments]["required"] == ["attending"]
    assert schemas[arguments]["additionalProperties"] is False
    update = schemas["UserView_update"]["properties"]["first_name"]
    assert update["type"] == "string"
    assert update["nullable"] is True  # Optional[str] in 3.0's words


def test_list_takes_each_scalar_field_as_a_query_filter(document: dict[str, Any]) -> None:
    parameters = document["paths"]["/meeting_session"]["get"]["parameters"]
    names = [p["name"] for p in parameters]
    assert names == [
        "meetingId",
        "userId",
        "status",
        "inSession",
        "latitude",
        "longitude",
        "address",
        "numHearingAidRequested",
        "limit",
    ]  # not attending: a list cannot be a query value
    assert all(p["in"] == "query" and p["required"] is False for p in parameters)


def test_errors_are_documented_with_the_error_schema(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "field"]
    update = document["paths"]["/user_view/{userId}"]["patch"]["responses"]
    assert set(update) == {"200", "400", "404", "409", "413", "415", "422", "503", "504"}
    bad = document["components"]["responses"]["BadRequest"]
    assert bad["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "securitySchemes" not in document["components"]  # this endpoint is open


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def test_apidocs_is_html_loading_every_asset_from_this_server(shared_rest: str) -> None:
    page = requests.get(f"{shared_rest}/apidocs", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    parser = _Assets()
    parser.feed(page.text)
    assert len(parser.urls) == 4  # icon, stylesheet, two scripts
    for url in parser.urls:
        absolute = urljoin(page.url, url)
        assert urlsplit(absolute).netloc == urlsplit(shared_rest).netloc, url
        asset = requests.get(absolute, timeout=10)
        assert asset.status_code == 200, url
        assert len(asset.content) > 500
    assert '"url": "/openapi.json"' in page.text
    hidden = requests.get(f"{shared_rest}/apidocs/swagger-initializer.js", timeout=10)
    assert hidden.status_code == 404  # only the files the page uses are served


@pytest.mark.slow
def test_apidocs_renders_every_operation_in_a_browser(shared_rest: str) -> None:
    with chromium() as browser:
        page = browser.new_page()
        elsewhere: list[str] = []
        page.on(
            "request",
            lambda r: elsewhere.append(r.url) if not r.url.startswith(shared_rest) else None,
        )
        page.goto(f"{shared_rest}/apidocs")
        page.wait_for_selector(".opblock", timeout=15_000)
        assert page.locator(".opblock").count() == 8
        assert (
            page.locator(".opblock-summary-path").first.inner_text().startswith("/meeting_session")
        )
        assert page.locator(".errors-wrapper").count() == 0
        assert elsewhere == []


@pytest.mark.parametrize(
    ("json_schema", "openapi"),
    [
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, {"type": "integer", "nullable": True}),
        (
            {"anyOf": [{"$ref": "#/components/schemas/A"}, {"type": "null"}], "default": None},
            {"allOf": [{"$ref": "#/components/schemas/A"}], "default": None, "nullable": True},
        ),
        (
            {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
            {"anyOf": [{"type": "string"}, {"type": "integer"}], "nullable": True},
        ),
        ({"const": "on"}, {"enum": ["on"]}),
        (
            {"type": "number", "exclusiveMinimum": 0},
            {"type": "number", "minimum": 0, "exclusiveMinimum": True},
        ),
        ({"type": ["string", "null"]}, {"type": "string", "nullable": True}),
        ({"type": "string", "examples": ["a", "b"]}, {"type": "string", "example": "a"}),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
            {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]}},
        ),
        (
            {"$ref": "#/components/schemas/A", "description": "why"},
            {"allOf": [{"$ref": "#/components/schemas/A"}], "description": "why"},
        ),
        (
            {"type": "object", "properties": {"const": {"const": 1}}, "propertyNames": {}},
            {"type": "object", "properties": {"const": {"enum": [1]}}},
        ),
    ],
)
def test_json_schema_is_rewritten_into_openapi_3_0(
    json_schema: dict[str, Any], openapi: dict[str, Any]
) -> None:
    assert openapi30(json_schema) == openapi
