"""The endpoint itself: where it lives, the browsable API page and the method descriptions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import requests

from onto_web import get_server
from onto_web.testing import chromium

if TYPE_CHECKING:
    from conftest import Endpoint


def test_the_browse_page_answers_at_path_browse(rpc: Endpoint) -> None:
    page = requests.get(f"{rpc.url}/browse", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert 'ng-app="browse"' in page.text
    packages = requests.get(f"{rpc.url}/browse/packages.json", timeout=10).json()
    groups = {group["name"]: group["items"] for group in packages["children"]}
    assert sorted(groups) == ["meeting_session", "user_view"]
    assert [m["name"] for m in groups["meeting_session"]] == [
        "meeting_session.get",
        "meeting_session.list",
        "meeting_session.set_attendance",
        "meeting_session.set_in_session",
    ]


@pytest.mark.slow
def test_the_browse_page_lists_the_methods_and_runs_one_in_a_browser(rpc: Endpoint) -> None:
    with chromium() as browser:
        page = browser.new_page()
        elsewhere: list[str] = []
        page.on(
            "request",
            lambda r: elsewhere.append(r.url) if not r.url.startswith(rpc.root) else None,
        )
        page.goto(f"{rpc.url}/browse")
        page.get_by_text("meeting_session.set_attendance").wait_for(timeout=15_000)
        page.get_by_text("user_view", exact=True).click()
        page.get_by_text("user_view.list").click()
        page.get_by_text("user_view.list(filters: Object, limit: Number) -> Array").wait_for()
        page.get_by_role("button", name="Play", exact=True).click()
        page.get_by_role("button", name="Run", exact=True).click()
        response = page.get_by_text('"userId": "tijuana"')
        response.wait_for(timeout=15_000)
        assert '"result"' in response.inner_text()
        assert elsewhere == []  # every asset is served under the path, nothing fetched


def test_the_browse_page_can_be_switched_off(serve: Callable[..., Endpoint]) -> None:
    rpc = serve(browse=False)
    assert requests.get(f"{rpc.url}/browse/", timeout=10).status_code == 404
    assert rpc.call("user_view.get", ["joshua"])["result"]["userId"] == "joshua"


def test_methods_are_described_with_their_typed_parameters(rpc: Endpoint) -> None:
    described = rpc.call("rpc.describe")["result"]
    assert described["name"] == "onto"
    assert described["description"] == "View models served by onto: meeting_session, user_view"
    methods = described["methods"]
    attendance = methods["meeting_session.set_attendance"]
    assert [(p["name"], p["type"]) for p in attendance["params"]] == [
        ("key", "String"),
        ("attending", "Boolean"),
    ]
    assert attendance["params"][0]["description"] == (
        "The meeting_session key: its meeting_id and user_id joined by '/'."
    )
    assert attendance["summary"] == "This participant's own attendance."
    assert attendance["returns"]["properties"]["numHearingAidRequested"]["type"] == "Number"
    update = methods["user_view.update"]
    assert [p["name"] for p in update["params"]] == [
        "key",
        "first_name",
        "last_name",
        "organization",
        "hearing_aid_requested",
    ]
    listing = methods["meeting_session.list"]
    assert [(p["name"], p["type"]) for p in listing["params"]] == [
        ("filters", "Object"),
        ("limit", "Number"),
    ]


def test_every_route_lives_under_path(serve: Callable[..., Endpoint]) -> None:
    rpc = serve(path="/rpc/v1")
    assert rpc.call("user_view.get", ["joshua"])["result"]["userId"] == "joshua"
    port = int(rpc.root.rsplit(":", 1)[1])
    app = get_server("127.0.0.1", port).app
    # The shared server's own: static files, /metrics and /asyncapi.json (onto-web).
    routes = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in ("static", "onto_metrics", "onto_asyncapi")
    ]
    assert "/rpc/v1" in routes
    assert "/rpc/v1/browse/" in routes
    assert all(route.startswith("/rpc/v1") for route in routes), routes
    # The shared app's other paths are not ours: nothing answers there.
    assert requests.post(f"{rpc.root}/api", json={}, timeout=10).status_code == 404


def test_the_endpoint_answers_only_post(rpc: Endpoint) -> None:
    assert requests.get(rpc.url, timeout=10).status_code == 405
