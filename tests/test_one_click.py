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

from .web_helpers import Served, confirm_link, outbox_mail, rows_for, serve, with_signup

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


def her_page(project: Path, text: str) -> None:
    pages = project / "templates" / "web"
    pages.mkdir(parents=True, exist_ok=True)
    (pages / "unsubscribed.html").write_text(text, encoding="utf-8")


def fast_and_flask(served: Served, address: str = ADA) -> tuple[requests.Response, ...]:
    """The same opt-out twice: as a mail client posts it, and with one more field (Flask)."""
    return leave(served, address), leave(served, address, body=ONE_CLICK + b"&from=page")


def test_her_page_using_the_address_in_two_ways_is_the_views_page(project: Path) -> None:
    """``{{ who }}`` once beside ``{{ who|upper }}``: the placeholder was found once, and the
    upper-cased one went out as it was (NULs and ``%00who%00`` in the reader's page)."""
    her_page(project, "<p>{{ who }} / {{ who|upper }} / {{ who|urlencode }}</p>")
    with serve(with_signup(project)) as served:
        fast, flask = fast_and_flask(served)
        assert fast.status_code == flask.status_code == 200
        assert fast.text == "<p>a***@example.org / A***@EXAMPLE.ORG / a%2A%2A%2A%40example.org</p>"
        assert fast.content == flask.content


def test_her_page_showing_the_request_is_the_views_page(project: Path) -> None:
    """A page rendered once at start showed every reader the start's request: a made-up
    host and no address, where the view shows the real ones."""
    her_page(
        project,
        "<p>{{ who }} at {{ url_for('public.unsubscribe', _external=True) }}"
        " from {{ request.remote_addr }}</p>",
    )
    with serve(with_signup(project)) as served:
        fast, flask = fast_and_flask(served)
        assert fast.status_code == 200
        assert fast.text == f"<p>a***@example.org at {served.url}/unsubscribe from 127.0.0.1</p>"
        assert fast.content == flask.content


def test_an_address_is_escaped_as_the_view_escapes_it(project: Path) -> None:
    with serve(with_signup(project)) as served:
        fast, flask = fast_and_flask(served, "'quoted@example.org")
        assert fast.status_code == flask.status_code == 200
        assert "&#39;***@example.org" in fast.text
        assert fast.content == flask.content


def test_her_page_that_fails_when_shown_does_not_stop_the_server(project: Path) -> None:
    """Not a syntax error but one at rendering (``{{ 1/0 }}``): rendered at start for the
    fast path, it stopped ``serve`` with a traceback; the view answers it, as before."""
    her_page(project, "<p>{{ who }} {{ 1/0 }}</p>")
    with serve(with_signup(project)) as served:
        answer = leave(served, ADA)
        assert answer.status_code == 500 and "Something went wrong" in answer.text
        assert consent(served, ADA)[0][0] == "unsubscribed/one-click"
        assert any("ZeroDivisionError" in line for line in served.log)


def test_the_token_is_read_as_the_view_reads_it(project: Path) -> None:
    """``?token=&token=<valid>``: the view reads the first (empty) value and refuses; the
    fast path read the second and unsubscribed."""
    with serve(with_signup(project)) as served:
        token = make_token(served.secret, ADA)
        for body in (ONE_CLICK, ONE_CLICK + b"&from=page"):
            answer = requests.post(
                f"{served.url}/unsubscribe?token=&token={token}", data=body, headers=FORM
            )
            assert answer.status_code == 400 and "This link is not valid" in answer.text
        # Percent-encoded, the token is the same token for both.
        encoded = token.replace(".", "%2E")
        answer = requests.post(f"{served.url}/unsubscribe?%74oken={encoded}", data=ONE_CLICK)
        assert answer.status_code == 200
        assert [event[0] for event in consent(served, ADA)] == ["unsubscribed/one-click"]


def test_a_ledger_that_cannot_be_opened_fails_those_opt_outs_only(project: Path) -> None:
    """The ledger's writer thread opened it at the first opt-out; when that failed (here a
    folder in its place; a full disk does the same) the thread died, and every opt-out after
    it waited 30 s for nobody and was refused, long after the ledger was back."""
    with serve(with_signup(project)) as served:
        ledger = served.settings.state_dir / "ledger.sqlite3"
        ledger.mkdir(parents=True)
        for body in (ONE_CLICK, ONE_CLICK + b"&from=page"):  # the fast path, then Flask
            refused = leave(served, ADA, body=body)
            assert refused.status_code == 503, body
            assert "We could not record that just now" in refused.text
        assert "opt-out NOT recorded" in served.log[-1] and "ledger.sqlite3" in served.log[-1]
        ledger.rmdir()
        answer = leave(served, ADA)
        assert answer.status_code == 200 and "You are unsubscribed" in answer.text
        assert [event[0] for event in consent(served, ADA)] == ["unsubscribed/one-click"]


def queued(served: Served) -> int:
    ledger = open_ledger(served.settings)
    try:
        return int(ledger.db.execute("SELECT count(*) FROM list_changes").fetchone()[0])
    finally:
        ledger.close()


def test_the_same_opt_out_again_adds_nothing_to_the_ledger(project: Path) -> None:
    """A reader's own link posted in a loop (or a mail client retrying) added a queued change
    and a history row each time: 330 bytes a post, some 900 MB of ledger an hour from one
    client.  Each press is answered as before; the ledger keeps the first."""
    with serve(with_signup(project)) as served:
        for body in (ONE_CLICK, ONE_CLICK, ONE_CLICK + b"&from=page", ONE_CLICK):
            answer = leave(served, ADA, body=body, **{"User-Agent": "again"})
            assert answer.status_code == 200 and "You are unsubscribed" in answer.text
        assert queued(served) == 1
        assert consent(served, ADA) == [("unsubscribed/one-click", "127.0.0.1", "again")]
        assert rows_for(served.settings, ADA)[0]["status"] == "unsubscribed"


def test_leaving_again_after_coming_back_is_recorded(project: Path) -> None:
    with serve(with_signup(project)) as served:
        assert leave(served, ADA).status_code == 200
        joined = requests.post(f"{served.url}/subscribe", data={"email": ADA}, timeout=10)
        assert joined.status_code == 200
        served.subscriptions.drain()
        (mail,) = outbox_mail(served.settings, "confirmation")
        token = confirm_link(mail, served.settings, served.url).split("token=")[1]
        confirmed = requests.post(f"{served.url}/confirm", data={"token": token}, timeout=10)
        assert confirmed.status_code == 200
        assert leave(served, ADA).status_code == 200
        assert leave(served, ADA).status_code == 200  # the same press again: nothing more
        assert [event[0] for event in consent(served, ADA)] == [
            "unsubscribed/one-click",
            "signup_requested/form",
            "resubscribed/form",
            "unsubscribed/one-click",
        ]
        assert rows_for(served.settings, ADA)[0]["status"] == "unsubscribed"


def test_healthz_says_so_while_opt_outs_cannot_be_recorded(project: Path) -> None:
    """On a full disk every opt-out was a 503 while /healthz, which only reads, said "ok":
    the monitor stayed green and nobody looked.  (Here the ledger's writer cannot open it:
    a folder stands in its place.  The server's reading connection opens the ledger there
    is now too, so /healthz may say either that it cannot be read or what the last opt-out
    met: both are 503.)"""
    with serve(with_signup(project), threads=1) as served:
        assert requests.get(f"{served.url}/healthz", timeout=10).json()["status"] == "ok"
        ledger = served.settings.state_dir / "ledger.sqlite3"
        ledger.rename(ledger.with_name("kept"))
        ledger.mkdir()
        assert leave(served, ADA).status_code == 503
        health = requests.get(f"{served.url}/healthz", timeout=10)
        assert health.status_code == 503
        assert health.json()["problem"] in (
            "the last opt-out could not be recorded in the ledger "
            "(LedgerError: the server's log says why)",
            "the ledger cannot be read (LedgerError)",
        )
        assert str(served.settings.state_dir) not in health.text  # public: no folders
        ledger.rmdir()
        ledger.with_name("kept").rename(ledger)
        assert leave(served, ADA).status_code == 200
        health = requests.get(f"{served.url}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"


def test_a_forwarded_for_header_is_not_believed_without_a_trusted_proxy(project: Path) -> None:
    """Without ``--proxies``, anyone can send X-Forwarded-For: the consent history keeps the
    socket's peer, on the fast path as in the view."""
    with serve(with_signup(project)) as served:
        spoofed = {"X-Forwarded-For": "203.0.113.66", "X-Real-IP": "203.0.113.67"}
        assert leave(served, ADA, **spoofed).status_code == 200
        other = "ben.lifter@example.org"
        assert leave(served, other, body=ONE_CLICK + b"&from=page", **spoofed).status_code == 200
        assert consent(served, ADA)[0][1] == consent(served, other)[0][1] == "127.0.0.1"


def test_her_page_linking_to_the_signup_page_keeps_the_fast_path(project: Path) -> None:
    her_page(
        project,
        "<p>{{ who }} left. <a href=\"{{ url_for('public.subscribe_form') }}\">Join</a></p>",
    )
    with serve(with_signup(project)) as served:
        reached = flask_requests(served)
        fast = leave(served, ADA)
        assert fast.text == '<p>a***@example.org left. <a href="/subscribe">Join</a></p>'
        assert reached == []
