"""A set of addresses kept on disk, so de-duplicating a million-row list keeps memory flat."""

from __future__ import annotations

import sqlite3


class AddressSet:
    """``add`` returns False for an address already in the set.  Lives in a private temp file."""

    def __init__(self) -> None:
        # "" opens a private, temporary, on-disk SQLite database, deleted on close.
        self._db = sqlite3.connect("")
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY) WITHOUT ROWID")
        self._size = 0

    def add(self, key: str) -> bool:
        added = self._db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (key,)).rowcount == 1
        self._size += added
        return added

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM seen WHERE key = ?", (key,)).fetchone() is not None

    def close(self) -> None:
        self._db.close()
