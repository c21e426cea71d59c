"""Domain models: every field kind round-trips, keys are camelCase, subclasses read back."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from onto_core.builtin.memory_datastore import MemoryDatastore
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.errors import DatastoreError
from onto_core.models import Datastore, DomainModel, Embedded, Ref, use_datastore


class Color(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Address(Embedded):
    street_name: str
    zip_code: str | None = None


class Owner(DomainModel, collection="owners"):
    display_name: str


class Kitchen(DomainModel, collection="kitchens"):
    title: str
    seat_count: int
    price_per_hour: float
    is_open: bool
    opened_at: dt.datetime
    color: Color
    nickname: str | None = None
    tags: list[str] = []
    ratings_by_user: dict[str, int] = {}
    address: Address
    owner: Ref[Owner]
    co_owners: list[Ref[Owner]] = []
    owners_by_role: dict[str, Ref[Owner]] = {}


class City(DomainModel, collection="cities"):
    name: str


class Municipality(City):
    mayor: str


class StandardCity(City):
    state: str


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Datastore]:
    made: Any = (
        MemoryDatastore()
        if request.param == "memory"
        else SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    )
    made.open()
    yield made
    made.close()


def kitchen() -> Kitchen:
    alice, bob = Owner(id="alice", display_name="Alice"), Owner(id="bob", display_name="Bob")
    return Kitchen(
        id="k1",
        title="Shared kitchen",
        seat_count=12,
        price_per_hour=18.5,
        is_open=True,
        opened_at=dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC),
        color=Color.BLUE,
        tags=["vegan", "late"],
        ratings_by_user={"alice": 5, "bob": 3},
        address=Address(street_name="Main St"),
        owner=alice,
        co_owners=[bob.ref, "owners/alice"],
        owners_by_role={"chef": bob},
    )


def test_to_dict_uses_camel_case_keys_and_reference_paths() -> None:
    data = kitchen().to_dict()
    assert data == {
        "title": "Shared kitchen",
        "seatCount": 12,
        "pricePerHour": 18.5,
        "isOpen": True,
        "openedAt": "2026-11-24T09:30:00Z",
        "color": "blue",
        "nickname": None,
        "tags": ["vegan", "late"],
        "ratingsByUser": {"alice": 5, "bob": 3},
        "address": {"streetName": "Main St", "zipCode": None},
        "owner": "owners/alice",
        "coOwners": ["owners/bob", "owners/alice"],
        "ownersByRole": {"chef": "owners/bob"},
        "objType": "Kitchen",
    }


def test_every_field_kind_round_trips_through_from_dict() -> None:
    original = kitchen()
    again = Kitchen.from_dict(original.to_dict(), "k1")
    assert again == original
    assert isinstance(again.owner, Ref)
    assert again.owner.model is Owner
    assert again.opened_at.tzinfo is not None
    assert again.color is Color.BLUE


def test_every_field_kind_round_trips_through_a_datastore(store: Datastore) -> None:
    with use_datastore(store):
        Owner(id="alice", display_name="Alice").save()
        kitchen().save()
        stored = Kitchen.get("k1")
        assert stored == kitchen()
        assert stored.owner.get().display_name == "Alice"
        assert Kitchen.find("nope") is None
        with pytest.raises(DatastoreError, match="kitchens/nope does not exist"):
            Kitchen.get("nope")


def test_subclasses_share_a_collection_and_read_back_as_their_own_type(store: Datastore) -> None:
    with use_datastore(store):
        Municipality(id="sd", name="San Diego", mayor="Todd").save()
        StandardCity(id="la", name="Los Angeles", state="CA").save()
        City(id="x", name="Plain").save()
        assert type(City.get("sd")) is Municipality
        assert City.get("sd").mayor == "Todd"  # type: ignore[attr-defined]
        assert type(City.get("la")) is StandardCity
        assert type(City.get("x")) is City
        assert {type(c).__name__ for c in City.where(order_by="name")} == {
            "Municipality",
            "StandardCity",
            "City",
        }
        assert store.get("cities", "sd") == {
            "name": "San Diego",
            "mayor": "Todd",
            "objType": "Municipality",
        }
        with pytest.raises(DatastoreError, match="'StandardCity' is not Municipality"):
            Municipality.get("la")


def test_where_accepts_python_field_names(store: Datastore) -> None:
    with use_datastore(store):
        Owner(id="alice", display_name="Alice").save()
        Owner(id="bob", display_name="Bob").save()
        assert [o.id for o in Owner.where(("display_name", "==", "Bob"))] == ["bob"]
        assert [o.id for o in Owner.where(order_by="-display_name")] == ["bob", "alice"]


def test_a_reference_into_the_wrong_collection_is_refused() -> None:
    with pytest.raises(ValidationError, match="expected a reference into 'owners'"):
        Kitchen.from_dict({**kitchen().to_dict(), "owner": "cities/sd"}, "k1")


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="surprise"):
        Owner.from_dict({"displayName": "A", "surprise": 1}, "a")


def test_reading_without_a_datastore_says_how_to_give_one() -> None:
    with pytest.raises(DatastoreError, match="no datastore in use"):
        Owner.get("alice")


def test_where_matches_references_documents_and_enums_as_python_holds_them(
    store: Datastore,
) -> None:
    with use_datastore(store):
        made = kitchen().save()
        alice = Owner(id="alice", display_name="Alice").save()
        assert [k.id for k in Kitchen.where(("owner", "==", alice.ref))] == [made.id]
        assert [k.id for k in Kitchen.where(("owner", "==", alice))] == [made.id]
        assert [k.id for k in Kitchen.where(("owner", "in", [alice.ref]))] == [made.id]
        assert Kitchen.where(("owner", "==", Owner(id="bob", display_name="Bob"))) == []
        assert [k.id for k in Kitchen.where(("color", "==", made.color))] == [made.id]
