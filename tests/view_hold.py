"""A ``map`` function that holds messages while a file exists: changes stay unacked.

Used by the restart tests to kill ``onto run`` while view updates are computed but not
yet delivered. ``ONTO_TEST_HOLD`` names the file; while it exists, ``hold`` touches
``<file>.held`` (so the test knows a message is held) and waits.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def hold(value: Any) -> Any:
    gate = Path(os.environ["ONTO_TEST_HOLD"])
    if gate.exists():
        Path(f"{gate}.held").touch()
        while gate.exists():
            time.sleep(0.01)
    return value
