"""Placeholder: replaced by the change-feed source."""

from __future__ import annotations


class ChangesSource:
    """Change-feed source (being written)."""
