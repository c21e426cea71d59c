"""The shared server and the authentication every web transport uses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from flask import request

from examples.meeting_room.views import MeetingSession, UserView
from onto_web import (
    AuthConfig,
    Authenticator,
    AuthError,
    WebEndpointConfig,
    bearer_token,
    get_server,
    reset_servers,
)


@pytest.fixture(autouse=True)
def fresh_servers() -> Iterator[None]:
    reset_servers()
    yield
    reset_servers()


def closed_auth() -> Authenticator:
    return Authenticator(
        AuthConfig.model_validate(
            {"tokens": [{"token": "t-joshua", "principal": "joshua"}], "owner_field": "user_id"}
        )
    )


def test_an_open_endpoint_lets_everyone_do_everything() -> None:
    auth = Authenticator(AuthConfig())
    assert auth.open
    assert auth.principal(None) is None
    auth.check(None, MeetingSession, "meeting-1/joshua", "subscribe")


def test_bearer_tokens_name_the_principal_and_others_are_refused() -> None:
    auth = closed_auth()
    assert auth.principal("t-joshua") == "joshua"
    with pytest.raises(AuthError, match="a bearer token is required") as missing:
        auth.principal(None)
    assert missing.value.status == 401
    with pytest.raises(AuthError, match="not valid") as wrong:
        auth.principal("t-someone")
    assert wrong.value.status == 401


def test_owner_field_limits_a_principal_to_their_own_views() -> None:
    auth = closed_auth()
    auth.check("joshua", MeetingSession, "meeting-1/joshua", "read")
    auth.check("joshua", UserView, "joshua", "action")
    with pytest.raises(
        AuthError, match="joshua may not read meeting_session 'meeting-1/tijuana'"
    ) as e:
        auth.check("joshua", MeetingSession, "meeting-1/tijuana", "read")
    assert e.value.status == 403
    with pytest.raises(AuthError, match="only list their own") as listing:
        auth.check("joshua", UserView, None, "list")
    assert listing.value.status == 403


def test_a_verifier_function_can_accept_tokens() -> None:
    # ``str`` maps a token to itself: every token is valid and names its principal.
    auth = Authenticator(AuthConfig(verifier="builtins:str", owner_field="user_id"))
    assert auth.principal("tijuana") == "tijuana"
    auth.check("tijuana", MeetingSession, "meeting-1/tijuana", "subscribe")


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_components_on_one_host_and_port_share_one_server() -> None:
    settings = WebEndpointConfig(port=0, max_body_bytes=10)
    server = get_server("127.0.0.1", 0)
    app = server.claim("rest", settings)
    assert server.claim("jsonrpc", WebEndpointConfig(port=0)) is app
    app.add_url_rule("/a", "a", lambda: "from a")
    app.add_url_rule("/b", "b", lambda: f"from b: {len(request.get_data())}", methods=["POST"])
    server.start()
    assert server.port != 0
    assert requests.get(f"{server.url}/a", timeout=5).text == "from a"
    # The smallest body limit of the components sharing the server applies.
    assert requests.post(f"{server.url}/b", data="x" * 11, timeout=5).status_code == 413
    assert requests.post(f"{server.url}/b", data="x" * 10, timeout=5).text == "from b: 10"
    url = server.url
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/a", timeout=5)


def test_starting_an_open_endpoint_warns_that_it_is_open(caplog: pytest.LogCaptureFixture) -> None:
    server = get_server("127.0.0.1", 0)
    server.claim("websocket", WebEndpointConfig(port=0))
    with caplog.at_level("WARNING", logger="onto.web"):
        server.start()
    assert "open without authentication (websocket)" in caplog.text


def test_a_busy_port_is_reported_with_the_address() -> None:
    first = get_server("127.0.0.1", 0)
    first.claim("rest", WebEndpointConfig(port=0))
    first.start()
    second = get_server("127.0.0.1", first.port)
    second.claim("rest", WebEndpointConfig(port=first.port))
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{first.port}"):
        second.start()
