"""GraphiQL from local files: the page names only /graphiql/ assets, which the server
serves from the npm-installed folder (``npm ci`` from the committed lock file), and in
headless Chromium it renders and runs a query without loading anything from elsewhere."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from onto_core.testing import npm_ci
from onto_graphql import GRAPHIQL_ASSETS, GRAPHIQL_DIR
from onto_web.testing import chromium


@pytest.fixture(scope="module")
def graphiql_installed() -> None:
    npm_ci(GRAPHIQL_DIR, "graphiql")


def test_the_page_loads_only_local_assets(serve: Any, graphiql_installed: None) -> None:
    with serve() as url:
        page = httpx.get(url, headers={"Accept": "text/html"})
        root = url.removesuffix("/graphql")
        assets = {name: httpx.get(f"{root}/graphiql/{name}") for name in GRAPHIQL_ASSETS}
        other = httpx.get(f"{root}/graphiql/../pyproject.toml")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(sources) == sorted(f"/graphiql/{name}" for name in GRAPHIQL_ASSETS)
    assert {name: a.status_code for name, a in assets.items()} == dict.fromkeys(
        GRAPHIQL_ASSETS, 200
    )
    assert assets["graphiql.min.css"].headers["content-type"].startswith("text/css")
    assert other.status_code == 404


def test_graphiql_runs_a_query_in_a_browser(serve: Any, graphiql_installed: None) -> None:
    with serve() as url, chromium() as browser:
        page = browser.new_page()
        elsewhere: list[str] = []
        page.on(
            "request",
            lambda request: (
                None
                if request.url.startswith(url.removesuffix("/graphql"))
                else elsewhere.append(request.url)
            ),
        )
        page.goto(url)
        page.wait_for_selector(".graphiql-container", timeout=15_000)
        editor = page.locator(".graphiql-query-editor .CodeMirror").first
        editor.click()
        page.evaluate(
            """() => document.querySelector('.graphiql-query-editor .CodeMirror')
                 .CodeMirror.setValue('{ userView(userId: "joshua") { displayName } }')"""
        )
        page.locator(".graphiql-execute-button").click()
        page.wait_for_function(
            "() => document.querySelector('.graphiql-response').innerText.includes('displayName')",
            timeout=15_000,
        )
        shown = page.locator(".graphiql-response").inner_text()
        page.close()
    assert '"displayName": "Joshua Pendergrast"' in shown
    assert elsewhere == []
