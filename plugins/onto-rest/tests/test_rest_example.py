"""examples/meeting_room/rest.yaml serves the meeting room as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from examples.meeting_room.seed import open_store, seed
from onto_core.config import load_config
from onto_core.testing import running

EXAMPLE = Path(__file__).parents[3] / "examples" / "meeting_room" / "rest.yaml"


def test_the_rest_example_serves_both_views_and_their_actions(
    tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "meeting_room.db"
    store = open_store(database)
    seed(store)
    store.close()
    monkeypatch.setenv("ONTO_DB", str(database))
    monkeypatch.setenv("ONTO_REST_PORT", str(port))
    with running(load_config(EXAMPLE)):
        url = f"http://127.0.0.1:{port}"
        left = requests.post(
            f"{url}/meeting_session/meeting-1/joshua/set_attendance",
            json={"attending": False},
            timeout=10,
        )
        assert left.status_code == 200
        assert [a["userId"] for a in left.json()["attending"]] == ["thomasina", "tijuana"]
        moved = requests.patch(f"{url}/user_view/joshua", json={"organization": "UCLA"}, timeout=10)
        assert moved.json()["organization"] == "UCLA"
        assert requests.get(f"{url}/apidocs", timeout=10).status_code == 200
