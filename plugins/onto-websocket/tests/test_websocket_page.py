"""The demo page and the browser client, served over HTTP next to the Socket.IO endpoint."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import requests

from onto_websocket import CLIENT_SCRIPT

Serve = Callable[..., contextlib.AbstractContextManager[str]]
PAGE = Path(__file__).parents[3] / "examples" / "meeting_room" / "web"


def test_the_page_dir_is_served_at_the_root(serve: Serve) -> None:
    with serve(page_dir=str(PAGE)) as url:
        index = requests.get(f"{url}/", timeout=10)
        script = requests.get(f"{url}/app.js", timeout=10)
        missing = requests.get(f"{url}/nope.js", timeout=10)
        outside = requests.get(f"{url}/..%2F..%2Fpyproject.toml", timeout=10)
    assert index.status_code == 200
    assert index.headers["Content-Type"].startswith("text/html")
    assert index.text == (PAGE / "index.html").read_text(encoding="utf-8")
    assert script.status_code == 200
    assert missing.status_code == 404
    assert outside.status_code == 404


def test_the_browser_client_is_served_without_a_page_dir(serve: Serve) -> None:
    with serve() as url:
        client = requests.get(f"{url}/onto/socket.js", timeout=10)
        index = requests.get(f"{url}/", timeout=10)
    assert client.status_code == 200
    assert "javascript" in client.headers["Content-Type"]
    assert client.text == CLIENT_SCRIPT.read_text(encoding="utf-8")
    assert index.status_code == 404
