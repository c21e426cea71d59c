"""Placeholder: replaced by the sqlite datastore."""

from __future__ import annotations


class SqliteDatastore:
    """Embedded sqlite datastore (being written)."""
