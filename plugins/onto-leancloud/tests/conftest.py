"""Fixtures: a fresh LeanCloud double per test, and the official SDK as a peer.

``leancloud_double``: a ``LeanCloudDouble`` (a local double of LeanCloud's REST API, not
LeanCloud) on 127.0.0.1, started for the test and stopped after it.
``sdk_peer``: the official ``leancloud`` SDK in a venv of its own (``sdk_peer.py``), made
once and kept in the pytest cache. Test modules import ``sdk_peer`` helpers directly.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdk_peer import SdkPeer

from onto_leancloud.double import LeanCloudDouble


@pytest.fixture
def leancloud_double() -> Iterator[LeanCloudDouble]:
    """A started double of LeanCloud's REST API, stopped after the test."""
    with LeanCloudDouble() as double:
        yield double


@pytest.fixture(scope="session")
def sdk_peer(request: pytest.FixtureRequest) -> SdkPeer:
    """The official ``leancloud`` SDK (3.0.2) in a venv of its own, under the pytest cache."""
    cache = Path(request.config.cache.mkdir("leancloud-sdk-peer"))
    return SdkPeer.create(cache)
