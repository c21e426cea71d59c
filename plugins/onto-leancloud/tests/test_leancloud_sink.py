"""LeanCloudSink against the LeanCloud double: upsert by key, versions, removal, batches,
bad input, the sink conformance suite, and the official SDK reading the view objects."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from sdk_peer import PRELUDE, SdkPeer, double_env

from onto_core.errors import SinkError
from onto_core.protocols import Message, RuntimeContext
from onto_core.testing import SinkConformance
from onto_leancloud import LeanCloudDatastore, LeanCloudSink
from onto_leancloud.double import LeanCloudDouble

CLASS = "MeetingSession"


@pytest.fixture
def store(leancloud_double: LeanCloudDouble) -> Iterator[LeanCloudDatastore]:
    leancloud_double.unique(CLASS, "viewKey")
    leancloud_double.unique("OntoViewTombstone", "tombKey")
    opened = LeanCloudDatastore(
        LeanCloudDatastore.Config(
            server_url=leancloud_double.url,
            app_id=leancloud_double.app_id,
            master_key=leancloud_double.master_key,  # type: ignore[arg-type]
        )
    )
    opened.open()
    yield opened
    opened.close()


def update(user: str, version: int, data: dict[str, Any] | None) -> Message:
    value = {
        "view": "meeting_session",
        "key": f"meeting-1/{user}",
        "fields": {"meeting_id": "meeting-1", "user_id": user},
        "version": version,
        "removed": data is None,
        "data": data,
    }
    return Message(value, key=value["key"], headers={"onto-version": str(version)})


def write(store: LeanCloudDatastore | None, *batches: list[Message], **config: Any) -> None:
    sink = LeanCloudSink(LeanCloudSink.Config(**{"class_name": CLASS, **config}))
    ctx = RuntimeContext("views", "sink", logging.getLogger("test"), datastore=store)

    async def run() -> None:
        await sink.start(ctx)
        try:
            for batch in batches:
                await sink.write(batch)
        finally:
            await sink.close()

    asyncio.run(run())


def views(double: LeanCloudDouble) -> dict[str, dict[str, Any]]:
    meta = ("objectId", "createdAt", "updatedAt")
    return {
        o["viewKey"]: {k: v for k, v in o.items() if k not in meta} for o in double.objects(CLASS)
    }


def test_one_object_per_view_key_with_its_fields_and_version(
    store: LeanCloudDatastore, leancloud_double: LeanCloudDouble
) -> None:
    write(
        store,
        [update("joshua", 3, {"inSession": True}), update("tijuana", 4, {"x": 1})],
        [update("joshua", 5, {"inSession": False})],
    )
    assert views(leancloud_double) == {
        "meeting-1/joshua": {
            "inSession": False,
            "meeting_id": "meeting-1",
            "user_id": "joshua",
            "viewKey": "meeting-1/joshua",
            "viewVersion": 5,
        },
        "meeting-1/tijuana": {
            "x": 1,
            "meeting_id": "meeting-1",
            "user_id": "tijuana",
            "viewKey": "meeting-1/tijuana",
            "viewVersion": 4,
        },
    }


def test_an_older_version_never_overwrites_a_newer_one(
    store: LeanCloudDatastore, leancloud_double: LeanCloudDouble
) -> None:
    write(
        store,
        [update("joshua", 5, {"attending": True})],
        [update("joshua", 4, {"attending": False})],  # late, older: dropped
        [update("joshua", 5, {"attending": False})],  # redelivered version: no change
    )
    [obj] = leancloud_double.objects(CLASS)
    assert (obj["attending"], obj["viewVersion"]) == (True, 5)


def test_fields_a_view_no_longer_has_are_removed(
    store: LeanCloudDatastore, leancloud_double: LeanCloudDouble
) -> None:
    write(store, [update("ann", 1, {"a": 1, "b": 2})], [update("ann", 2, {"a": 3})])
    [obj] = leancloud_double.objects(CLASS)
    assert (obj["a"], "b" in obj) == (3, False)


def test_a_removed_view_is_deleted_and_stays_deleted_for_older_updates(
    store: LeanCloudDatastore, leancloud_double: LeanCloudDouble
) -> None:
    write(store, [update("ann", 1, {"a": 1}), update("bob", 1, {"a": 2})])
    write(store, [update("ann", 3, None)], [update("ann", 2, {"a": 9})])
    assert list(views(leancloud_double)) == ["meeting-1/bob"]
    write(store, [update("ann", 4, {"a": 4})])  # a newer update brings it back
    assert views(leancloud_double)["meeting-1/ann"]["a"] == 4
    write(store, [update("ann", 5, None)])  # and a second removal finds the old tombstone
    assert list(views(leancloud_double)) == ["meeting-1/bob"]


def test_a_batch_is_one_read_and_few_batch_requests(
    store: LeanCloudDatastore, leancloud_double: LeanCloudDouble
) -> None:
    batch = [update(f"user{n}", 1, {"n": n}) for n in range(100)]
    before = leancloud_double.requests
    write(store, batch, batch_size=50)
    assert len(leancloud_double.objects(CLASS)) == 100
    # one query of the 100 keys, one of their (absent) tombstones, two batch calls of 50
    assert leancloud_double.requests - before == 4


def test_two_sinks_racing_on_one_key_keep_the_newest(
    store: LeanCloudDatastore, leancloud_double: LeanCloudDouble
) -> None:
    async def race() -> None:
        sinks = [LeanCloudSink(LeanCloudSink.Config(class_name=CLASS)) for _ in range(2)]
        ctx = RuntimeContext("views", "sink", logging.getLogger("test"), datastore=store)
        for sink in sinks:
            await sink.start(ctx)
        await asyncio.gather(
            *(sinks[v % 2].write([update("ann", v, {"v": v})]) for v in range(1, 21))
        )
        for sink in sinks:
            await sink.close()

    asyncio.run(race())
    [obj] = leancloud_double.objects(CLASS)
    assert (obj["v"], obj["viewVersion"]) == (20, 20)


def test_sdk_reads_the_view_objects(
    store: LeanCloudDatastore, sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble
) -> None:
    write(store, [update("joshua", 2, {"inSession": True, "attendees": ["joshua", "tijuana"]})])
    seen = sdk_peer.run_json(
        PRELUDE
        + f"""
o = leancloud.Query("{CLASS}").equal_to("user_id", "joshua").first()
print(json.dumps([o.get("inSession"), o.get("attendees"), o.get("viewVersion")]))
""",
        double_env(leancloud_double),
    )
    assert seen == [True, ["joshua", "tijuana"], 2]


def test_bad_updates_are_refused_naming_the_message(store: LeanCloudDatastore) -> None:
    with pytest.raises(SinkError, match="expected a view update"):
        write(store, [Message("not a view", key="k")])
    with pytest.raises(SinkError, match="'version' must be an integer"):
        write(store, [Message({"key": "k", "version": "x", "data": {}}, key="k")])
    with pytest.raises(SinkError, match="field '_x' is not a LeanCloud field name"):
        write(store, [update("ann", 1, {"_x": 1})])


def test_leancloud_refusals_become_sink_errors(
    store: LeanCloudDatastore, leancloud_double: LeanCloudDouble
) -> None:
    write(store, [update("ann", 1, {"n": 1})])
    with pytest.raises(SinkError, match="code 111"):
        write(store, [update("bob", 1, {"n": "one"})])


def test_without_a_datastore_or_server_the_sink_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("LEANCLOUD_API_SERVER", "LEANCLOUD_APP_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SinkError, match="use a leancloud datastore"):
        write(None, [update("ann", 1, {"n": 1})])


def test_a_bad_class_name_is_refused() -> None:
    with pytest.raises(SinkError, match="'Meeting Session' is not a LeanCloud class name"):
        LeanCloudSink(LeanCloudSink.Config(class_name="Meeting Session"))


class TestLeanCloudSinkConformance(SinkConformance):
    """The suite's values as view updates: each value is the ``value`` field of its view
    object (a LeanCloud field keeps one type, so values of every JSON kind sit in an
    object field), versioned in the order written."""

    keeps_history: ClassVar[bool] = False
    _versions = itertools.count(1)

    @staticmethod
    def messages(values: list[Any], key: str | None = None) -> list[Message]:
        out = []
        for i, v in enumerate(values):
            view_key = key if key is not None else f"k{i}"
            version = next(TestLeanCloudSinkConformance._versions)
            update = {
                "view": "conformance",
                "key": view_key,
                "fields": {},
                "version": version,
                "removed": False,
                "data": {"value": {"v": v}},
            }
            out.append(Message(update, key=view_key))
        return out

    @pytest.fixture
    def sink_factory(
        self, leancloud_double: LeanCloudDouble
    ) -> tuple[LeanCloudSink, Callable[[], list[Any]]]:
        sink = LeanCloudSink(
            LeanCloudSink.Config(
                class_name="Conformance",
                server_url=leancloud_double.url,
                app_id=leancloud_double.app_id,
                master_key=leancloud_double.master_key,  # type: ignore[arg-type]
            )
        )

        def read_back() -> list[Any]:
            return [o["value"]["v"] for o in leancloud_double.objects("Conformance")]

        return sink, read_back

    @pytest.fixture
    def refusing_sink_factory(self, leancloud_double: LeanCloudDouble) -> LeanCloudSink:
        """A class the app key may not write (LeanCloud answers 119 to each request)."""
        leancloud_double.master_only("Refusing")
        return LeanCloudSink(
            LeanCloudSink.Config(
                class_name="Refusing",
                server_url=leancloud_double.url,
                app_id=leancloud_double.app_id,
                app_key=leancloud_double.app_key,  # type: ignore[arg-type]
            )
        )
