"""What a sink streaming view updates to subscribers keeps per view key."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from typing import Any

from onto_core.errors import SinkError
from onto_core.protocols import Message

__all__ = ["ViewRooms"]

_STRIPES = 64


class ViewRooms:
    """Per view key ("room"): a lock, and the newest version handed out.

    A subscriber reads the view as it is now and joins its room under the room's lock,
    and each update is handed out under it too, so no update slips between the two;
    the version a subscriber starts from is the room's newest (``version``). Locks are
    striped: rooms share a fixed number of them.
    """

    def __init__(self) -> None:
        self._locks = [threading.Lock() for _ in range(_STRIPES)]
        self._versions: dict[str, int] = {}

    @staticmethod
    def room(view: str, key: str) -> str:
        """The room of view ``view`` at ``key``: ``"{view}:{key}"``."""
        return f"{view}:{key}"

    def lock(self, room: str) -> threading.Lock:
        return self._locks[zlib.crc32(room.encode()) % _STRIPES]

    def version(self, room: str) -> int:
        """The newest version handed out in ``room`` (0 before any)."""
        return self._versions.get(room, 0)

    def updates(self, messages: list[Message], sink: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each message's room and view update, yielded while the room's lock is held
        (hand it out then), its version noted; ``SinkError`` naming ``sink`` and the
        message for one that is not a view update."""
        for message in messages:
            value = message.value
            if not (
                isinstance(value, dict)
                and isinstance(value.get("view"), str)
                and isinstance(value.get("key"), str)
            ):
                raise SinkError(
                    "expected a view update {view, key, fields, version, removed, data} "
                    f"as the view processor emits it, got {type(value).__name__}",
                    component=sink,
                    message_id=message.id,
                )
            room = self.room(value["view"], value["key"])
            version = value.get("version")
            with self.lock(room):
                if isinstance(version, int) and version > self._versions.get(room, 0):
                    self._versions[room] = version
                yield room, value
