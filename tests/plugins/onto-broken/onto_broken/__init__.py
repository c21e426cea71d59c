"""An onto plugin whose import fails, as one with a missing dependency would."""

from __future__ import annotations

raise ImportError("onto_broken needs the 'frobnicate' package, which is not installed")
