"""What Amazon SES tells us after a send: its notifications, delivered by SNS over HTTPS.

Verification: https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
(the message's fields, ``Name\\nvalue\\n`` in a fixed order, signed with RSA: SHA1 for
``SignatureVersion`` 1, SHA256 for 2, by the certificate at ``SigningCertURL``).  The
certificate is fetched only from an https URL on ``sns.<region>.amazonaws.com`` (TLS
vouches for it), and cached; the topic must be one of ``[provider] sns_topic_arn``; a
``Timestamp`` more than an hour old is refused (SNS retries for seconds, not hours, by
default).  A ``SubscriptionConfirmation`` is confirmed by visiting its ``SubscribeURL``
(https://docs.aws.amazon.com/sns/latest/dg/SendMessageToHttp.confirm.html), checked the same
way.  Formats: https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html

Payload (the SNS ``Message``, JSON): SES notifications
https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html (``notificationType``
Bounce | Complaint | Delivery) and event publishing
https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html
(``eventType`` also Reject, Open, Click, DeliveryDelay); ``mail.messageId`` is the id
SendEmail returned (the ledger's), ``mail.tags.issue`` our tag and ``mail.headers`` our
``X-Newsletter-Issue`` (ses.py).  The mapping follows anymail/webhooks/amazon_ses.py.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pipeline.config import Settings
from pipeline.delivery.provider import Options
from pipeline.delivery.providers import ses
from pipeline.delivery.providers.http import api_url
from pipeline.delivery.providers.sigv4 import Credentials, sign
from pipeline.events.base import (
    Bounce,
    EventType,
    Nonce,
    NotConfigured,
    ProviderEvent,
    Refused,
    WebhookRequest,
    as_json,
    from_iso,
    from_unix,
    listed_header,
    obj,
    text,
)
from pipeline.events.sync import ListClient, SyncError
from pipeline.messages.compose import ISSUE_HEADER

TOLERANCE = 60 * 60
# Certificates kept in memory: SNS signs with one per region at a time.  Fetched before a
# signature can be checked, so anyone may name new ones: the oldest is forgotten beyond this.
MAX_CERTIFICATES = 8
# sns.<region>.amazonaws.com, the region spelled as AWS spells them (us-east-1, us-gov-west-1,
# cn-north-1): not any label, or S3 would do, serving anyone's bucket named "sns" at
# sns.s3.amazonaws.com and sns.s3-us-west-2.amazonaws.com, with a certificate of their own.
SNS_HOST = re.compile(r"sns\.[a-z]{2}(-[a-z]+)+-[0-9]+\.amazonaws\.com(\.cn)?")
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

Fetch = Callable[[str], bytes]


def fetch_https(url: str) -> bytes:
    """GET an AWS URL (a certificate, a confirmation) with TLS verified."""
    answer = requests.get(url, timeout=10)
    answer.raise_for_status()
    return answer.content


def check_sns_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not SNS_HOST.fullmatch(parts.hostname or "") or parts.port:
        raise Refused(f"the {what} is not an https URL on sns.<region>.amazonaws.com")
    return url


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    fields = NOTIFICATION_FIELDS if message["Type"] == "Notification" else CONFIRMATION_FIELDS
    lines = []
    for name in fields:
        if name in message and message[name] is not None:
            lines.append(f"{name}\n{message[name]}\n")
        elif name != "Subject":
            raise Refused(f"the SNS message has no {name}", 400)
    return "".join(lines).encode("utf-8")


class SesWebhook:
    provider = "ses"

    def __init__(self, topics: frozenset[str], fetch: Fetch = fetch_https) -> None:
        self.topics = topics
        self.fetch = fetch
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def signing_key(self, url: str) -> rsa.RSAPublicKey:
        """The certificate's key, fetched once per URL."""
        check_sns_url(url, "SigningCertURL")
        with self._lock:
            found = self._keys.get(url)
        if found is not None:
            return found
        try:
            certificate = x509.load_pem_x509_certificate(self.fetch(url))
        except (requests.RequestException, ValueError) as exc:
            raise Refused(f"could not read the SNS signing certificate ({exc})") from None
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise Refused("the SNS signing certificate has no RSA key")
        with self._lock:
            self._keys.pop(url, None)
            self._keys[url] = key  # newest last
            while len(self._keys) > MAX_CERTIFICATES:
                del self._keys[next(iter(self._keys))]
        return key

    def verify(self, request: WebhookRequest, now: float) -> Nonce | None:
        message = request.json()
        if not isinstance(message, dict) or message.get("Type") not in (
            "Notification",
            "SubscriptionConfirmation",
            "UnsubscribeConfirmation",
        ):
            raise Refused("not an SNS message")
        if message.get("TopicArn") not in self.topics:
            raise Refused(f"SNS topic {message.get('TopicArn')!r} is not in sns_topic_arn")
        algorithm = HASHES.get(str(message.get("SignatureVersion")))
        if algorithm is None:
            raise Refused("unknown SNS SignatureVersion")
        try:
            signature = _b64(text(message.get("Signature")))
        except ValueError:
            raise Refused("the SNS signature is not base64") from None
        key = self.signing_key(text(message.get("SigningCertURL")))
        try:
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise Refused("wrong SNS signature") from None
        sent = from_iso(message.get("Timestamp"))
        if sent is None or abs(now - sent.timestamp()) > TOLERANCE:
            raise Refused("the SNS Timestamp is stale")
        return None

    def parse(self, request: WebhookRequest) -> list[ProviderEvent]:
        message = request.json()
        kind = message["Type"]
        if kind == "SubscriptionConfirmation":
            # Subscribing is how SES starts sending here: confirm, as the docs say, by GET.
            url = check_sns_url(text(message.get("SubscribeURL")), "SubscribeURL")
            try:
                self.fetch(url)
            except requests.RequestException as exc:
                raise Refused(f"could not confirm the SNS subscription ({exc})", 400) from None
            return []
        if kind != "Notification":
            return []
        try:
            notification = _json(text(message.get("Message")))
        except ValueError:
            raise Refused("the SNS Message is not an SES notification", 400) from None
        return list(parse_notification(notification, text(message.get("MessageId"))))


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _json(value: str) -> dict[str, Any]:
    found = json.loads(value)
    if not isinstance(found, dict):
        raise ValueError("not an object")
    return found


def _addresses(value: Any) -> list[str]:
    """``[{"emailAddress": ...}, ...]`` -> the addresses."""
    items = value if isinstance(value, list) else []
    return [text(obj(item).get("emailAddress")) for item in items]


def _issue(mail: Mapping[str, Any]) -> str | None:
    found = listed_header(mail.get("headers"), ISSUE_HEADER)
    if found:
        return found
    tags = mail.get("tags")
    if isinstance(tags, dict) and isinstance(tags.get("issue"), list) and tags["issue"]:
        return text(tags["issue"][0]) or None
    return None


def parse_notification(raw: Mapping[str, Any], sns_id: str) -> Iterator[ProviderEvent]:
    """One SES notification -> an event per recipient it names."""
    kind_name = text(raw.get("eventType")) or text(raw.get("notificationType"))
    mail = obj(raw.get("mail"))
    destination = [text(a) for a in mail.get("destination") or [] if text(a)]
    bounce: Bounce | None = None
    reason = ""
    feedback = ""
    recipients: list[str]
    if kind_name == "Bounce":
        detail = obj(raw.get("bounce"))
        kind = EventType.BOUNCED
        # Permanent is hard; Transient (mailbox full, too large) and Undetermined are soft.
        bounce = Bounce.HARD if detail.get("bounceType") == "Permanent" else Bounce.SOFT
        reason = f"{detail.get('bounceType')}/{detail.get('bounceSubType')}"
        feedback = text(detail.get("feedbackId"))
        recipients = _addresses(detail.get("bouncedRecipients"))
    elif kind_name == "Complaint":
        detail = obj(raw.get("complaint"))
        kind, feedback = EventType.COMPLAINED, text(detail.get("feedbackId"))
        reason = text(detail.get("complaintFeedbackType"))
        recipients = _addresses(detail.get("complainedRecipients"))
    elif kind_name == "Delivery":
        kind = EventType.DELIVERED
        recipients = [text(r) for r in obj(raw.get("delivery")).get("recipients") or []]
    elif kind_name == "DeliveryDelay":
        detail = obj(raw.get("deliveryDelay"))
        kind, reason = EventType.DEFERRED, text(detail.get("delayType"))
        recipients = _addresses(detail.get("delayedRecipients"))
    elif kind_name == "Reject":
        kind, reason = EventType.REJECTED, text(obj(raw.get("reject")).get("reason"))
        recipients = destination
    elif kind_name in ("Open", "Click"):
        kind = EventType.OPENED if kind_name == "Open" else EventType.CLICKED
        recipients = destination
    else:
        return  # Send, Rendering Failure, Subscription: nothing about one reader's delivery
    issue = _issue(mail)
    for email in recipients:
        if not email:
            continue
        yield ProviderEvent(
            provider="ses",
            event_id=f"{feedback or sns_id}:{email.lower()}",
            type=kind,
            email=email,
            issue=issue,
            message_id=text(mail.get("messageId")) or None,
            bounce=bounce,
            reason=reason,
            occurred_at=from_iso(mail.get("timestamp")),
            raw=as_json(raw),
        )


def topics(settings: Settings) -> frozenset[str]:
    value = settings.provider.options.get("sns_topic_arn", "")
    found = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return frozenset(text(v) for v in found if text(v))


def webhook(
    settings: Settings, environ: Mapping[str, str], fetch: Fetch = fetch_https
) -> SesWebhook:
    allowed = topics(settings)
    if not allowed:
        raise NotConfigured(
            'ses webhooks need [provider] sns_topic_arn = "arn:aws:sns:REGION:ACCOUNT:TOPIC" in'
            " newsletter.toml (the topic your SES configuration set publishes to)"
        )
    return SesWebhook(allowed, fetch)


# Suppression list ---------------------------------------------------------------------------
# https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_ListSuppressedDestinations.html
# (GET /v2/email/suppression/addresses?PageSize=&NextToken=, SigV4-signed: answers
# ``SuppressedDestinationSummaries`` of ``{"EmailAddress", "Reason": BOUNCE | COMPLAINT,
# "LastUpdateTime"}`` and a ``NextToken`` while there is more; throttling is 429
# ``TooManyRequestsException``).

PAGE = 1000
SES_REASONS: dict[str, tuple[EventType, Bounce | None]] = {
    "BOUNCE": (EventType.BOUNCED, Bounce.HARD),
    "COMPLAINT": (EventType.COMPLAINED, None),
}


class SesSuppressions:
    lists = ("account-level suppression list",)

    def __init__(self, client: ListClient) -> None:
        self.client = client

    def read(self) -> Iterator[ProviderEvent]:
        token: str | None = None
        while True:
            params: dict[str, Any] = {"PageSize": PAGE}
            if token:
                params["NextToken"] = token
            page = obj(self.client.get("/v2/email/suppression/addresses", params))
            items = page.get("SuppressedDestinationSummaries")
            if not isinstance(items, list):
                raise SyncError("SES answered without SuppressedDestinationSummaries")
            for item in items:
                item = obj(item)
                found = SES_REASONS.get(text(item.get("Reason")))
                email = text(item.get("EmailAddress"))
                if found is None or not email:
                    continue
                kind, bounce = found
                yield ProviderEvent(
                    provider="ses",
                    event_id=f"suppression:{email.lower()}:{item.get('Reason')}:{item.get('LastUpdateTime')}",
                    type=kind,
                    email=email,
                    issue=None,
                    message_id=None,
                    bounce=bounce,
                    reason=f"on the SES suppression list: {item.get('Reason')}",
                    occurred_at=from_unix(item.get("LastUpdateTime")),
                    raw=as_json(item),
                )
            token = text(page.get("NextToken")) or None
            if not token:
                return

    def close(self) -> None:
        self.client.close()


def _sigv4(credentials: Credentials, region: str) -> Callable[[str, str], dict[str, str]]:
    def sign_get(method: str, url: str) -> dict[str, str]:
        # sign() encodes the query itself: give it the values as they are, not as sent.
        parts = urlsplit(url)
        query = "&".join(f"{k}={v}" for k, v in parse_qsl(parts.query, keep_blank_values=True))
        raw = parts._replace(query=query).geturl()
        return sign(
            credentials,
            method=method,
            url=raw,
            body=b"",
            region=region,
            service="ses",
            now=datetime.now(UTC),
        )

    return sign_get


def suppressions(
    settings: Settings, environ: Mapping[str, str], sleep: Callable[[float], None]
) -> SesSuppressions:
    options = Options(settings, ses.OPTIONS)
    region, credentials = ses.region_and_credentials(options, environ)
    client = ListClient(
        "Amazon SES",
        api_url(options, f"https://email.{region}.amazonaws.com"),
        sign=_sigv4(credentials, region),
        sleep=sleep,
    )
    return SesSuppressions(client)
