"""onto's pytest plugin, loaded in every test session through the ``pytest11`` entry point.

Fixtures:

- ``onto_plugins_reset``: forgets loaded plugins and every in-process memory channel
  before and after the test, so component registrations and channel contents from one
  test never leak into another.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

__all__ = ["onto_plugins_reset"]


def _reset() -> None:
    # Imported on use: this module loads in every pytest session, onto's tests or not.
    from onto_core import plugins
    from onto_core.builtin import memory

    plugins.reset()
    memory.drop_channels()


@pytest.fixture
def onto_plugins_reset() -> Iterator[None]:
    """Start the test with no plugins loaded and no memory channels; clean up after it."""
    _reset()
    yield
    _reset()
