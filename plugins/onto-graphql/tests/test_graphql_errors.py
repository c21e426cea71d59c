"""What a client gets wrong, or asks too much of, is a GraphQL error naming it: never a 5xx,
never a traceback. Generated queries (hypothesis-graphql) find no 5xx either."""

from __future__ import annotations

import json
from typing import Any

import httpx
from graphql import build_client_schema, get_introspection_query, print_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import strategies as gql_strategies

from onto_core.testing import running
from onto_websocket.testing import free_port

SESSION_QUERY = (
    '{ meetingSession(meetingId: "meeting-1", userId: "joshua") { attending { name } } }'
)


def post(url: str, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url, content=content, headers={"Content-Type": "application/json", **headers})


def messages(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert "Traceback" not in response.text
    return [e["message"] for e in response.json()["errors"]]


def test_malformed_requests_are_400_graphql_errors(serve: Any) -> None:
    with serve() as url:
        not_json = post(url, b"{query")
        syntax = post(url, {"query": "{ meetingSession("})
        unknown = post(url, {"query": "{ nope }"})
        wrong_type = post(
            url,
            {
                "query": 'mutation { setAttendance(meetingId: "meeting-1", userId: "joshua", '
                'attending: "yes") { userId } }'
            },
        )
        wrong_variable = post(
            url,
            {
                "query": 'mutation($a: Boolean!) { setAttendance(meetingId: "meeting-1", '
                'userId: "joshua", attending: $a) { userId } }',
                "variables": {"a": "yes"},
            },
        )
        not_an_object = post(url, [{"query": SESSION_QUERY}])
        no_query = post(url, {"variables": {}})
    assert [r.status_code for r in (not_json, syntax, unknown, wrong_type, wrong_variable)] == [
        400
    ] * 5
    assert messages(not_json) == ["Request body is not a valid JSON"]
    assert messages(syntax)[0].startswith("Syntax Error: Expected Name, found <EOF>.")
    assert messages(unknown) == ["Cannot query field 'nope' on type 'Query'."]
    assert messages(wrong_type) == ['Boolean cannot represent a non boolean value: "yes"']
    assert "Boolean cannot represent a non boolean value" in messages(wrong_variable)[0]
    assert not_an_object.status_code == 400
    assert messages(not_an_object) == [
        "the body must be one JSON object {query, variables, operationName}"
    ]
    assert no_query.status_code == 400
    assert messages(no_query) == ["The query must be a string."]


def test_http_refusals_are_json(serve: Any) -> None:
    with serve(max_body_bytes=2000) as url:
        plain = httpx.post(url, content=b"{}", headers={"Content-Type": "text/plain"})
        form = httpx.post(url, data={"query": SESSION_QUERY})
        large = post(url, {"query": SESSION_QUERY, "variables": {"x": "y" * 3000}})
        deleted = httpx.delete(url)
        elsewhere = httpx.get(url.replace("/graphql", "/other"))
        mutation_by_get = httpx.get(
            url,
            params={
                "query": 'mutation { setAttendance(meetingId: "meeting-1", userId: "joshua", '
                "attending: false) { userId } }"
            },
        )
    assert plain.status_code == 415
    assert messages(plain) == [
        "send GraphQL requests as Content-Type: application/json (got text/plain)"
    ]
    assert form.status_code == 415
    assert large.status_code == 413
    assert messages(large) == ["the body is larger than the 2000 bytes accepted"]
    assert deleted.status_code == 405
    assert deleted.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert elsewhere.status_code == 404
    assert mutation_by_get.status_code == 400
    assert (
        messages(mutation_by_get)
        == ["Operation 'None' is not defined or is not of a 'query' type."]
        or "query" in messages(mutation_by_get)[0]
    )


def test_over_deep_aliased_and_oversized_queries_are_refused(serve: Any) -> None:
    aliases = " ".join(
        f'a{i}: meetingSession(meetingId: "meeting-1", userId: "joshua") {{ userId }}'
        for i in range(4)
    )
    with serve(max_depth=2, max_aliases=3, max_query_bytes=400, max_tokens=60) as url:
        deep = post(url, {"query": SESSION_QUERY})
        shallow = post(
            url,
            {"query": '{ meetingSession(meetingId: "meeting-1", userId: "joshua") { userId } }'},
        )
        aliased = post(url, {"query": f"{{ {aliases} }}"})
        large = post(url, {"query": "{ " + " ".join(["userViews { userId }"] * 30) + " }"})
        tokens = post(url, {"query": "{" + "userViews{userId}" * 20 + "}"})
    assert deep.status_code == 400
    assert messages(deep) == [
        "the operation is nested more than 2 levels deep (the max_depth setting); "
        "ask for fewer levels"
    ]
    assert deep.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_DEEP"
    assert shallow.status_code == 200
    assert shallow.json() == {"data": {"meetingSession": {"userId": "joshua"}}}
    assert messages(aliased) == ["the document uses more than 3 aliases (the max_aliases setting)"]
    assert messages(large)[0].startswith(
        "the query is 633 bytes long; this server accepts at most 400"
    )
    assert messages(tokens) == [
        "Syntax Error: Document contains more than 60 tokens. Parsing aborted."
    ]


def test_introspection_can_be_switched_off(serve: Any) -> None:
    with serve(introspection=False) as url:
        schema = post(url, {"query": "{ __schema { types { name } } }"})
        page = httpx.get(url, headers={"Accept": "text/html"})
        data = post(url, {"query": SESSION_QUERY})
    assert schema.status_code == 400
    assert messages(schema)[0].startswith("Cannot query '__schema': introspection is disabled.")
    assert page.status_code == 405
    assert data.status_code == 200


def test_a_failure_inside_the_server_is_a_500_graphql_error_without_details(
    store: Any,
) -> None:
    port = free_port()
    # No api processor: the reply sink answers with the request itself, not an answer.
    config = {
        "pipelines": {
            "api": {
                "source": {
                    "type": "graphql",
                    "port": port,
                    "views": ["examples.meeting_room.views:MeetingSession"],
                },
                "processors": [],
                "sinks": [{"type": "reply"}],
            }
        }
    }
    with running(json.dumps(config), datastore=store):
        answer = post(f"http://127.0.0.1:{port}/graphql", {"query": SESSION_QUERY})
    assert answer.status_code == 200
    (error,) = answer.json()["errors"]
    assert error["message"] == "the pipeline's answer has no status; does it use the api processor?"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "status": 500, "field": None}
    assert "Traceback" not in answer.text


def test_host_and_origin_are_checked_like_onto_web(serve: Any) -> None:
    with serve() as url:
        rebound = httpx.post(
            url, json={"query": SESSION_QUERY}, headers={"Host": "attacker.example"}
        )
        foreign = httpx.post(
            url, json={"query": SESSION_QUERY}, headers={"Origin": "https://attacker.example"}
        )
        own = httpx.post(
            url, json={"query": SESSION_QUERY}, headers={"Origin": url[: -len("/graphql")]}
        )
    assert rebound.status_code == 403
    assert (
        "attacker.example" in rebound.json()["errors"][0]["message"]
        or "allowed_hosts" in rebound.text
    )
    assert foreign.status_code == 403
    assert "allowed_origins" in foreign.text
    assert "Pendergrast" not in rebound.text + foreign.text
    assert own.status_code == 200


def served_schema(url: str) -> str:
    answer = post(url, {"query": get_introspection_query()})
    return print_schema(build_client_schema(answer.json()["data"]))


def test_generated_queries_never_get_a_5xx(serve: Any) -> None:
    with serve() as url:
        schema = served_schema(url)

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        )
        @given(
            st.one_of(
                gql_strategies.queries(schema),
                gql_strategies.mutations(schema),
            )
        )
        def answered(query: str) -> None:
            response = post(url, {"query": query})
            assert response.status_code < 500, (query, response.text)
            assert "Traceback" not in response.text

        answered()
