"""The way back: provider events (webhooks, suppression lists) -> one vocabulary -> the ledger
and the list.

Each provider's own part (its signature check, its payload, its suppression API) lives beside
its sender in ``pipeline/delivery/providers/<name>_events.py``; this package holds what they
share: the event type, the verification helpers, storing an event once and applying it.
"""
