"""Settle ``unknown`` recipients by asking the provider, before anything is re-sent.

A batch in flight at a kill, or one whose answer was lost, leaves its recipients ``unknown``:
the provider may or may not have accepted them.  A provider that can search what it accepted
(``Searching``: Postmark, Mailgun, SendGrid where the account has its Email Activity add-on,
and Brevo once its idempotency key has expired) is asked about them:

- found -> ``sent``, with the provider's message id: never sent twice;
- not found, and the batch was handed over more than ``search_grace`` seconds ago (searches
  lag a little behind sending) -> ``pending``: this run sends it;
- not found yet -> left ``unknown``, asked again by the next run (cron's);
- the search itself failing -> left ``unknown``, said in the report (and, when the account
  cannot search at all, left for the operator to look up).

Only rows in batches that same provider was handed are asked about (after a switch of
provider, the old one's stay for ``--resend-unknown``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta

from pipeline.delivery.provider import Provider, Searching
from pipeline.delivery.providers.http import SearchFailed, SearchUnavailable
from pipeline.ledger.settle import settle_asked, unknown_rows
from pipeline.ledger.store import Ledger
from pipeline.messages.compose import MessageFactory

PAGE = 200  # rows asked about, then recorded, at a time


@dataclass
class Asked:
    found: int = 0  # accepted after all: now sent
    resent: int = 0  # never accepted: pending, sent by this run
    waiting: int = 0  # not found yet, too soon to say: still unknown
    too_old: int = 0  # older than the search remembers: unknown, for the operator
    problem: str | None = None  # the search could not be asked
    unavailable: bool = False  # ... and never will be on this account: for the operator


def ask_provider(ledger: Ledger, slug: str, provider: Provider, factory: MessageFactory) -> Asked:
    asked = Asked()
    if not isinstance(provider, Searching):
        return asked
    now = ledger.clock().astimezone(UTC)
    deadline = now - timedelta(seconds=provider.search_grace)
    too_young = now - timedelta(seconds=provider.search_after)
    keeps = provider.search_keeps
    forgotten = now - timedelta(seconds=keeps) if keeps is not None else None
    after = 0
    while True:
        rows = unknown_rows(ledger, slug, provider.name, after, PAGE)
        if not rows:
            return asked
        after = rows[-1].rowid
        rows = [r for r in rows if r.handed_over <= too_young]  # the rest: replayed by key
        if forgotten is not None:
            # Not found could mean forgotten: those stay unknown, for the operator.
            asked.too_old += sum(1 for r in rows if r.handed_over < forgotten)
            rows = [r for r in rows if r.handed_over >= forgotten]
        if not rows:
            continue
        messages = [factory.build(r.key, r.email, r.fields) for r in rows]
        try:
            found = provider.find_accepted(messages)
        except SearchFailed as exc:
            asked.problem = str(exc)
            asked.unavailable = isinstance(exc, SearchUnavailable)
            return asked
        not_there = [r.key for r in rows if r.key not in found and r.handed_over <= deadline]
        settle_asked(ledger, slug, found, not_there, provider.name)
        asked.found += len(found)
        asked.resent += len(not_there)
        asked.waiting += len(rows) - len(found) - len(not_there)
