"""The ``static`` shard coordinator: a fixed set of shards, for one worker or a hand-made split."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from onto_core.errors import ComponentError
from onto_core.protocols import RuntimeContext

__all__ = ["StaticCoordinator"]


class StaticCoordinator:
    """Owns a fixed set of shards (every shard by default); ownership never moves.

    Right for one worker, which is the default. Several workers may split the shards by
    hand (``owned: [0, 1]`` in one, ``owned: [2, 3]`` in the other), but nothing then
    moves the shards of a worker that stops: use a coordinator that follows the workers
    (``kafka``) for that.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        owned: list[int] | None = Field(
            None, description="Shards this worker owns (0 .. shards-1); null: every shard."
        )

    def __init__(self, config: Config) -> None:
        self.config = config
        self._owned: frozenset[int] | None = None

    def start(self, ctx: RuntimeContext, shards: int, on_change: Callable[[], None]) -> None:
        owned = range(shards) if self.config.owned is None else self.config.owned
        outside = sorted(s for s in owned if not 0 <= s < shards)
        if outside:
            raise ComponentError.at(
                ctx, f"owned shards {outside} are outside 0..{shards - 1} (shards: {shards})"
            )
        self._owned = frozenset(owned)

    def owned(self) -> frozenset[int] | None:
        return self._owned

    def close(self) -> None:
        self._owned = None
