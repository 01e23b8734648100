"""The routes: parse the request, call ``Subscriptions``, render a page.  Nothing else.

Paths are fixed: the emails and the web archive link to them.
- ``GET /subscribe`` the form; ``POST /subscribe`` takes it (also posted from another site).
- ``GET /confirm?token=`` shows a Confirm button; only ``POST /confirm`` (the button) confirms:
  link scanners (Outlook Safe Links, Gmail) open every link in mail.
- ``GET /unsubscribe?token=`` shows a button; ``POST`` unsubscribes at once (RFC 8058
  one-click: a mail client posts ``List-Unsubscribe=One-Click`` with nobody on the page).
- ``GET /healthz`` for the proxy and monitoring.
No answer says whether an address is on the list.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from pipeline.errors import InputError, NewsletterError
from pipeline.messages.unsubscribe import read_token
from pipeline.web.app import subscriptions_of
from pipeline.web.one_click import PLACEHOLDER, OneClickPages
from pipeline.web.subscriptions import (
    NOT_RECORDED,
    Answer,
    Confirmation,
    SignupForm,
    Visitor,
    mask,
    not_recorded_line,
)
from pipeline.web.tokens import SignupRequest
from pipeline.web_edition.urls import signup_url

public = Blueprint("public", __name__)

# No scripts on any page; forms post only here; never inside another site's frame.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _visitor(page: str | None = None) -> Visitor:
    return Visitor(
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
        page=page,
    )


def _page(template: str, status: int = 200, **context: object) -> tuple[str, int]:
    return render_template(template, **context), status


def _message(
    title: str, text: str, status: int, link: str = "", link_text: str = ""
) -> tuple[str, int]:
    return _page("message.html", status, title=title, text=text, link=link, link_text=link_text)


def _sign_up_again(title: str, text: str) -> tuple[str, int]:
    """A confirmation page that asks her to sign up again links to the signup page (her own
    site's, if ``[signup] url`` names one), rather than leave her to find it."""
    settings = subscriptions_of(current_app).settings
    return _message(title, text, 400, signup_url(settings), "Sign up again")


# Pages carry tokens in their URLs: never cached, never sent on as a Referer.
SAFE_HEADERS = [
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
]


@public.after_app_request
def _safe_headers(response: Response) -> Response:
    for name, value in SAFE_HEADERS:
        response.headers[name] = value
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = CSP
    return response


@public.app_errorhandler(HTTPException)
def _http_error(error: HTTPException) -> tuple[str, int] | HTTPException:
    code = error.code or 500
    titles = {
        400: ("This request was not understood", "Please go back and try again."),
        404: ("Page not found", "There is nothing at this address."),
        405: ("Not allowed", "This page cannot be used that way."),
        413: ("Too much data", "That was more than a signup form sends."),
    }
    title, text = titles.get(code, ("Something went wrong", "Please try again later."))
    return _message(title, text, code)


@public.app_errorhandler(Exception)
def _unexpected(error: Exception) -> tuple[str, int] | HTTPException:
    """A bug or a fault nobody foresaw: one line in the log, a plain page for the visitor
    (never a traceback, never an internal detail)."""
    if isinstance(error, HTTPException):
        return _http_error(error)
    subscriptions_of(current_app).log(
        f"error answering {request.method} {request.path}: {type(error).__name__}: {error}"
    )
    return _message("Something went wrong", "Please try again in a little while.", 500)


@public.get("/healthz")
def healthz() -> tuple[Response, int]:
    subscriptions = subscriptions_of(current_app)
    try:
        queued = (
            subscriptions.db()
            .execute("SELECT count(*) FROM list_changes WHERE applied_at IS NULL")
            .fetchone()[0]
        )
        readable = subscriptions.settings.subscribers.is_file()
    except Exception as exc:  # the point of a health check: say it, do not crash
        # The detail (paths, the database's words) goes to the log: /healthz is public.
        subscriptions.log(f"health check failed: {type(exc).__name__}: {exc}")
        return jsonify(
            status="error", problem=f"the ledger cannot be read ({type(exc).__name__})"
        ), 503
    if not readable:
        return jsonify(status="error", problem="subscriber list not found"), 503
    if subscriptions.ledger_problem:
        # Readable, but not taking opt-outs (a full disk): each is answered 503 meanwhile.
        return jsonify(status="error", problem=subscriptions.ledger_problem, queued=queued), 503
    if subscriptions.list_problem:
        # Opt-outs are safe in the queue, but the list is not taking them: someone must look.
        return jsonify(status="error", problem=subscriptions.list_problem, queued=queued), 503
    return jsonify(status="ok", queued=int(queued)), 200


# Joining ------------------------------------------------------------------------------


@public.get("/subscribe")
def subscribe_form() -> tuple[str, int]:
    subscriptions = subscriptions_of(current_app)
    return _page(
        "subscribe.html",
        tags=subscriptions.signup.tags,
        stamp=subscriptions.signer.form_stamp(),
        source=request.url,
        form={},
        problem="",
    )


@public.post("/subscribe")
def subscribe() -> tuple[str, int] | Response:
    subscriptions = subscriptions_of(current_app)
    fields = request.form
    form = SignupForm(
        email=fields.get("email", "")[:320],
        first_name=fields.get("first_name", ""),
        tags=tuple(fields.getlist("tags")),
        honeypot=fields.get("website", ""),
        stamp=fields.get("stamp") or None,
        elapsed=fields.get("elapsed") or None,
    )
    page = fields.get("source") or request.headers.get("Referer")
    answer = subscriptions.request_signup(form, _visitor(page))
    if answer.answer is Answer.TOO_MANY:
        body, status = _message(
            "Too many tries",
            "Please wait a little and try again. If you signed up already, check your inbox.",
            429,
        )
        response = Response(body, status, mimetype="text/html")
        response.headers["Retry-After"] = str(answer.retry_after)
        return response
    if answer.answer is Answer.BAD_ADDRESS:
        return _page(
            "subscribe.html",
            400,
            tags=subscriptions.signup.tags,
            stamp=subscriptions.signer.form_stamp(),
            source=page or "",
            form={"email": form.email, "first_name": form.first_name, "tags": form.tags},
            problem=f"That email address does not look right: {answer.problem}",
        )
    return _page("check_inbox.html")


@public.get("/confirm")
def confirm_page() -> tuple[str, int]:
    token = request.args.get("token", "")
    found = subscriptions_of(current_app).read_confirmation(token)
    if not isinstance(found, SignupRequest):
        return _invalid_confirmation(Confirmation(found.value))
    return _page("confirm.html", token=token, who=mask(found.email))


@public.post("/confirm")
def confirm() -> tuple[str, int]:
    token = request.form.get("token") or request.args.get("token", "")
    subscriptions = subscriptions_of(current_app)
    try:
        outcome, who = subscriptions.confirm(token, _visitor(request.base_url))
    except (NewsletterError, OSError, sqlite3.Error) as exc:
        message = exc.location_message() if isinstance(exc, InputError) else str(exc)
        subscriptions.log(f"confirmation NOT recorded: {message}")
        return _message(
            "We could not record that just now",
            "Nothing was changed. Please press the button in the email again in a little while.",
            503,
        )
    if outcome in (Confirmation.CONFIRMED, Confirmation.ALREADY):
        return _page("confirmed.html", who=who)
    return _invalid_confirmation(outcome)


def _invalid_confirmation(outcome: Confirmation) -> tuple[str, int]:
    if outcome is Confirmation.EXPIRED:
        return _sign_up_again(
            "This link has expired",
            "Confirmation links work for a limited time. Please sign up again: it takes a moment.",
        )
    if outcome is Confirmation.STALE:
        return _sign_up_again(
            "This link is out of date",
            "This address left the list after the link was sent. To come back, please sign up "
            "again and confirm with the new email.",
        )
    return _sign_up_again(
        "This link is not valid",
        "It may have been cut short by your mail program. Please copy the whole link from the "
        "email, or sign up again.",
    )


# Leaving ------------------------------------------------------------------------------


def _unsubscribe_key() -> str | None:
    token = request.args.get("token", "")
    secret = subscriptions_of(current_app).mailer.secret
    return read_token(secret, token) if token else None


def _invalid_unsubscribe() -> tuple[str, int]:
    return _message(
        "This link is not valid",
        "It may have been cut short by your mail program. Reply to any issue with "
        "“unsubscribe” and we will take you off the list.",
        400,
    )


@public.get("/unsubscribe")
def unsubscribe_page() -> tuple[str, int]:
    key = _unsubscribe_key()
    if key is None:
        return _invalid_unsubscribe()
    return _page("unsubscribe.html", token=request.args.get("token", ""), who=mask(key))


@public.post("/unsubscribe")
def unsubscribe() -> tuple[str, int]:
    key = _unsubscribe_key()
    if key is None:
        return _invalid_unsubscribe()
    try:
        subscriptions_of(current_app).unsubscribe(key, _visitor())
    except NOT_RECORDED as exc:
        # Not recorded: say so (a mail client retries a 5xx), and ask for mail instead.
        subscriptions_of(current_app).log(not_recorded_line(key, exc))
        return _not_recorded()
    return _unsubscribed(key)


def _unsubscribed(key: str) -> tuple[str, int]:
    return _page("unsubscribed.html", who=mask(key))


def _not_recorded() -> tuple[str, int]:
    return _message(
        "We could not record that just now",
        "Nothing was changed. Please try the link again later, or reply to any issue "
        "with “unsubscribe” and we will take you off the list.",
        503,
    )


# Two requests as unlike each other as they can be, and two addresses unlike the placeholder:
# a page that answers them alike, but for the address, can be served from bytes rendered once.
# Not a different path prefix (SCRIPT_NAME): it is fixed for a deployment, and her footer's
# ``url_for('public.subscribe_form')`` must keep the fast path.
_SAMPLE_REQUESTS: list[dict[str, Any]] = [
    {"base_url": "http://localhost", "environ_base": {"REMOTE_ADDR": "127.0.0.1"}},
    {
        "base_url": "https://b.example.net:8443",
        "query_string": "token=Zm9v.YmFy&from=sample",
        "headers": {"User-Agent": "sample", "Accept-Language": "de"},
        "environ_base": {"REMOTE_ADDR": "198.51.100.7"},
    },
]
_SAMPLE_WHO = ("a***@example.org", "<'&\">***@xn--bcher-kva.example")


def one_click_pages(app: Flask) -> OneClickPages:
    """The one-click answers of ``web.one_click``, rendered as this view renders them.

    Rendered once with a placeholder for the address, and checked against the page the view
    renders for other requests and other addresses: her own page may use the address in a
    way a placeholder cannot stand for (``{{ who|upper }}`` beside ``{{ who }}``) or show
    something of the request (``{{ request.url }}``); such a page is left to Flask."""
    try:
        with app.test_request_context("/unsubscribe", method="POST", **_SAMPLE_REQUESTS[0]):
            done, _ = _page("unsubscribed.html", who=PLACEHOLDER)
            failed, _ = _not_recorded()
        pages = OneClickPages(done, failed, [*SAFE_HEADERS, ("Content-Security-Policy", CSP)])
        for sample, who in zip(_SAMPLE_REQUESTS[::-1], _SAMPLE_WHO, strict=True):
            with app.test_request_context("/unsubscribe", method="POST", **sample):
                other_done, _ = _page("unsubscribed.html", who=who)
                other_failed, _ = _not_recorded()
            if pages.done(who) != other_done.encode() or pages.failed != other_failed.encode():
                return OneClickPages("", "", [])
    except Exception:  # whatever her page raises, the server must start
        # Her own page has a mistake (a syntax error, ``{{ 1/0 }}``, ``url_for`` of no page):
        # Flask answers every opt-out, and its log line says where the mistake is.
        return OneClickPages("", "", [])
    return pages
