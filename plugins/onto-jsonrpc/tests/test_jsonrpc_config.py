"""Settings are checked before anything listens, with errors naming the key at fault."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from examples.meeting_room.models import User
from onto_core import plugins
from onto_core.builtin.memory_datastore import MemoryDatastore
from onto_core.config import load_config, parse_config
from onto_core.errors import ComponentError, ConfigError
from onto_core.models import ViewModel, action
from onto_core.testing import running
from onto_jsonrpc import JsonRpcSource

if TYPE_CHECKING:
    from conftest import Endpoint

SESSION = "examples.meeting_room.views:MeetingSession"
USER = "examples.meeting_room.views:UserView"
EXAMPLE = Path(__file__).parents[3] / "examples" / "meeting_room" / "jsonrpc.yaml"


class Profile(ViewModel, root=User, key="user_id", name="user_view"):
    """A second view called user_view: its methods would clash with UserView's."""

    user_id: str

    @classmethod
    def build(cls, user: User) -> Profile:
        return cls(user_id=user.id)


class Lookup(ViewModel, root=User, key="user_id"):
    user_id: str

    @classmethod
    def build(cls, user: User) -> Lookup:
        return cls(user_id=user.id)

    @action
    def get(self) -> None:
        """Clashes with lookup.get."""


class Rekey(ViewModel, root=User, key="user_id"):
    user_id: str

    @classmethod
    def build(cls, user: User) -> Rekey:
        return cls(user_id=user.id)

    @action
    def move(self, key: str) -> None:
        """Its parameter clashes with the view key."""


def config_with(**source: Any) -> str:
    settings = {"type": "jsonrpc", "views": [SESSION], **source}
    pipeline = {"source": settings, "processors": [{"type": "api"}], "sinks": [{"type": "reply"}]}
    return json.dumps({"pipelines": {"rpc": pipeline}})


def test_the_public_names() -> None:
    import onto_jsonrpc

    assert onto_jsonrpc.__all__ == [
        "ErrorCode",
        "JsonRpcSource",
        "ViewMethod",
        "register_components",
        "view_methods",
    ]


def test_the_source_is_registered_as_jsonrpc() -> None:
    found = {(c.kind, c.name): c for c in plugins.list_components()}
    assert found["source", "jsonrpc"].cls is JsonRpcSource


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ({"views": []}, "views"),
        ({"views": ["examples.meeting_room.views:Nope"]}, "has no attribute 'Nope'"),
        ({"views": ["examples.meeting_room.models:User"]}, "is not a ViewModel subclass"),
        ({"views": [USER, f"{__name__}:Profile"]}, "are both named 'user_view'"),
        ({"views": [f"{__name__}:Lookup"]}, "action 'get' clashes with the JSON-RPC method"),
        ({"views": [f"{__name__}:Rekey"]}, "has a parameter named 'key'"),
        ({"path": "api"}, "path must start with '/'"),
        ({"path": "/api/"}, "not end with one"),
        ({"path": "/api/<x>"}, "plain URL path"),
        ({"timeout": 0}, "timeout"),
        ({"browse": "sometimes"}, "browse"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(source: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match="source") as error:
        parse_config(config_with(**source))
    assert says in str(error.value)


def test_two_endpoints_on_one_server_need_different_paths(
    serve: Callable[..., Endpoint],
) -> None:
    first = serve(path="/rpc/a", views=[SESSION])
    port = int(first.root.rsplit(":", 1)[1])
    second = serve(path="/rpc/b", views=[USER], port=port)
    assert first.call("meeting_session.get", ["meeting-1/joshua"])["result"]["userId"] == "joshua"
    assert second.call("user_view.get", ["joshua"])["result"]["userId"] == "joshua"
    assert first.call("user_view.get", ["joshua"])["error"]["code"] == -32601


def test_the_same_path_twice_on_one_server_is_refused_at_start(port: int) -> None:
    endpoint = {"type": "jsonrpc", "port": port, "path": "/api", "views": [SESSION]}
    pipeline = {"source": endpoint, "processors": [{"type": "api"}], "sinks": [{"type": "reply"}]}
    config = json.dumps({"pipelines": {"one": pipeline, "two": pipeline}})
    with (
        pytest.raises(ComponentError, match=f"already serves JSON-RPC at 127.0.0.1:{port}/api"),
        running(config, datastore=MemoryDatastore()),
    ):
        pass


def test_the_meeting_room_example_serves_json_rpc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: Any, port: int
) -> None:
    monkeypatch.setenv("ONTO_PORT", str(port))
    monkeypatch.setenv("ONTO_DB", str(tmp_path / "onto.db"))  # the seeded store's file
    with running(load_config(EXAMPLE)):
        answer = requests.post(
            f"http://127.0.0.1:{port}/api",
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "meeting_session.get",
                "params": {"key": "meeting-1/joshua"},
            },
            timeout=10,
        ).json()
    assert answer["result"]["numHearingAidRequested"] == 2
