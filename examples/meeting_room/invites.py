"""Invitations, the "Query+Task" way on Firestore.

An organizer's front end creates an invite document, ``invites/{id}`` =
``{meetingId, userId, message, status: "pending"}``. The ``firestore_tasks`` source
hands each pending invite to ``invitation``, and the ``firestore`` sink writes the
result to the invitee's ``users/{userId}/invitations/{meetingId}`` in the same Firestore
transaction that marks the invite ``done``: each version of an invite is applied once,
however many workers run (examples/meeting_room/firestore_tasks.yaml).
"""

from __future__ import annotations

from typing import Any

__all__ = ["invitation"]


def invitation(task: dict[str, Any]) -> dict[str, Any]:
    """The invitee's view update for the invite ``task`` (``{docId, path, data}``).

    Its version is the invite's update time (the source's ``onto-version`` header), so a
    later edit of the invite replaces the view. An invite lacking ``meetingId`` or
    ``userId`` raises ``ValueError`` naming the invite (it goes to the dead letters).
    """
    data = task["data"]
    missing = [name for name in ("meetingId", "userId") if not data.get(name)]
    if missing:
        raise ValueError(f"invite {task['path']}: missing {', '.join(missing)}")
    meeting, user = str(data["meetingId"]), str(data["userId"])
    return {
        "view": "Invitation",
        "key": f"{user}/{meeting}",
        "fields": {"user_id": user, "meeting_id": meeting},
        "removed": False,
        "data": {
            "inviteId": task["docId"],
            "meetingId": meeting,
            "userId": user,
            "message": str(data.get("message", "")),
        },
    }
