"""Settling ``unknown`` by asking the provider, when the provider's search answers something
other than its documented shape: the search fails cleanly (the rows stay ``unknown``, the
report says why), it never crashes the send with a traceback."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from pipeline.delivery.providers.brevo import BrevoProvider
from pipeline.delivery.providers.http import HttpApi, SearchFailed
from pipeline.delivery.providers.mailgun import MailgunProvider
from pipeline.delivery.providers.postmark import PostmarkProvider
from pipeline.delivery.providers.sendgrid import SendGridProvider

ISSUE = "2025-07-21-hip-rotation"
MESSAGE = SimpleNamespace(
    key="ada@example.org", to_email="ada@example.org", issue=ISSUE, subject="Hip rotation"
)
GOOD_VARIABLES = {"issue": ISSUE, "newsletter_key": "ada@example.org"}

# Each provider: where it asks, and answers that are JSON but not the documented shape.
CASES: list[tuple[str, str, Any]] = [
    ("postmark", "/messages/outbound", {"Messages": [{"Subject": "Hip rotation", "Recipients": 5,
                                                      "MessageID": "m1"}]}),
    ("postmark", "/messages/outbound", {"Messages": [{"Subject": "Hip rotation",
                                                      "Recipients": [{"Email": "x"}],
                                                      "MessageID": "m1"}]}),
    ("mailgun", "/v3/mg.example/events", {"items": [{"user-variables": GOOD_VARIABLES,
                                                     "message": "not an object"}]}),
    ("mailgun", "/v3/mg.example/events", {"items": [{"user-variables": GOOD_VARIABLES,
                                                     "message": {"headers": ["x"]}}]}),
    ("mailgun", "/v3/mg.example/events", {"items": ["not an object", 5]}),
    ("brevo", "/v3/smtp/emails", {"transactionalEmails": [{"subject": "Hip rotation",
                                                           "tags": 5, "messageId": "b1"}]}),
    ("sendgrid", "/v3/messages", {"messages": "not a list"}),
    ("sendgrid", "/v3/messages", {"messages": [{"to_email": ["ada@example.org"],
                                                "subject": "Hip rotation", "msg_id": "s1"}]}),
    ("sendgrid", "/v3/messages", {"messages": [{"to_email": "ada@example.org",
                                                "subject": "Hip rotation", "msg_id": ""}]}),
]  # fmt: skip


def provider_for(name: str, url: str) -> Any:
    api = HttpApi(name, url, {})
    if name == "postmark":
        return PostmarkProvider(api, "broadcast", False)
    if name == "mailgun":
        return MailgunProvider(api, "mg.example")
    if name == "sendgrid":
        return SendGridProvider(api)
    return BrevoProvider(api)


@pytest.mark.parametrize(("name", "path", "answer"), CASES)
def test_a_malformed_search_answer_is_a_failed_search_not_a_crash_nor_a_resend(
    httpserver: HTTPServer, name: str, path: str, answer: Any
) -> None:
    """Not "not found" either: that would make the reader pending after the grace, and send
    them again although the provider may have accepted the message.  A search that cannot be
    read leaves the row unknown (asked again by the next run)."""
    httpserver.expect_request(path).respond_with_data(
        json.dumps(answer), content_type="application/json"
    )
    provider = provider_for(name, httpserver.url_for("").rstrip("/"))
    with pytest.raises(SearchFailed, match="answer has"):
        provider.find_accepted([MESSAGE])
