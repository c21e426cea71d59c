"""The LeanCloud double, held to the official SDK (3.0.2, in its own venv) as a peer.

What the SDK sends and expects back is LeanCloud's protocol as its authors wrote it; every
test here runs an SDK script against the double and checks what the SDK saw.
"""

from __future__ import annotations

from typing import Any

import pytest
from sdk_peer import PRELUDE, SdkPeer, double_env

from onto_leancloud._client import LeanCloudClient, LeanCloudConflict, LeanCloudError
from onto_leancloud.double import LeanCloudDouble


def run(peer: SdkPeer, double: LeanCloudDouble, body: str, **env: str) -> Any:
    return peer.run_json(PRELUDE + body, {**double_env(double), **env})


def test_sdk_save_of_an_existing_object_updates_it(
    sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble
) -> None:
    seen = run(
        sdk_peer,
        leancloud_double,
        """
ticket = leancloud.Object.create("Ticket", attendance=True, seats=1)
ticket.save()
ticket.set("attendance", False)
ticket.increment("seats", 2)
ticket.add_unique("tags", "vip")
ticket.save()
found = leancloud.Query("Ticket").find()
print(json.dumps({"id": ticket.id, "count": len(found), "attendance": found[0].get("attendance"),
                  "seats": found[0].get("seats"), "tags": found[0].get("tags")}))
""",
    )
    assert seen["count"] == 1
    assert (seen["attendance"], seen["seats"], seen["tags"]) == (False, 3, ["vip"])
    [stored] = leancloud_double.objects("Ticket")
    assert stored["objectId"] == seen["id"]


def test_sdk_reads_typed_values_field_for_field(
    sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble
) -> None:
    client = LeanCloudClient(
        leancloud_double.url, leancloud_double.app_id, master_key=leancloud_double.master_key
    )
    room = client.create("Room", {"name": "Hall"})
    client.create(
        "Meeting",
        {
            "title": "Standup",
            "startsAt": {"__type": "Date", "iso": "2024-05-06T07:08:09.123Z"},
            "room": {"__type": "Pointer", "className": "Room", "objectId": room["objectId"]},
            "where": {"__type": "GeoPoint", "latitude": 39.9, "longitude": 116.4},
            "size": 12,
        },
    )
    seen = run(
        sdk_peer,
        leancloud_double,
        """
m = leancloud.Query("Meeting").equal_to("title", "Standup").first()
print(json.dumps({"startsAt": m.get("startsAt").astimezone(__import__("datetime").timezone.utc)
                  .isoformat(), "room": [m.get("room").__class__.__name__, m.get("room").id],
                  "lat": m.get("where").latitude, "lon": m.get("where").longitude,
                  "size": m.get("size"), "created": m.created_at is not None}))
""",
    )
    assert seen == {
        "startsAt": "2024-05-06T07:08:09.123000+00:00",
        "room": ["Room", room["objectId"]],
        "lat": 39.9,
        "lon": 116.4,
        "size": 12,
        "created": True,
    }


def test_sdk_queries_with_operators_order_and_limit(
    sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble
) -> None:
    seen = run(
        sdk_peer,
        leancloud_double,
        """
leancloud.Object.save_all([leancloud.Object.create("Item", n=n, name="item-%d" % n)
                           for n in range(8)])
q = leancloud.Query("Item").greater_than_or_equal_to("n", 2).not_equal_to("n", 5)
q.contained_in("n", [1, 2, 3, 4, 5, 6]).add_descending("n").limit(3)
either = leancloud.Query.or_(leancloud.Query("Item").equal_to("n", 0),
                             leancloud.Query("Item").startswith("name", "item-7"))
print(json.dumps({"picked": [o.get("n") for o in q.find()],
                  "count": leancloud.Query("Item").less_than("n", 4).count(),
                  "either": sorted(o.get("n") for o in either.find()),
                  "skipped": [o.get("n") for o in leancloud.Query("Item").add_ascending("n")
                              .skip(6).find()]}))
""",
    )
    assert seen == {"picked": [6, 4, 3], "count": 4, "either": [0, 7], "skipped": [6, 7]}


def test_sdk_conditional_save_that_fails_gets_error_305(
    sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble
) -> None:
    seen = run(
        sdk_peer,
        leancloud_double,
        """
t = leancloud.Object.create("Ticket", version=1)
t.save()
t.set("version", 2)
t.save(where=leancloud.Query("Ticket").equal_to("version", 1))
t.set("version", 3)
try:
    t.save(where=leancloud.Query("Ticket").equal_to("version", 1))
    print(json.dumps("saved"))
except leancloud.LeanCloudError as e:
    print(json.dumps([e.code, leancloud.Query("Ticket").get(t.id).get("version")]))
""",
    )
    assert seen == [305, 2]


def test_sdk_with_a_wrong_key_is_unauthorized(
    sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble
) -> None:
    env = {**double_env(leancloud_double), "LEANCLOUD_APP_KEY": "wrong"}
    env.pop("LEANCLOUD_APP_MASTER_KEY")
    seen = sdk_peer.run_json(
        PRELUDE
        + """
try:
    leancloud.Object.create("Ticket", n=1).save()
except leancloud.LeanCloudError as e:
    print(json.dumps([e.code, e.error]))
""",
        env,
    )
    assert seen == [401, "Unauthorized."]
    assert leancloud_double.objects("Ticket") == []


def test_sdk_destroy_all_goes_through_batch(
    sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble
) -> None:
    seen = run(
        sdk_peer,
        leancloud_double,
        """
items = [leancloud.Object.create("Item", n=n) for n in range(3)]
leancloud.Object.save_all(items)
leancloud.Object.destroy_all(items[:2])
print(json.dumps([o.get("n") for o in leancloud.Query("Item").find()]))
""",
    )
    assert seen == [2]
    assert leancloud_double.requests >= 3


def test_unique_fields_refuse_a_second_value_with_137(leancloud_double: LeanCloudDouble) -> None:
    leancloud_double.unique("User2", "email")
    client = LeanCloudClient(
        leancloud_double.url, leancloud_double.app_id, app_key=leancloud_double.app_key
    )
    client.create("User2", {"email": "a@example.com"})
    with pytest.raises(LeanCloudError, match="code 137") as caught:
        client.create("User2", {"email": "a@example.com"})
    assert caught.value.code == 137


def test_client_errors_name_the_object_and_never_a_key(leancloud_double: LeanCloudDouble) -> None:
    client = LeanCloudClient(
        leancloud_double.url,
        leancloud_double.app_id,
        master_key=leancloud_double.master_key,
        sign=False,
    )
    created = client.create("Ticket", {"v": 1})
    with pytest.raises(LeanCloudConflict) as caught:
        client.update("Ticket", created["objectId"], {"v": 2}, where={"v": 0})
    message = str(caught.value)
    assert f"update of Ticket/{created['objectId']}" in message
    assert "code 305" in message
    assert leancloud_double.master_key not in message + repr(client)
    assert caught.value.status == 400
