"""Waiting for what a test expects, with a timeout and no fixed sleep before looking."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_for(check: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    """``check()``'s first true result, polled every 50 ms; the test fails naming ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return result
