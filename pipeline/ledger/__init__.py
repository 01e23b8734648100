"""Ledger stage: SQLite in the state folder: who got what, when, with which provider id."""

from pipeline.ledger.lock import LockHeld, SendLock
from pipeline.ledger.store import Counts, IssueRecord, IssueStatus, Ledger, RecipientStatus

__all__ = [
    "Counts",
    "IssueRecord",
    "IssueStatus",
    "Ledger",
    "LockHeld",
    "RecipientStatus",
    "SendLock",
]
