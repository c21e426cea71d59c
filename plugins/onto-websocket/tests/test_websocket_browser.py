"""The demo page in headless Chromium: one participant's click updates another's page."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from examples.meeting_room.views import MeetingSession
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.config import OntoConfig, load_config
from onto_core.models import run_action
from onto_core.testing import running
from onto_web.testing import chromium
from onto_websocket.testing import free_port

ROOT = Path(__file__).parents[3]
WAIT_MS = 10_000
Serve = Callable[..., contextlib.AbstractContextManager[str]]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def web_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> OntoConfig:
    """examples/meeting_room/web.yaml on a free port (``ONTO_PORT``)."""
    monkeypatch.chdir(ROOT)  # web.yaml's page_dir is relative to the repository root
    monkeypatch.setenv("ONTO_PORT", str(free_port()))
    monkeypatch.setenv("ONTO_DB", str(tmp_path / "unused.db"))
    return load_config(ROOT / "examples" / "meeting_room" / "web.yaml")


@pytest.fixture
def demo(store: SqliteDatastore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """examples/meeting_room/web.yaml on a free port, serving the seeded ``store``."""
    with running(web_config(monkeypatch, tmp_path), datastore=store):
        yield f"http://127.0.0.1:{os.environ['ONTO_PORT']}"


def open_as(browser: Browser, url: str, user: str) -> Page:
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{url}/?user={user}")
    expect(page.get_by_test_id("connection-status")).to_have_text("Live", timeout=WAIT_MS)
    return page


def attendee_names(page: Page) -> list[str]:
    return page.get_by_test_id("attendee").locator(".name").all_inner_texts()


def test_toggling_attendance_updates_the_other_participants_page(
    browser: Browser, demo: str
) -> None:
    joshua = open_as(browser, demo, "joshua")
    tijuana = open_as(browser, demo, "tijuana")
    attendees = tijuana.get_by_test_id("attendee")
    expect(attendees).to_have_count(3, timeout=WAIT_MS)
    assert attendee_names(tijuana) == ["Joshua Pendergrast", "Thomasina Manning", "Tijuana Ramos"]
    expect(tijuana.get_by_test_id("hearing-aid-count")).to_have_text("2")
    toggle = joshua.get_by_test_id("toggle-attendance")
    expect(toggle).to_have_text("Leave the meeting", timeout=WAIT_MS)
    tijuana.evaluate("window.sameDocument = true")  # gone if the page were reloaded

    toggle.click()

    expect(attendees).to_have_count(2, timeout=WAIT_MS)
    assert attendee_names(tijuana) == ["Thomasina Manning", "Tijuana Ramos"]
    expect(tijuana.get_by_test_id("hearing-aid-count")).to_have_text("1")
    expect(tijuana.get_by_test_id("attendee-count")).to_have_text("2")
    expect(toggle).to_have_text("Join the meeting", timeout=WAIT_MS)
    expect(joshua.get_by_test_id("attendees")).not_to_contain_text("Joshua")

    toggle.click()

    expect(attendees).to_have_count(3, timeout=WAIT_MS)
    expect(tijuana.get_by_test_id("hearing-aid-count")).to_have_text("2")
    assert tijuana.evaluate("window.sameDocument") is True
    for page in (joshua, tijuana):
        expect(page.get_by_test_id("error")).to_have_text("")
        page.close()


def test_a_page_without_a_participant_says_how_to_pick_one(browser: Browser, demo: str) -> None:
    page = browser.new_page()
    page.goto(f"{demo}/")
    expect(page.get_by_test_id("error")).to_contain_text("?user=joshua", timeout=WAIT_MS)
    expect(page.get_by_test_id("toggle-attendance")).to_be_disabled()
    page.close()


CLIENT_ROUND_TRIP = """
async () => {
  const within = (promise) => Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error("timed out")), 5000)),
  ]);
  const joshua = new OntoSocket({ auth: { token: "joshua-secret" } });
  const view = within(new Promise((resolve) => joshua.on("view", resolve)));
  const ack = await within(
    joshua.request("subscribe", { view: "meeting_session", key: "meeting-1/joshua" })
  );
  const first = await view;
  const refusal = await within(
    joshua.request("subscribe", { view: "meeting_session", key: "meeting-1/tijuana" })
  );
  joshua.close();
  const guesser = new OntoSocket({ auth: { token: "guess" } });
  const refused = await within(
    new Promise((resolve) => guesser.on("connect_error", (error) => resolve(error.message)))
  );
  return { ack, key: first.key, refusal: refusal.status, refused };
}
"""


def test_the_browser_client_authenticates_subscribes_and_reports_refusals(
    browser: Browser, serve: Serve
) -> None:
    auth = {"tokens": [{"token": "joshua-secret", "principal": "joshua"}]}
    page_dir = ROOT / "examples" / "meeting_room" / "web"
    with serve(auth=auth, page_dir=str(page_dir)) as url:
        page = browser.new_page()
        page.goto(f"{url}/")
        outcome = page.evaluate(CLIENT_ROUND_TRIP)
        page.close()
    assert outcome == {
        "ack": {"ok": True},
        "key": "meeting-1/joshua",
        "refusal": 403,
        "refused": "the bearer token is not valid",
    }


def test_the_page_reconnects_after_a_restart_and_shows_what_changed_meanwhile(
    browser: Browser, store: SqliteDatastore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = web_config(monkeypatch, tmp_path)
    with running(config, datastore=store):
        page = open_as(browser, f"http://127.0.0.1:{os.environ['ONTO_PORT']}", "tijuana")
        expect(page.get_by_test_id("attendee")).to_have_count(3, timeout=WAIT_MS)
    status = page.get_by_test_id("connection-status")
    expect(status).to_have_text("Reconnecting…", timeout=WAIT_MS)
    store.open()  # the runtime closed it when it stopped
    run_action(store, MeetingSession, "meeting-1/joshua", "set_attendance", {"attending": False})

    with running(config, datastore=store):
        expect(status).to_have_text("Live", timeout=WAIT_MS)
        expect(page.get_by_test_id("attendee")).to_have_count(2, timeout=WAIT_MS)
        expect(page.get_by_test_id("hearing-aid-count")).to_have_text("1")
        page.close()
