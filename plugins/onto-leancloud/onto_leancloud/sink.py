"""``LeanCloudSink``: view updates written as objects of a LeanCloud class.

Each view update (``{view, key, fields, version, removed, data}``, as the ``view``
processor emits it) is one object of ``class_name``, found by ``key_field`` (the view
key, ``viewKey`` by default): the view's data as top-level fields, its key fields (with
``include_key_fields``), the key and ``version_field`` (``viewVersion``). A front end
queries the class (or live-queries it) by any of those fields.

Upsert by key, newest version wins: a batch first reads the objects of its keys (one
query per 100 keys), then sends every write in ``/1.1/batch`` calls of ``batch_size``:
``POST`` for a new key, ``PUT ...?where={"viewVersion": <read>}`` for an existing one (its
fields the view no longer has deleted), so an older or equal version never overwrites a
newer one and a redelivered update changes nothing. A removed view deletes its object
(conditionally too) and leaves a tombstone with the removal's version in
``tombstones_class``, so a late, older update cannot bring the object back. A request that
lost a race with another writer (305, or 137 on the unique key) is decided again on a
fresh read. Give ``key_field`` a unique index in ``class_name`` and ``tombKey`` one in
``tombstones_class``, so two sinks never create one key twice.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from onto_core.builtin.view import newest_per_target, update_parts
from onto_core.errors import DatastoreError, SinkError
from onto_core.protocols import Guarantee, Message, RuntimeContext
from onto_leancloud._client import (
    LeanCloudClient,
    LeanCloudConflict,
    LeanCloudDuplicate,
    LeanCloudError,
    LeanCloudNotFound,
)
from onto_leancloud.datastore import (
    LeanCloudDatastore,
    check_class_name,
    check_field_names,
    where_path,
)

__all__ = ["LeanCloudSink"]

_KEYS_PER_QUERY = 100
_ATTEMPTS = 10  # rounds of re-deciding writes that lost races to other writers
_META = ("objectId", "createdAt", "updatedAt", "ACL")

_Target = tuple[int, dict[str, Any] | None]  # (version, object fields or None: removed)


class LeanCloudSink:
    """Writes view updates as LeanCloud objects, newest version wins, in batches."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE, Guarantee.EXACTLY_ONCE}
    )
    max_batch_size: ClassVar[int] = 500

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        class_name: str = Field(description="The class holding one object per view key.")
        key_field: str = Field("viewKey", description="Field holding the view key.")
        version_field: str = Field("viewVersion", description="Field holding the version.")
        include_key_fields: bool = Field(
            True, description="Also write the view's key fields (e.g. user_id) as fields."
        )
        tombstones_class: str = Field(
            "OntoViewTombstone", description="Class keeping removed views' versions."
        )
        batch_size: int = Field(
            50, ge=1, le=100, description="Most writes in one /1.1/batch request."
        )
        server_url: str | None = Field(
            None, description="The app's API server; default: the pipeline's leancloud datastore's."
        )
        app_id: str | None = Field(None, description="App ID; default: the datastore's.")
        app_key: SecretStr | None = Field(None, description="App Key. Secret.")
        master_key: SecretStr | None = Field(None, description="Master Key. Secret.")
        sign_requests: bool = Field(True, description="Send X-LC-Sign instead of the key.")
        timeout: float = Field(15.0, gt=0, description="Seconds per request.")

    def __init__(self, config: Config) -> None:
        self.config = config
        try:
            check_class_name(config.class_name, "class_name")
            check_class_name(config.tombstones_class, "tombstones_class")
        except DatastoreError as exc:
            raise SinkError(f"leancloud sink: {exc}") from None
        self._client: LeanCloudClient | None = None
        self._own_client = False
        self._ctx: RuntimeContext | None = None

    async def start(self, ctx: RuntimeContext) -> None:
        """Connect: through the pipeline's leancloud datastore unless told otherwise."""
        self._ctx = ctx
        config = self.config
        store = ctx.datastore
        if config.server_url is None and isinstance(store, LeanCloudDatastore):
            store.open()
            self._client, self._own_client = store.client, False
            return
        defaults = LeanCloudDatastore.Config()
        try:
            self._client = LeanCloudClient(
                config.server_url or defaults.server_url,
                config.app_id or defaults.app_id,
                config.app_key or defaults.app_key,
                config.master_key or defaults.master_key,
                sign=config.sign_requests,
                timeout=config.timeout,
            )
        except DatastoreError as exc:
            raise SinkError.at(
                ctx, f"leancloud sink: {exc} (set it here or use a leancloud datastore)"
            ) from None
        self._own_client = True

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._own_client:
            client.close()

    async def write(self, messages: list[Message]) -> None:
        """Write ``messages`` (view updates); returns once LeanCloud confirmed every one."""
        client = self._client
        if client is None:
            raise SinkError.at(self._ctx, "the leancloud sink was used before start(ctx)")
        if not messages:
            return
        latest = self._latest(messages)
        try:
            await asyncio.to_thread(self._write, client, latest)
        except LeanCloudError as exc:
            raise SinkError.at(self._ctx, f"leancloud sink: {exc}") from exc

    def _latest(self, messages: list[Message]) -> dict[str, _Target]:
        return newest_per_target(self._target(message) for message in messages)

    def _target(self, message: Message) -> tuple[str, int, dict[str, Any] | None]:
        value = message.value
        if not isinstance(value, dict) or not isinstance(value.get("key"), str):
            raise SinkError.at(
                self._ctx,
                f"message {message.id}: expected a view update {{view, key, fields, version,"
                f" removed, data}}, got {type(value).__name__}",
            )
        key = value["key"]
        try:
            version, data = update_parts(message)
        except ValueError as exc:
            raise SinkError.at(self._ctx, str(exc)) from None
        if data is None:
            return key, version, None
        fields = value.get("fields") if self.config.include_key_fields else None
        kf, vf = self.config.key_field, self.config.version_field
        body = {**(fields if isinstance(fields, dict) else {}), **data}
        try:
            check_field_names(f"message {message.id} (view key {key!r})", body, {*_META, kf, vf})
        except DatastoreError as exc:
            raise SinkError.at(self._ctx, str(exc)) from None
        return key, version, {**body, kf: key, vf: version}

    # --- writing ------------------------------------------------------------------------

    def _tomb_key(self, key: str) -> str:
        return f"{self.config.class_name}/{key}"

    def _write(self, client: LeanCloudClient, latest: dict[str, _Target]) -> None:
        pending = latest
        for _ in range(_ATTEMPTS):
            lost: dict[str, _Target] = {}
            keys = list(pending)
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                part = {k: pending[k] for k in keys[start : start + _KEYS_PER_QUERY]}
                for key in self._write_part(client, part):
                    lost[key] = pending[key]
            if not lost:
                return
            pending = lost
        raise LeanCloudError(
            f"gave up after {_ATTEMPTS} rounds of writes losing to other writers on"
            f" {sorted(pending)[:5]}",
            code=305,
            error="conflict",
            status=None,
        )

    def _write_part(self, client: LeanCloudClient, part: dict[str, _Target]) -> list[str]:
        """Read the objects of ``part``'s keys and send the winning writes; the lost keys."""
        c = self.config
        kf, vf = c.key_field, c.version_field
        stored = {
            obj[kf]: obj
            for obj in client.query(c.class_name, {kf: {"$in": list(part)}}, limit=1000)
        }
        tombs: dict[str, dict[str, Any]] = {}
        absent = [self._tomb_key(k) for k, (_, b) in part.items() if k not in stored or b is None]
        if absent:
            tombs = {
                row["tombKey"]: row
                for row in client.query(
                    c.tombstones_class, {"tombKey": {"$in": absent}}, limit=1000
                )
            }
        planned: list[tuple[str, dict[str, Any]]] = []
        for key, (version, body) in part.items():
            obj = stored.get(key)
            tomb = tombs.get(self._tomb_key(key))
            have = int(obj.get(vf, 0)) if obj else int(tomb["version"]) if tomb else 0
            if version <= have:
                continue  # older or the same: the newer object stays
            if body is None:
                if obj is not None:
                    path = where_path(client.class_path(c.class_name, obj["objectId"]), {vf: have})
                    planned.append((key, {"method": "DELETE", "path": path}))
                planned.append((key, self._tombstone_request(client, key, version, tomb)))
            elif obj is None:
                planned.append(
                    (key, {"method": "POST", "path": client.class_path(c.class_name), "body": body})
                )
            else:
                gone = {k: {"__op": "Delete"} for k in obj if k not in body and k not in _META}
                path = where_path(client.class_path(c.class_name, obj["objectId"]), {vf: have})
                planned.append((key, {"method": "PUT", "path": path, "body": {**body, **gone}}))
        lost: list[str] = []
        for start in range(0, len(planned), c.batch_size):
            chunk = planned[start : start + c.batch_size]
            answers = client.batch([r for _, r in chunk], what=f"write of views to {c.class_name}")
            for (key, request), answer in zip(chunk, answers, strict=True):
                if "error" not in answer:
                    continue
                what = f"{request['method']} of view {key!r} in {c.class_name}"
                error = client.batch_error(what, answer)
                if isinstance(error, LeanCloudConflict | LeanCloudDuplicate | LeanCloudNotFound):
                    lost.append(key)
                else:
                    raise error
        return lost

    def _tombstone_request(
        self, client: LeanCloudClient, key: str, version: int, tomb: dict[str, Any] | None
    ) -> dict[str, Any]:
        cls = self.config.tombstones_class
        body = {"tombKey": self._tomb_key(key), "version": version}
        if tomb is None:
            return {"method": "POST", "path": client.class_path(cls), "body": body}
        path = where_path(client.class_path(cls, tomb["objectId"]), {"version": tomb["version"]})
        return {"method": "PUT", "path": path, "body": body}
