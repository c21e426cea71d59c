"""The memory datastore passes the datastore conformance suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from onto_core.builtin.memory_datastore import MemoryDatastore
from onto_core.testing import DatastoreConformance


class TestMemoryDatastore(DatastoreConformance):
    @pytest.fixture
    def datastore_factory(self) -> Iterator[MemoryDatastore]:
        store = MemoryDatastore()
        store.open()
        yield store
        store.close()
