"""Map functions the exactly-once task tests run inside pipelines (also in `onto run`
processes, which find this module through PYTHONPATH)."""

from __future__ import annotations

import os
from typing import Any

from onto_firestore import make_client


def applied(task: dict[str, Any]) -> dict[str, Any]:
    """A view at ``applied/{invite}/by/{worker}``: which worker applied which trigger."""
    return {
        "view": "applied",
        "key": task["docId"],
        "fields": {"invite": task["docId"], "worker": os.environ["ONTO_TEST_WORKER"]},
        "removed": False,
        "data": {"n": task["data"]["n"]},
    }


def edited_while_processed(task: dict[str, Any]) -> dict[str, Any]:
    """Edits the trigger while it is being processed, as a front end might.

    ``edits`` in the trigger says how many times: each processing round edits it once
    more (bumping ``note``) until ``round`` reaches ``edits``. The output, at
    ``applied/{invite}/notes/{note}``, records which version of the trigger it came from.
    """
    data = task["data"]
    round_ = int(data.get("round", 0))
    if round_ < int(data["edits"]):
        client = make_client(data["project"], emulator_host=data["host"])
        try:
            client.document(task["path"]).update(
                {"round": round_ + 1, "note": f"edit-{round_ + 1}"}
            )
        finally:
            client.close()  # type: ignore[no-untyped-call]
    return {
        "view": "applied",
        "key": task["docId"],
        "fields": {"invite": task["docId"], "note": data["note"]},
        "removed": False,
        "data": {"note": data["note"]},
    }
