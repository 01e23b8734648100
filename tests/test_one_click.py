"""The one-click opt-out answered in front of Flask (pipeline/web/one_click.py).

Mail clients post RFC 8058's ``List-Unsubscribe=One-Click`` body; that request alone skips
Flask (issue 10: 200 at once must each be answered quickly).  It must be indistinguishable
from the Flask view's answer, record the same facts, and leave every other request to Flask.
"""

from __future__ import annotations

from pathlib import Path

import requests

from pipeline.ledger.consent import consent_history
from pipeline.messages.unsubscribe import make_token
from pipeline.sending import open_ledger

from .web_helpers import Served, rows_for, serve, with_signup

ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ADA = "ada.runner@example.org"


def flask_requests(served: Served) -> list[str]:
    """Count what reaches Flask: a before_request hook on the served app."""
    seen: list[str] = []

    @served.app.before_request
    def count() -> None:
        from flask import request

        seen.append(f"{request.method} {request.path}")

    return seen


def leave(
    served: Served, address: str, body: bytes = ONE_CLICK, **headers: str
) -> requests.Response:
    token = make_token(served.secret, address)
    return requests.post(
        f"{served.url}/unsubscribe?token={token}",
        data=body,
        headers={**FORM, **headers},
        timeout=10,
    )


def consent(served: Served, address: str) -> list[tuple[str, str | None, str | None]]:
    served.settle()
    ledger = open_ledger(served.settings)
    try:
        return [
            (f"{e.action.value}/{e.cause.value}", e.ip, e.user_agent)
            for e in consent_history(ledger.db, address)
        ]
    finally:
        ledger.close()


def test_a_mail_clients_one_click_is_recorded_without_reaching_flask(project: Path) -> None:
    with serve(with_signup(project)) as served:
        reached = flask_requests(served)
        answer = leave(served, ADA, **{"User-Agent": "GoogleImageProxy"})
        assert answer.status_code == 200 and "You are unsubscribed" in answer.text
        assert reached == []  # the fast path answered it
        assert consent(served, ADA) == [("unsubscribed/one-click", "127.0.0.1", "GoogleImageProxy")]
        assert rows_for(served.settings, ADA)[0]["status"] == "unsubscribed"


def test_its_answer_is_the_flask_views_answer(project: Path) -> None:
    """Same page, same safety headers: the reader pressing the button on our page (an extra
    field makes that request go through Flask) and Gmail's one-click see the same thing."""
    with serve(with_signup(project)) as served:
        reached = flask_requests(served)
        fast = leave(served, ADA)
        slow = leave(served, ADA, body=ONE_CLICK + b"&from=page")
        assert reached == ["POST /unsubscribe"]
        assert fast.status_code == slow.status_code == 200
        assert fast.content == slow.content
        assert "a***@example.org will get no more emails" in fast.text
        for name in (
            "Content-Type",
            "Cache-Control",
            "Referrer-Policy",
            "X-Content-Type-Options",
            "Content-Security-Policy",
        ):
            assert fast.headers[name] == slow.headers[name], name


def test_the_address_is_escaped_in_the_page(project: Path) -> None:
    with serve(with_signup(project)) as served:
        answer = leave(served, "<b>@example.org")
        assert answer.status_code == 200
        assert "&lt;***@example.org" in answer.text and "<b>" not in answer.text


def test_everything_else_goes_on_to_flask(project: Path) -> None:
    with serve(with_signup(project)) as served:
        reached = flask_requests(served)
        forged = make_token(b"another secret entirely, 32 bytes", ADA)
        bad = requests.post(
            f"{served.url}/unsubscribe?token={forged}", data=ONE_CLICK, headers=FORM, timeout=10
        )
        assert bad.status_code == 400 and "This link is not valid" in bad.text
        missing = requests.post(f"{served.url}/unsubscribe", data=ONE_CLICK, headers=FORM)
        assert missing.status_code == 400
        page = requests.get(f"{served.url}/unsubscribe?token={make_token(served.secret, ADA)}")
        assert page.status_code == 200 and '<form method="post"' in page.text
        other = leave(served, ADA, body=b"List-Unsubscribe=One-Clack")  # 26 bytes, not RFC 8058's
        assert other.status_code == 200  # the view takes any POST from the page's button
        assert reached == [
            "POST /unsubscribe",
            "POST /unsubscribe",
            "GET /unsubscribe",
            "POST /unsubscribe",
        ]
        assert [event[0] for event in consent(served, ADA)] == ["unsubscribed/one-click"]


def test_her_own_page_that_the_fast_path_cannot_fill_is_served_by_flask(project: Path) -> None:
    pages = project / "templates" / "web"
    pages.mkdir(parents=True, exist_ok=True)
    (pages / "unsubscribed.html").write_text("<p>Goodbye, {{ who|upper }}.</p>", encoding="utf-8")
    with serve(with_signup(project)) as served:
        reached = flask_requests(served)
        answer = leave(served, ADA)
        assert answer.status_code == 200 and answer.text == "<p>Goodbye, A***@EXAMPLE.ORG.</p>"
        assert reached == ["POST /unsubscribe"]
        assert consent(served, ADA)[0][0] == "unsubscribed/one-click"


def test_a_mistake_in_her_page_does_not_stop_the_server_or_the_opt_out(project: Path) -> None:
    pages = project / "templates" / "web"
    pages.mkdir(parents=True, exist_ok=True)
    (pages / "unsubscribed.html").write_text("<p>{% if who %}Goodbye</p>", encoding="utf-8")
    with serve(with_signup(project)) as served:
        answer = leave(served, ADA)
        # Recorded, then the page failed: Flask's plain error page, and a line in the log.
        assert answer.status_code == 500 and "Something went wrong" in answer.text
        assert consent(served, ADA)[0][0] == "unsubscribed/one-click"
        assert any(
            "unsubscribed.html" in line or "TemplateSyntaxError" in line for line in served.log
        )
