"""Apply an opt-out to subscribers.csv: one status change through the list's one writer.

Kept for the callers that predate ``list_writer.apply_changes`` (the unsubscribe server, the
``unsubscribe`` command); the locking, atomic rename and byte-for-byte copy live there.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.audience.list_writer import ListChange, apply_changes


def set_status(path: Path, key: str, status: str) -> int:
    """Set ``status`` on every row of this address; returns how many rows changed."""
    return apply_changes(path, [ListChange(key, status=status)]).changed
