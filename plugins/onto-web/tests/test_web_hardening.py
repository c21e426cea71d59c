"""What the shared server does with hostile or broken clients: foreign Host and Origin
headers, slow headers, malformed requests, tokens in query strings, too many connections."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from flask import request
from pydantic import ValidationError

from onto_web import WebEndpointConfig, WebServer, get_server, reset_servers


@pytest.fixture(autouse=True)
def fresh_servers() -> Iterator[None]:
    reset_servers()
    yield
    reset_servers()


def serve(**settings: object) -> WebServer:
    """A started server on a free loopback port with a ``/data`` route and a POST ``/act``."""
    server = get_server("127.0.0.1", 0)
    app = server.claim("rest", WebEndpointConfig.model_validate({"port": 0, **settings}))
    acted: list[bytes] = []
    app.config["ACTED"] = acted
    app.add_url_rule("/data", "data", lambda: {"secret": "view data"})

    def act() -> dict[str, str]:
        acted.append(request.get_data())
        return {"done": "yes"}

    app.add_url_rule("/act", "act", act, methods=["POST"])
    server.start()
    return server


def raw(server: WebServer, data: bytes, timeout: float = 5) -> bytes:
    """Send ``data`` on a new connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_dns_rebinding_is_refused_without_data() -> None:
    server = serve()
    rebound = {
        "Host": f"attacker.example:{server.port}",
        "Origin": f"http://attacker.example:{server.port}",
    }
    answer = requests.get(f"{server.url}/data", headers=rebound, timeout=5)
    assert answer.status_code == 403
    assert answer.headers["Content-Type"] == "application/json"
    assert "allowed_hosts" in answer.json()["error"]
    assert "view data" not in answer.text
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_loopback_names_at_the_servers_port_are_accepted() -> None:
    server = serve()
    for host in ("localhost", "127.0.0.1", "[::1]"):
        answer = requests.get(
            f"{server.url}/data", headers={"Host": f"{host}:{server.port}"}, timeout=5
        )
        assert answer.status_code == 200, host
    other_port = requests.get(f"{server.url}/data", headers={"Host": "localhost:1"}, timeout=5)
    assert other_port.status_code == 403


def test_a_cross_site_request_is_refused_and_runs_nothing() -> None:
    server = serve()
    answer = requests.post(
        f"{server.url}/act",
        data=b'{"attending": false}',
        headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
        timeout=5,
    )
    assert answer.status_code == 403
    assert "allowed_origins" in answer.json()["error"]
    assert server.app.config["ACTED"] == []
    same_origin = requests.post(
        f"{server.url}/act", headers={"Origin": server.url}, data=b"{}", timeout=5
    )
    assert same_origin.status_code == 200


def test_listed_hosts_and_origins_are_accepted() -> None:
    server = serve(allowed_hosts=["*.example.com"], allowed_origins=["https://app.example.org"])
    ok = requests.get(
        f"{server.url}/data",
        headers={"Host": "api.example.com", "Origin": "https://app.example.org"},
        timeout=5,
    )
    assert ok.status_code == 200
    assert requests.get(f"{server.url}/data", timeout=5).status_code == 403  # not listed


def test_socketio_refuses_rebinding_and_never_echoes_a_foreign_origin() -> None:
    from onto_websocket.hub import hub_for

    server = get_server("127.0.0.1", 0)
    server.claim("websocket", WebEndpointConfig(port=0, allowed_origins=["http://app.test"]))
    hub_for(server)
    server.start()
    polling = f"{server.url}/socket.io/?EIO=4&transport=polling"
    evil = f"http://attacker.example:{server.port}"
    rebound = requests.get(
        polling, headers={"Host": f"attacker.example:{server.port}", "Origin": evil}, timeout=5
    )
    assert rebound.status_code == 403
    assert "Access-Control-Allow-Origin" not in rebound.headers
    foreign = requests.get(polling, headers={"Origin": "http://evil.test"}, timeout=5)
    assert foreign.status_code == 403
    assert "Access-Control-Allow-Origin" not in foreign.headers
    listed = requests.get(polling, headers={"Origin": "http://app.test"}, timeout=5)
    assert listed.status_code == 200
    assert listed.headers["Access-Control-Allow-Origin"] == "http://app.test"
    # A WebSocket upgrade passes the same check.
    upgrade = raw(
        server,
        (
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: attacker.example:{server.port}\r\nOrigin: {evil}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ).encode(),
    )
    assert upgrade.startswith(b"HTTP/1.1 403")


def test_an_open_endpoint_on_a_public_interface_needs_allowed_hosts() -> None:
    with pytest.raises(ValidationError, match="set allowed_hosts"):
        WebEndpointConfig(host="0.0.0.0")
    WebEndpointConfig(host="0.0.0.0", allowed_hosts=["example.com"])
    WebEndpointConfig.model_validate(
        {"host": "0.0.0.0", "auth": {"tokens": [{"token": "t", "principal": "p"}]}}
    )


def test_http_layer_errors_are_json() -> None:
    server = serve()
    bad_version = raw(server, b"GET /data HTTP/7.0\r\nHost: localhost\r\n\r\n")
    huge_header = raw(
        server, b"GET /data HTTP/1.1\r\nHost: localhost\r\nX: " + b"a" * 70000 + b"\r\n\r\n"
    )
    garbage = raw(server, b"\x16\x03\x01 nonsense\r\n\r\n")
    for answer, status in ((bad_version, b"505"), (huge_header, b"431"), (garbage, b"400")):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == status, answer[:200]
        assert b"Content-Type: application/json" in head
        assert "error" in json.loads(body)
    unknown = requests.get(f"{server.url}/nowhere", timeout=5)
    assert unknown.status_code == 404
    assert "error" in unknown.json()
    wrong_method = requests.delete(f"{server.url}/data", timeout=5)
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()
    assert "GET" in wrong_method.headers["Allow"]


def test_slow_headers_are_dropped_and_others_still_served() -> None:
    server = serve(read_timeout=1)
    slow = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(50)]
    try:
        for conn in slow:
            conn.sendall(b"GET /data HTTP/1.1\r\nHost: localhost\r\n")  # never finished
        started = time.monotonic()
        assert requests.get(f"{server.url}/data", timeout=5).status_code == 200
        assert time.monotonic() - started < 1
        for conn in slow:  # each is closed by the server within the timeout
            assert conn.recv(100) == b""
        assert time.monotonic() - started < 3
    finally:
        for conn in slow:
            conn.close()


def test_a_header_dribbled_byte_by_byte_does_not_extend_the_deadline() -> None:
    server = serve(read_timeout=1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 4:
            try:
                conn.sendall(b"X")
            except OSError:
                closed = True
                break
            time.sleep(0.2)
        assert closed or conn.recv(10) == b""
        assert time.monotonic() - started < 3


def test_connections_beyond_max_connections_are_refused_not_threaded() -> None:
    server = serve(read_timeout=2, max_connections=5)
    threads_before = threading.active_count()
    slow = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(30)]
    try:
        time.sleep(0.3)  # let the server accept them all
        assert threading.active_count() - threads_before <= 5
        extra = raw(server, b"GET /data HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert extra.startswith(b"HTTP/1.1 503")
        assert b"max_connections" in extra
    finally:
        for conn in slow:
            conn.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{server.url}/data", timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    else:
        pytest.fail("the server did not recover after the slow connections closed")


def test_tokens_in_query_strings_stay_out_of_the_access_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = serve()
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        requests.get(f"{server.url}/data?access_token=s3cret&limit=2", timeout=5)
        raw(server, b"GET /data?token=s3cret HTTP/1.1 junk\r\n\r\n")
    assert "limit=2" in caplog.text
    assert "access_token=***" in caplog.text
    assert "s3cret" not in caplog.text
