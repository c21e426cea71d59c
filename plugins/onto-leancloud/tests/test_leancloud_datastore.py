"""LeanCloudDatastore against the LeanCloud double: the shared conformance suite, ids, and
the official SDK reading what onto wrote and onto reading what the SDK saved."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sdk_peer import PRELUDE, SdkPeer, double_env

from onto_core.errors import ConflictError, DatastoreError
from onto_core.testing import DatastoreConformance
from onto_leancloud import LeanCloudDatastore
from onto_leancloud.double import LeanCloudDouble


def open_store(double: LeanCloudDouble, **config: Any) -> LeanCloudDatastore:
    # The unique indexes the README asks an app to add, so concurrent creates are refused.
    double.unique("*", "ontoId", "stateKey")
    double.unique("OntoChange", "seq")
    double.unique("OntoCursor", "name")
    store = LeanCloudDatastore(
        LeanCloudDatastore.Config(
            server_url=double.url,
            app_id=double.app_id,
            master_key=double.master_key,  # type: ignore[arg-type]
            **config,
        )
    )
    store.open()
    return store


class TestLeanCloudDatastore(DatastoreConformance):
    @pytest.fixture
    def datastore_factory(self, leancloud_double: LeanCloudDouble) -> Iterator[LeanCloudDatastore]:
        store = open_store(leancloud_double)
        yield store
        store.close()

    def test_transaction_commits_all_writes_together(self, datastore_factory: Any) -> None:
        pytest.skip(
            "LeanCloud has no multi-object transactions: a transaction's writes are"
            " conditional but go one object at a time, so a failure part-way leaves the"
            " earlier ones written (README: what LeanCloud cannot promise)"
        )


@pytest.fixture
def store(leancloud_double: LeanCloudDouble) -> Iterator[LeanCloudDatastore]:
    opened = open_store(leancloud_double)
    yield opened
    opened.close()


def run_sdk(peer: SdkPeer, double: LeanCloudDouble, body: str) -> Any:
    return peer.run_json(PRELUDE + body, double_env(double))


def test_an_update_never_creates_a_second_object(
    store: LeanCloudDatastore, leancloud_double: LeanCloudDouble
) -> None:
    store.set("Ticket", "t1", {"attending": True, "seat": 4})
    store.set("Ticket", "t1", {"attending": False})
    [obj] = leancloud_double.objects("Ticket")
    assert obj["ontoId"] == "t1"
    assert (obj["attending"], "seat" in obj, obj["ontoVersion"]) == (False, False, 2)


def test_objects_the_sdk_saved_are_documents_under_their_object_id(
    store: LeanCloudDatastore, sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble
) -> None:
    object_id = run_sdk(
        sdk_peer,
        leancloud_double,
        """
t = leancloud.Object.create("Ticket", attending=True, name="Joshua")
t.save()
t.set("attending", False)
t.save()
print(json.dumps(t.id))
""",
    )
    assert store.get("Ticket", object_id) == {"attending": False, "name": "Joshua"}
    assert store.query("Ticket", [("name", "==", "Joshua")]) == [
        (object_id, {"attending": False, "name": "Joshua"})
    ]
    store.set("Ticket", object_id, {"attending": True, "name": "Joshua"})
    seen = run_sdk(
        sdk_peer,
        leancloud_double,
        "print(json.dumps([[o.id, o.get('attending')] for o in leancloud.Query('Ticket').find()]))",
    )
    assert seen == [[object_id, True]]


def test_sdk_reads_what_onto_wrote_field_for_field(
    store: LeanCloudDatastore, sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble
) -> None:
    store.set("Meeting", "m1", {"title": "Standup", "size": 12, "tags": ["daily"], "open": True})
    store.set(
        "Meeting",
        "m2",
        {
            "title": "Review",
            "startsAt": {"__type": "Date", "iso": "2024-05-06T07:08:09.123Z"},
            "where": {"__type": "GeoPoint", "latitude": 39.9, "longitude": 116.4},
            "room": {"nested": {"floor": 3}},
        },
    )
    seen = run_sdk(
        sdk_peer,
        leancloud_double,
        """
import datetime
out = {}
for o in leancloud.Query("Meeting").add_ascending("ontoId").find():
    row = {}
    for k, v in o._attributes.items():
        if k in ("objectId", "createdAt", "updatedAt"):
            continue
        if isinstance(v, datetime.datetime):
            v = v.astimezone(datetime.timezone.utc).isoformat()
        elif isinstance(v, leancloud.GeoPoint):
            v = [v.latitude, v.longitude]
        row[k] = v
    out[o.get("ontoId")] = row
print(json.dumps(out))
""",
    )
    assert seen["m1"] == {
        "title": "Standup",
        "size": 12,
        "tags": ["daily"],
        "open": True,
        "ontoId": "m1",
        "ontoVersion": 1,
    }
    assert seen["m2"]["startsAt"] == "2024-05-06T07:08:09.123000+00:00"
    assert seen["m2"]["where"] == [39.9, 116.4]
    assert seen["m2"]["room"] == {"nested": {"floor": 3}}


def test_a_write_racing_another_writer_is_a_conflict_in_a_transaction(
    store: LeanCloudDatastore, sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble
) -> None:
    store.set("Counter", "c", {"n": 0})

    def raced(tx: Any) -> None:
        current = tx.get("Counter", "c")
        # Another LeanCloud client writes the object meanwhile (through the SDK).
        run_sdk(
            sdk_peer,
            leancloud_double,
            """
c = leancloud.Query("Counter").equal_to("ontoId", "c").first()
c.increment("n", 10)
c.save()
print(json.dumps(c.id))
""",
        )
        tx.set("Counter", "c", {"n": current["n"] + 1})

    with pytest.raises(ConflictError, match="gave up after 1"):
        store.transaction(raced, max_attempts=1)
    assert store.get("Counter", "c") == {"n": 10}


def test_queries_page_past_a_thousand_objects(store: LeanCloudDatastore) -> None:
    client = store.client
    for start in range(0, 1200, 100):
        client.batch(
            [
                {"method": "POST", "path": "/classes/Item", "body": {"ontoId": f"i{n:04d}", "n": n}}
                for n in range(start, start + 100)
            ]
        )
    rows = store.query("Item", [("n", ">=", 50)], order_by="-n")
    assert len(rows) == 1150
    assert rows[0] == ("i1199", {"n": 1199})
    assert len(store.get_many("Item", [f"i{n:04d}" for n in range(0, 1200, 7)])) == 172


def test_names_leancloud_cannot_hold_are_refused_with_the_name(store: LeanCloudDatastore) -> None:
    with pytest.raises(DatastoreError, match="'users/u1' is not a LeanCloud class name"):
        store.set("users/u1", "x", {})
    with pytest.raises(DatastoreError, match="field '_private' is not a LeanCloud field name"):
        store.set("users", "u1", {"_private": 1})
    with pytest.raises(DatastoreError, match="field 'objectId' is reserved"):
        store.set("users", "u1", {"objectId": "x"})


def test_leancloud_errors_become_datastore_errors_naming_the_class(
    store: LeanCloudDatastore,
) -> None:
    store.set("users", "u1", {"age": 30})
    with pytest.raises(DatastoreError, match=r"users.*code 111"):
        store.set("users", "u2", {"age": "thirty"})


def test_config_keeps_keys_secret(leancloud_double: LeanCloudDouble) -> None:
    config = LeanCloudDatastore.Config(
        server_url=leancloud_double.url,
        app_id="app",
        app_key="the-app-key",  # type: ignore[arg-type]
        master_key="the-master-key",  # type: ignore[arg-type]
    )
    store = LeanCloudDatastore(config)
    store.open()
    shown = repr(config) + str(config.model_dump()) + repr(store) + repr(store.client)
    assert "the-app-key" not in shown
    assert "the-master-key" not in shown
    with pytest.raises(DatastoreError) as caught:
        store.get("users", "u1")  # wrong app id: the double answers 401
    assert "401" in str(caught.value)
    assert "the-master-key" not in str(caught.value)
    store.close()


def test_missing_credentials_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LEANCLOUD_APP_KEY", "LEANCLOUD_APP_MASTER_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DatastoreError, match="set 'app_key' or 'master_key'"):
        LeanCloudDatastore(LeanCloudDatastore.Config(server_url="http://x", app_id="a"))
