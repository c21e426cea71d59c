"""The rest source's settings are checked when the config is read, with messages naming the key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.config import parse_config
from onto_core.errors import ConfigError, OntoError
from onto_core.testing import running
from onto_rest import RestSource

USER = "examples.meeting_room.views:UserView"


def config_with(**source: Any) -> str:
    pipeline = {
        "source": {"type": "rest", **source},
        "processors": [{"type": "api"}],
        "sinks": [{"type": "reply"}],
    }
    return json.dumps({"pipelines": {"api": pipeline}})


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ({"views": ["examples.meeting_room.views:Nope"]}, "views[0]: module "),
        ({"views": [USER, "examples.meeting_room.models:User"]}, "views[1]: "),
        ({"views": [USER, USER]}, "views[1]: "),
        ({"views": []}, "views"),
        ({}, "views"),
        ({"views": [USER], "prefix": "/a b"}, "prefix '/a b'"),
        ({"views": [USER], "prefix": "/apidocs"}, "API docs"),
        ({"views": [USER], "timeout": 0}, "timeout"),
        ({"views": [USER], "colour": "red"}, "colour"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(source: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with(**source), "rest.yaml")
    assert "pipelines.api.source" in str(caught.value)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("given", "normalized"),
    [("", ""), ("/", ""), ("api", "/api"), ("/api/v1/", "/api/v1"), (" /x ", "/x")],
)
def test_prefix_is_normalized_to_a_leading_slash_and_no_trailing_one(
    given: str, normalized: str
) -> None:
    assert RestSource.Config(views=[USER], prefix=given).prefix == normalized


def test_two_components_serving_one_route_on_one_server_fail_at_start(
    store: SqliteDatastore, port: int
) -> None:
    pipeline = {"processors": [{"type": "api"}], "sinks": [{"type": "reply"}]}
    source = {"type": "rest", "port": port, "views": [USER]}
    config = {
        "pipelines": {"a": {"source": source, **pipeline}, "b": {"source": source, **pipeline}}
    }
    clash = r"/user_view is already served by .*different 'prefix'"
    with pytest.raises(OntoError, match=clash), running(json.dumps(config), datastore=store):
        pass
