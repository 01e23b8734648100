"""What every HTTP API provider shares: one ``requests`` session, timeouts, a user agent, and
the answer to "could this request have been delivered?" when no response came back.

A request that never reached the server (refused connection, connect timeout, DNS) is safe
to retry.  One that reached it but got no answer (read timeout, connection reset) may have
been processed: its recipients are ``unknown``, never blindly re-sent.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

from pipeline import __version__
from pipeline.delivery.provider import BatchResult, Options, Outcome
from pipeline.messages.compose import Message
from pipeline.messages.headers import split_mailbox

USER_AGENT = f"newsletter-pipeline/{__version__} (+requests)"


def json_bytes(value: Any) -> bytes:
    """``value`` as JSON (UTF-8, which every provider's API reads): orjson, or, for a text
    with a lone surrogate, which UTF-8 cannot hold, ``json.dumps``'s ASCII escapes."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value).encode("ascii")


@dataclass(frozen=True)
class NoAnswer:
    never_sent: bool  # True: certainly not delivered, retry; False: unknown
    reason: str


# Refused by requests while it prepared the request, before any connection: nothing left.
_REFUSED_BEFORE_SENDING = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


def _never_sent(error: requests.RequestException) -> bool:
    if isinstance(error, (requests.ConnectTimeout, *_REFUSED_BEFORE_SENDING)):
        return True
    if isinstance(error, requests.ConnectionError):
        cause: Any = error.args[0] if error.args else None
        reason = getattr(cause, "reason", cause)
        return isinstance(reason, (NewConnectionError, NameResolutionError))
    return False


def plain(error: requests.RequestException) -> str:
    """What went wrong, in words: the exception's class name ("ConnectionError") means
    nothing to the person reading the report."""
    if isinstance(error, requests.ConnectTimeout):
        return "no connection within the time allowed"
    if isinstance(error, requests.Timeout):
        return "no answer within the time allowed"
    if isinstance(error, requests.exceptions.SSLError):
        return "the secure connection failed"
    if isinstance(error, requests.ConnectionError):
        return "the connection failed or was refused: check the internet connection"
    if isinstance(error, _REFUSED_BEFORE_SENDING):
        return "the request could not be made: check [provider] base_url and the key"
    return "the request failed"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After``: seconds, or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return None if math.isnan(seconds) else max(0.0, seconds)  # inf: the retry's cap
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        # An HTTP-date is always GMT, and the asctime format (which a recipient must accept)
        # writes no zone: without one, comparing it with now raised, and the 429 became
        # "the provider failed", its batch unknown and the send stopped.
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def _header_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request  # the credentials are in the session's headers already


class HttpApi:
    def __init__(
        self,
        provider: str,
        base_url: str,
        headers: dict[str, str],
        *,
        connect_timeout: float = 10,
        read_timeout: float = 60,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, **headers})
        # Every API here takes its key in a header of ours (Mailgun's basic auth replaces
        # this): without an auth of its own, requests reads ~/.netrc again for every request,
        # 4 ms a call, and SES makes one call a message.
        self.session.auth = _header_auth
        # Enough pooled connections for every batch that may be in flight at once.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def post(self, path: str, **kwargs: Any) -> requests.Response | NoAnswer:
        try:
            return self.session.post(self.base_url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            never_sent = _never_sent(error)
            what = "could not reach" if never_sent else "got no answer from"
            return NoAnswer(never_sent, f"{what} {self.provider} ({plain(error)})")

    def get(self, path: str, params: dict[str, Any]) -> Any:
        """A read (a search): the JSON answer, or SearchFailed naming what went wrong."""
        try:
            answer = self.session.get(self.base_url + path, params=params, timeout=self.timeout)
        except requests.RequestException as error:
            raise SearchFailed(f"could not ask {self.provider} ({plain(error)})") from None
        if answer.status_code != 200:
            raise SearchFailed(
                f"{self.provider} refused the search (HTTP {answer.status_code}:"
                f" {error_text(answer)})"
            )
        found = json_body(answer)
        if found is None:
            raise SearchFailed(f"{self.provider} answered the search without JSON")
        return found

    def close(self) -> None:
        self.session.close()


class SearchFailed(Exception):
    """A provider's search could not be asked: what it would have settled stays unknown."""


class SearchUnavailable(SearchFailed):
    """The account cannot search at all (SendGrid without its Email Activity add-on): asking
    again will not help, so the operator is told to look the rows up."""


def error_text(response: requests.Response, limit: int = 300) -> str:
    """The response body, shortened, for an error message (never the request: it has secrets)."""
    body = " ".join(response.text.split())
    return body[:limit] + ("..." if len(body) > limit else "")


def reset_seconds(
    response: requests.Response,
    header: str,
    *,
    epoch: bool = False,
    now: float | None = None,
) -> float | None:
    """How long a 429 says to wait: ``Retry-After`` first, else the provider's own reset
    header, which counts seconds from now or (``epoch``) is a Unix time."""
    after = retry_after_seconds(response.headers.get("Retry-After"))
    if after is not None:
        return after
    value = response.headers.get(header, "").strip()
    try:
        number = float(value)
    except ValueError:
        return None
    if math.isnan(number):
        return None
    if epoch:
        number -= now if now is not None else time.time()
    return max(0.0, number)


def json_body(response: requests.Response) -> Any:
    """The response's JSON, or None when it has none (an error page, an empty 202)."""
    try:
        return response.json()
    except ValueError:
        return None


def http_options(default_url: str, note: str = "", timeout: int = 60) -> dict[str, str]:
    """The settings every HTTP provider takes (regions, testing, patience)."""
    return {
        "base_url": f"the API (default {default_url}{note})",
        "timeout": f"seconds to wait for an answer (default {timeout})",
    }


def api_url(options: Options, default: str) -> str:
    """``base_url``: an http(s) address with a host and a valid port, refused with its
    setting named before a send starts (a port of 99999 was refused by requests mid-send,
    and every reader of the batch became "unknown")."""
    url = options.string("base_url", default).strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or url.split() != [url]
    ):
        raise options.error(
            "base_url", f"must be an http:// or https:// address with a host, not {url!r}"
        )
    return url


def api_from(
    options: Options,
    provider: str,
    default_url: str,
    headers: dict[str, str],
    timeout: float = 60,
) -> HttpApi:
    return HttpApi(
        provider,
        api_url(options, default_url),
        headers,
        read_timeout=options.number("timeout", timeout, minimum=1),
    )


def unanswered(messages: Sequence[Message], answer: NoAnswer) -> BatchResult:
    """A batch whose request got no response: retry if it never left, else unknown."""
    return BatchResult.all(
        messages, Outcome.RETRY if answer.never_sent else Outcome.UNKNOWN, answer.reason
    )


def email_object(mailbox: str) -> dict[str, str]:
    """``Name <address>`` as JSON APIs take it: ``{"email": ..., "name": ...}``."""
    name, email = split_mailbox(mailbox)
    return {"email": email, "name": name} if name else {"email": email}


def tag_value(value: str) -> str:
    """A tag the strictest APIs accept (Resend, SES): ASCII letters, digits, ``_`` and ``-``."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in value)
    return cleaned[:256]
