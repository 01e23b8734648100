"""The one subscriber a preview, a build or a check is rendered for."""

from __future__ import annotations

from pipeline.audience.csv_source import check_file, read_rows
from pipeline.audience.list_writer import remove_leftovers
from pipeline.config import Settings

PLACEHOLDER_SUBSCRIBER = {
    "email": "reader@example.org",
    "first_name": "Reader",
    "last_name": "Example",
    "status": "subscribed",
    "tags": "",
}


def sample_subscriber(settings: Settings) -> dict[str, str]:
    """The first subscribed row of the list, or placeholder values when there is none."""
    if settings.subscribers.is_file():
        # The whole file, not only its first rows: a list that `send` would refuse (a bad byte
        # on row 3,002) is refused here too, with the same line, before anything is built.
        check_file(settings.subscribers)
        remove_leftovers(settings.subscribers)
        for row in read_rows(settings.subscribers):
            if row.values.get("status", "").lower() in ("", "subscribed"):
                return row.values
    return dict(PLACEHOLDER_SUBSCRIBER)
