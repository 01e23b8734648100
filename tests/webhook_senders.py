"""Each provider's webhook as the provider sends it: its documented payloads, signed with its
own algorithm by keys the tests make (an ECDSA pair for SendGrid, a test CA's certificate for
SNS, Svix and Mailgun HMAC secrets, basic auth), and the ways a forger would get it wrong.

Payloads follow each provider's docs (cited in pipeline/delivery/providers/<name>_events.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import secrets
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from pipeline.delivery.providers.resend_events import svix_signature

Headers = dict[str, str]
# (what was wrong, headers, body)
Forgery = tuple[str, Headers, bytes]

KINDS = ("hard", "soft", "complaint", "unsubscribe", "delivered", "opened")


def iso(moment: float) -> str:
    return (
        datetime.fromtimestamp(moment, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def basic(secret: str) -> Headers:
    return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


class Sender:
    """One provider: ``payload`` builds an event, ``signed`` signs a body for a time."""

    name: str
    env: dict[str, str]
    unsubscribes = True  # has a provider-side unsubscribe event

    def payload(self, kind: str, email: str, issue: str, message_id: str, n: int) -> Any:
        raise NotImplementedError

    def body(self, payload: Any) -> bytes:
        return json.dumps(payload).encode()

    def signed(self, payload: Any, now: float) -> tuple[Headers, bytes]:
        raise NotImplementedError

    def forgeries(self, payload: Any, now: float) -> list[Forgery]:
        raise NotImplementedError


class Postmark(Sender):
    name = "postmark"

    def __init__(self) -> None:
        self.env = {"NEWSLETTER_WEBHOOK_SECRET": "hooks:s3cret-Pa55-long-enough"}

    def payload(self, kind: str, email: str, issue: str, message_id: str, n: int) -> Any:
        # https://postmarkapp.com/developer/webhooks/bounce-webhook and its siblings
        common = {
            "MessageID": message_id,
            "Tag": issue,
            "Metadata": {"issue": issue},
            "ServerID": 23,
            "MessageStream": "broadcast",
        }
        at = f"2026-11-25T10:{n % 60:02d}:00.000Z"
        if kind in ("hard", "soft", "complaint"):
            kind_type = {"hard": "HardBounce", "soft": "SoftBounce", "complaint": "SpamComplaint"}
            return {
                **common,
                "RecordType": "SpamComplaint" if kind == "complaint" else "Bounce",
                "ID": 4323372036854775000 + n,
                "Type": kind_type[kind],
                "TypeCode": {"hard": 1, "soft": 4096, "complaint": 512}[kind],
                "Name": "Hard bounce",
                "Description": "The server was unable to deliver your message.",
                "Details": "smtp;550 5.1.1 The email account does not exist.",
                "Email": email,
                "From": "connie@movementsolutions.example",
                "BouncedAt": at,
                "DumpAvailable": True,
                "Inactive": kind == "hard",
                "CanActivate": True,
                "Subject": "Why Hip Rotation Matters",
            }
        if kind == "unsubscribe":
            return {
                **common,
                "RecordType": "SubscriptionChange",
                "ChangedAt": at,
                "Recipient": email,
                "Origin": "Recipient",
                "SuppressSending": True,
                "SuppressionReason": "ManualSuppression",
            }
        if kind == "delivered":
            return {
                **common,
                "RecordType": "Delivery",
                "Recipient": email,
                "DeliveredAt": at,
                "Details": "Test delivery webhook details",
            }
        return {
            **common,
            "RecordType": "Open",
            "FirstOpen": True,
            "Recipient": email,
            "ReceivedAt": at,
        }

    def signed(self, payload: Any, now: float) -> tuple[Headers, bytes]:
        return basic(self.env["NEWSLETTER_WEBHOOK_SECRET"]), self.body(payload)

    def forgeries(self, payload: Any, now: float) -> list[Forgery]:
        body = self.body(payload)
        return [
            ("a wrong password", basic("hooks:guess"), body),
            ("no credentials", {}, body),
            ("bearer instead of basic", {"Authorization": "Bearer s3cret-Pa55"}, body),
            ("malformed credentials", {"Authorization": "Basic %%%"}, body),
        ]


class Brevo(Sender):
    name = "brevo"

    def __init__(self) -> None:
        self.env = {"NEWSLETTER_WEBHOOK_SECRET": "hooks:s3cret-Pa55-long-enough"}

    def payload(self, kind: str, email: str, issue: str, message_id: str, n: int) -> Any:
        # https://developers.brevo.com/docs/transactional-webhooks
        event = {
            "hard": "hard_bounce",
            "soft": "soft_bounce",
            "complaint": "spam",
            "unsubscribe": "unsubscribed",
            "delivered": "delivered",
            "opened": "opened",
        }[kind]
        ts = 1764064800 + n
        return {
            "event": event,
            "email": email,
            "id": 812345,
            "date": "2026-11-25 11:00:00",
            "ts": ts,
            "message-id": message_id,
            "ts_event": ts,
            "subject": "Why Hip Rotation Matters",
            "tag": json.dumps([issue]),
            "sending_ip": "185.41.28.109",
            "ts_epoch": ts * 1000 + 123,
            "tags": [issue],
            "reason": "550 5.1.1 user unknown" if kind in ("hard", "soft") else "",
        }

    def signed(self, payload: Any, now: float) -> tuple[Headers, bytes]:
        return basic(self.env["NEWSLETTER_WEBHOOK_SECRET"]), self.body(payload)

    def forgeries(self, payload: Any, now: float) -> list[Forgery]:
        body = self.body(payload)
        return [
            ("a wrong password", basic("hooks:wrong"), body),
            ("a wrong bearer token", {"Authorization": "Bearer hooks:wrong"}, body),
            ("no credentials", {}, body),
        ]


class Mailgun(Sender):
    name = "mailgun"

    def __init__(self) -> None:
        self.env = {"MAILGUN_WEBHOOK_SIGNING_KEY": "key-" + "7" * 32}

    def payload(self, kind: str, email: str, issue: str, message_id: str, n: int) -> Any:
        # https://documentation.mailgun.com/docs/mailgun/user-manual/events/webhooks/
        event, severity, reason = {
            "hard": ("failed", "permanent", "bounce"),
            "soft": ("failed", "temporary", "generic"),
            "complaint": ("complained", None, None),
            "unsubscribe": ("unsubscribed", None, None),
            "delivered": ("delivered", None, None),
            "opened": ("opened", None, None),
        }[kind]
        data: dict[str, Any] = {
            "id": f"CPgfbmQMTCKtHW6uIWtuVe{n:04d}",
            "timestamp": 1764064800.123 + n,
            "log-level": "error" if event == "failed" else "info",
            "event": event,
            "recipient": email,
            "recipient-domain": email.rpartition("@")[2],
            "tags": [issue],
            "user-variables": {"issue": issue, "newsletter_key": email},
            "message": {
                "headers": {
                    "to": email,
                    "message-id": message_id.strip("<>"),
                    "from": "connie@movementsolutions.example",
                    "subject": "Why Hip Rotation Matters",
                }
            },
        }
        if severity:
            data["severity"] = severity
            data["reason"] = reason
            data["delivery-status"] = {
                "code": 550 if severity == "permanent" else 452,
                "message": "5.1.1 The email account does not exist",
                "description": "",
            }
        return {"signature": {}, "event-data": data}

    def sign_block(self, key: str, timestamp: str, token: str) -> dict[str, str]:
        digest = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256)
        return {"timestamp": timestamp, "token": token, "signature": digest.hexdigest()}

    def with_block(self, payload: Any, block: dict[str, str]) -> bytes:
        return self.body({**payload, "signature": block})

    def signed(self, payload: Any, now: float) -> tuple[Headers, bytes]:
        token = secrets.token_hex(25)
        block = self.sign_block(self.env["MAILGUN_WEBHOOK_SIGNING_KEY"], str(int(now)), token)
        return {"Content-Type": "application/json"}, self.with_block(payload, block)

    def forgeries(self, payload: Any, now: float) -> list[Forgery]:
        key = self.env["MAILGUN_WEBHOOK_SIGNING_KEY"]
        json_type = {"Content-Type": "application/json"}
        good = self.sign_block(key, str(int(now)), secrets.token_hex(25))
        wrong = self.sign_block("key-" + "8" * 32, str(int(now)), secrets.token_hex(25))
        stale = self.sign_block(key, str(int(now) - 3600), secrets.token_hex(25))
        altered = {**good, "timestamp": str(int(now) + 1)}
        return [
            ("another signing key", json_type, self.with_block(payload, wrong)),
            ("a stale timestamp", json_type, self.with_block(payload, stale)),
            ("a timestamp changed after signing", json_type, self.with_block(payload, altered)),
            ("no signature block", json_type, self.body({"event-data": payload["event-data"]})),
            ("an empty signature", json_type, self.with_block(payload, {**good, "signature": ""})),
        ]


class MailgunLegacy(Mailgun):
    """Mailgun's legacy webhooks: a form post, the signature's three fields at the top level
    beside the event's, our custom variables merged in as fields of their own.
    https://documentation.mailgun.com/en/latest/user_manual.html#legacy-webhooks (Tracking
    Deliveries, Bounces, Spam Complaints, Unsubscribes, Opens).  ``multipart``: posted as
    multipart/form-data, as Mailgun does when a bounce carries the returned message."""

    def __init__(self, multipart: bool = False) -> None:
        super().__init__()
        self.multipart = multipart

    def payload(self, kind: str, email: str, issue: str, message_id: str, n: int) -> Any:
        event = {
            "hard": "bounced",
            "complaint": "complained",
            "unsubscribe": "unsubscribed",
            "delivered": "delivered",
            "opened": "opened",
        }[kind]  # the legacy kind has no soft bounce event
        variables = {"issue": issue, "newsletter_key": email}
        headers = [
            ["Received", "by luna.mailgun.net with SMTP mgrt 8734663311733"],
            ["X-Mailgun-Variables", json.dumps(variables)],
            ["Message-Id", message_id],
            ["To", email],
            ["Subject", "Why Hip Rotation Matters"],
        ]
        fields: list[tuple[str, str]] = [
            ("event", event),
            ("recipient", email),
            ("domain", "mg.movementsolutions.example"),
        ]
        if event in ("delivered", "bounced", "complained"):
            fields += [("message-headers", json.dumps(headers)), ("Message-Id", message_id)]
        else:  # opens, clicks and unsubscribes carry the custom variables as fields
            fields += [("message-id", message_id.strip("<>")), ("tag", issue)]
            fields += [("ip", "50.56.129.169"), ("user-agent", f"Mozilla/5.0 ({n})")]
        if event == "bounced":
            fields += [
                ("code", "550"),
                ("error", "5.1.1 The email account that you tried to reach does not exist"),
                ("notification", ""),
            ]
        fields += list(variables.items())
        return fields

    def form(self, fields: list[tuple[str, str]]) -> tuple[Headers, bytes]:
        if not self.multipart:
            return {"Content-Type": "application/x-www-form-urlencoded"}, urlencode(fields).encode()
        boundary = "----mailgun" + secrets.token_hex(8)
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields
        ]
        # The returned message, as a bounce's attachment: read past, never kept.
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="attachment-1";'
            ' filename="message.eml"\r\nContent-Type: message/rfc822\r\n\r\n'
            "Subject: Why Hip Rotation Matters\r\n\r\nHello\r\n"
        )
        body = "".join(parts) + f"--{boundary}--\r\n"
        return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body.encode()

    def signed(self, payload: Any, now: float) -> tuple[Headers, bytes]:
        block = self.sign_block(
            self.env["MAILGUN_WEBHOOK_SIGNING_KEY"], str(int(now)), secrets.token_hex(25)
        )
        return self.form([*payload, *block.items()])

    def forgeries(self, payload: Any, now: float) -> list[Forgery]:
        key = self.env["MAILGUN_WEBHOOK_SIGNING_KEY"]
        good = self.sign_block(key, str(int(now)), secrets.token_hex(25))
        wrong = self.sign_block("key-" + "8" * 32, str(int(now)), secrets.token_hex(25))
        stale = self.sign_block(key, str(int(now) - 3600), secrets.token_hex(25))
        altered = {**good, "timestamp": str(int(now) + 1)}
        # Mailgun's own fields are the last: a good signature before a wrong one is not it.
        shadowed = [("signature", good["signature"]), *payload, *wrong.items()]
        return [
            ("another signing key", *self.form([*payload, *wrong.items()])),
            ("a stale timestamp", *self.form([*payload, *stale.items()])),
            ("a timestamp changed after signing", *self.form([*payload, *altered.items()])),
            ("no signature fields", *self.form(payload)),
            ("an empty signature", *self.form([*payload, *{**good, "signature": ""}.items()])),
            ("a wrong signature after a good one", *self.form(shadowed)),
        ]


class SendGrid(Sender):
    name = "sendgrid"

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        public = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.env = {"SENDGRID_WEBHOOK_VERIFICATION_KEY": base64.b64encode(public).decode()}

    def payload(self, kind: str, email: str, issue: str, message_id: str, n: int) -> Any:
        # https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event
        event = {
            "hard": "bounce",
            "soft": "bounce",
            "complaint": "spamreport",
            "unsubscribe": "unsubscribe",
            "delivered": "delivered",
            "opened": "open",
        }[kind]
        item: dict[str, Any] = {
            "email": email,
            "timestamp": 1764064800 + n,
            "smtp-id": f"<{message_id}@ismtpd0001p1lon1.sendgrid.net>",
            "event": event,
            "category": [issue],
            "sg_event_id": f"sg_event_id_{kind}_{n}",
            "sg_message_id": f"{message_id}.filterdrecv-p3las1-5bf99c48d-xw6jg-18-5E8A3B8B-1.0",
            "issue": issue,
            "newsletter_key": email,
        }
        if event == "bounce":
            item.update(
                reason="550 5.1.1 The email account that you tried to reach does not exist.",
                status="5.1.1",
                type="bounce" if kind == "hard" else "blocked",
            )
        return [item]

    def sign(self, key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
        der = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(der).decode()

    def headers(self, signature: str, timestamp: str) -> Headers:
        return {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }

    def signed(self, payload: Any, now: float) -> tuple[Headers, bytes]:
        body, timestamp = self.body(payload), str(int(now))
        return self.headers(self.sign(self.key, timestamp, body), timestamp), body

    def forgeries(self, payload: Any, now: float) -> list[Forgery]:
        body, timestamp = self.body(payload), str(int(now))
        other = ec.generate_private_key(ec.SECP256R1())
        good = self.sign(self.key, timestamp, body)
        stale = str(int(now) - 3600)
        altered = body.replace(b'"event": "', b'"event": "x', 1)
        return [
            ("another key", self.headers(self.sign(other, timestamp, body), timestamp), body),
            ("an altered body", self.headers(good, timestamp), altered),
            ("a stale timestamp", self.headers(self.sign(self.key, stale, body), stale), body),
            ("another timestamp than signed", self.headers(good, str(int(now) + 5)), body),
            ("no signature header", {"X-Twilio-Email-Event-Webhook-Timestamp": timestamp}, body),
            ("a signature that is not base64", self.headers("not base64!", timestamp), body),
        ]


class Resend(Sender):
    name = "resend"
    unsubscribes = False  # Resend has no unsubscribe event

    def __init__(self) -> None:
        secret = base64.b64encode(b"resend-test-key-0123456789").decode()
        self.env = {"RESEND_WEBHOOK_SECRET": f"whsec_{secret}"}

    def payload(self, kind: str, email: str, issue: str, message_id: str, n: int) -> Any:
        # https://resend.com/docs/dashboard/webhooks/event-types
        event = {
            "hard": "email.bounced",
            "soft": "email.bounced",
            "complaint": "email.complained",
            "delivered": "email.delivered",
            "opened": "email.opened",
        }[kind]
        data: dict[str, Any] = {
            "created_at": "2026-11-25T10:00:00.000Z",
            "email_id": message_id,
            "from": "Dr. Connie Hutchins <connie@movementsolutions.example>",
            "to": [email],
            "subject": "Why Hip Rotation Matters",
            "tags": {"issue": issue},
        }
        if kind in ("hard", "soft"):
            data["bounce"] = {
                "message": "The recipient's email provider sent a hard bounce message.",
                "subType": "General",
                "type": "Permanent" if kind == "hard" else "Transient",
            }
        return {"type": event, "created_at": f"2026-11-25T10:{n % 60:02d}:01.000Z", "data": data}

    def key(self) -> bytes:
        return base64.b64decode(self.env["RESEND_WEBHOOK_SECRET"].removeprefix("whsec_"))

    def headers(self, msg_id: str, timestamp: str, signature: str) -> Headers:
        return {"svix-id": msg_id, "svix-timestamp": timestamp, "svix-signature": signature}

    def signed(self, payload: Any, now: float) -> tuple[Headers, bytes]:
        body, timestamp = self.body(payload), str(int(now))
        msg_id = "msg_" + hashlib.sha256(body).hexdigest()[:24]
        return self.headers(
            msg_id, timestamp, svix_signature(self.key(), msg_id, timestamp, body)
        ), body

    def forgeries(self, payload: Any, now: float) -> list[Forgery]:
        body, timestamp, msg_id = self.body(payload), str(int(now)), "msg_forged"
        good = svix_signature(self.key(), msg_id, timestamp, body)
        other = svix_signature(b"another-secret-key-abcdef", msg_id, timestamp, body)
        stale = str(int(now) - 600)
        return [
            ("another secret", self.headers(msg_id, timestamp, other), body),
            ("an altered body", self.headers(msg_id, timestamp, good), body + b" "),
            ("another message id", self.headers("msg_other", timestamp, good), body),
            (
                "a stale timestamp",
                self.headers(msg_id, stale, svix_signature(self.key(), msg_id, stale, body)),
                body,
            ),
            ("no signature", {"svix-id": msg_id, "svix-timestamp": timestamp}, body),
            ("no id", {"svix-timestamp": timestamp, "svix-signature": good}, body),
        ]


CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:newsletter-ses-events"


@dataclass
class SnsCertServer:
    """A real HTTPS server standing in for sns.us-east-1.amazonaws.com: it serves the signing
    certificate and takes subscription confirmations; ``fetch`` reaches it over TLS trusted
    through the test CA (the internet's DNS is the only thing replaced)."""

    port: int
    ca_file: Path
    certificate: bytes
    requests: list[str] = field(default_factory=list)

    def fetch(self, url: str) -> bytes:
        parts = urlsplit(url)
        local = f"https://127.0.0.1:{self.port}{parts.path}" + (
            f"?{parts.query}" if parts.query else ""
        )
        answer = requests.get(local, timeout=10, verify=str(self.ca_file))
        answer.raise_for_status()
        return answer.content


@contextmanager
def sns_cert_server(ca: trustme.CA, certificate: bytes, tmp: Path) -> Iterator[SnsCertServer]:
    ca_file = tmp / "sns-test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    served: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.append(self.path)
            if self.path.endswith(".pem"):
                body, kind = certificate, "application/x-pem-file"
            elif "Action=ConfirmSubscription" in self.path:
                body, kind = b"<ConfirmSubscriptionResponse/>", "text/xml"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        found = SnsCertServer(server.server_address[1], ca_file, certificate)
        found.requests = served
        yield found
    finally:
        server.shutdown()
        server.server_close()


class Ses(Sender):
    name = "ses"
    unsubscribes = False  # SES events carry no unsubscribe

    def __init__(self, ca: trustme.CA) -> None:
        self.env: dict[str, str] = {}
        # The SNS signing certificate, issued by the test CA for sns.amazonaws.com.
        leaf = ca.issue_cert("sns.amazonaws.com", key_type=trustme.KeyType.RSA)
        self.certificate = leaf.cert_chain_pems[0].bytes()
        key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.key = key

    def payload(self, kind: str, email: str, issue: str, message_id: str, n: int) -> Any:
        # https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html
        mail = {
            "timestamp": "2026-11-25T10:00:00.000Z",
            "messageId": message_id,
            "source": "connie@movementsolutions.example",
            "destination": [email],
            "headersTruncated": False,
            "headers": [{"name": "X-Newsletter-Issue", "value": issue}],
            "tags": {"issue": [issue]},
        }
        if kind in ("hard", "soft"):
            note: dict[str, Any] = {
                "notificationType": "Bounce",
                "bounce": {
                    "bounceType": "Permanent" if kind == "hard" else "Transient",
                    "bounceSubType": "General" if kind == "hard" else "MailboxFull",
                    "bouncedRecipients": [
                        {
                            "emailAddress": email,
                            "action": "failed",
                            "status": "5.1.1",
                            "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                        }
                    ],
                    "timestamp": "2026-11-25T10:00:05.000Z",
                    "feedbackId": f"0100017a-bounce-{n}",
                },
            }
        elif kind == "complaint":
            note = {
                "notificationType": "Complaint",
                "complaint": {
                    "complainedRecipients": [{"emailAddress": email}],
                    "timestamp": "2026-11-25T10:00:05.000Z",
                    "feedbackId": f"0100017a-complaint-{n}",
                    "complaintFeedbackType": "abuse",
                },
            }
        elif kind == "delivered":
            note = {
                "notificationType": "Delivery",
                "delivery": {
                    "timestamp": "2026-11-25T10:00:02.000Z",
                    "recipients": [email],
                    "smtpResponse": "250 ok",
                    "processingTimeMillis": 546,
                },
            }
        else:
            note = {"eventType": "Open", "open": {"timestamp": "2026-11-25T10:05:00.000Z"}}
        note["mail"] = mail
        return {
            "Type": "Notification",
            "MessageId": f"22b80b92-fdea-4c2c-8f9d-bdfb0c7bf{n:03d}",
            "TopicArn": TOPIC,
            "Message": json.dumps(note),
            "Timestamp": "",
            "SignatureVersion": "2",
            "SigningCertURL": CERT_URL,
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        }

    def sign_message(
        self, message: dict[str, Any], key: rsa.RSAPrivateKey | None = None
    ) -> dict[str, Any]:
        from pipeline.delivery.providers.ses_events import string_to_sign

        algorithm = hashes.SHA256() if message["SignatureVersion"] == "2" else hashes.SHA1()
        signature = (key or self.key).sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        return {**message, "Signature": base64.b64encode(signature).decode()}

    def headers(self, message: dict[str, Any]) -> Headers:
        return {
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": message["Type"],
            "x-amz-sns-message-id": message["MessageId"],
            "x-amz-sns-topic-arn": message["TopicArn"],
        }

    def signed(self, payload: Any, now: float) -> tuple[Headers, bytes]:
        message = self.sign_message({**payload, "Timestamp": iso(now)})
        return self.headers(message), self.body(message)

    def forgeries(self, payload: Any, now: float) -> list[Forgery]:
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fresh = {**payload, "Timestamp": iso(now)}
        good = self.sign_message(fresh)
        altered = {**good, "Message": good["Message"].replace("Permanent", "Transient")}
        altered = altered if altered != good else {**good, "MessageId": "changed"}
        cases: list[tuple[str, dict[str, Any]]] = [
            ("signed by another key", self.sign_message(fresh, other)),
            ("an altered message", altered),
            ("a stale timestamp", self.sign_message({**payload, "Timestamp": iso(now - 7200)})),
            (
                "a certificate URL off amazonaws.com",
                self.sign_message(
                    {
                        **fresh,
                        "SigningCertURL": "https://sns.us-east-1.amazonaws.com.evil.example/c.pem",
                    }
                ),
            ),
            (
                "a certificate URL over http",
                self.sign_message({**fresh, "SigningCertURL": CERT_URL.replace("https:", "http:")}),
            ),
            (
                "a topic not allowed",
                self.sign_message(
                    {**fresh, "TopicArn": "arn:aws:sns:us-east-1:999999999999:other"}
                ),
            ),
            ("no signature", {k: v for k, v in good.items() if k != "Signature"}),
        ]
        return [(label, self.headers(m), self.body(m)) for label, m in cases]


def senders(ca: trustme.CA) -> dict[str, Sender]:
    return {s.name: s for s in (Postmark(), Brevo(), Mailgun(), SendGrid(), Resend(), Ses(ca))}


def merged_env(all_senders: dict[str, Sender]) -> dict[str, str]:
    env: dict[str, str] = {}
    for sender in all_senders.values():
        env.update(sender.env)
    return env


Signer = Callable[[Any, float], tuple[Headers, bytes]]
