"""The baseline for bench/audience.py: the list pass written the obvious way.

csv.DictReader, then email-validator's ``validate_email`` on every row, a set for the
addresses seen, counts by status: what a list check costs without caching each domain's
verdict (and without keeping memory flat).
Usage: baseline_check.py LIST.csv
"""

from __future__ import annotations

import csv
import sys
from collections import Counter

from email_validator import EmailNotValidError, validate_email


def main() -> None:
    seen: set[str] = set()
    counts: Counter[str] = Counter()
    with open(sys.argv[1], newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                email = validate_email(row["email"], check_deliverability=False).normalized
            except EmailNotValidError:
                counts["invalid"] += 1
                continue
            key = email.lower()
            if key in seen:
                counts["duplicate"] += 1
                continue
            seen.add(key)
            counts[(row.get("status") or "subscribed").strip().lower()] += 1
    print(dict(counts))


if __name__ == "__main__":
    main()
