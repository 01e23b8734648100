"""``ses``: Amazon SES v2 ``SendEmail`` with raw MIME, one message per call, SigV4-signed.

Wire format: https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html
(``POST /v2/email/outbound-emails``; ``Content.Raw.Data`` is our whole RFC 5322 message,
base64, so every header of ours survives; success is 200 with a ``MessageId``).  Errors, from
the same page and https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonErrors.html:
``MessageRejected`` and ``BadRequestException`` refuse this message (or, when SES names the
sender as unverified, the whole send); ``AccountSuspendedException``,
``SendingPausedException``, ``MailFromDomainNotVerifiedException``, ``LimitExceededException``
(the daily quota), ``NotFoundException`` and signature or access errors stop the send;
``TooManyRequestsException``/``Throttling`` and 5xx are transient.

SES takes one message a call, so a batch here is a few messages sent in turn, and throughput
comes from several batches in flight; set ``rate`` to the account's maximum send rate.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import requests

from pipeline.config import Settings
from pipeline.delivery.provider import (
    BatchResult,
    Options,
    Outcome,
    ProviderInfo,
    RecipientResult,
    require_secret,
)
from pipeline.delivery.providers.http import (
    HttpApi,
    NoAnswer,
    api_from,
    error_text,
    http_options,
    json_body,
    retry_after_seconds,
    tag_value,
)
from pipeline.delivery.providers.sigv4 import Credentials, sign
from pipeline.messages.compose import Message
from pipeline.messages.headers import split_mailbox
from pipeline.messages.mime import to_mime

PATH = "/v2/email/outbound-emails"
TRANSIENT = {"TooManyRequestsException", "Throttling", "ThrottlingException"}
FOR_THE_MESSAGE = {"MessageRejected", "BadRequestException", "InvalidParameterValue"}


class SesProvider:
    name = "ses"
    max_batch = 50  # messages a worker sends in turn before the ledger settles them
    max_concurrency = 16
    one_call_per_message = True
    managed_unsubscribe: str | None = None
    idempotent = False  # SendEmail has no idempotency key

    def __init__(
        self,
        api: HttpApi,
        credentials: Credentials,
        region: str,
        configuration_set: str = "",
    ) -> None:
        self.api, self.credentials, self.region = api, credentials, region
        self.configuration_set = configuration_set

    def request_body(self, message: Message) -> bytes:
        payload: dict[str, object] = {
            "FromEmailAddress": split_mailbox(message.sender)[1],
            "Destination": {"ToAddresses": [message.to_email]},
            "Content": {"Raw": {"Data": base64.b64encode(to_mime(message)).decode("ascii")}},
            "EmailTags": [{"Name": "issue", "Value": tag_value(message.issue)}],
        }
        if self.configuration_set:
            payload["ConfigurationSetName"] = self.configuration_set
        return json.dumps(payload).encode("ascii")

    def send(self, messages: Sequence[Message]) -> BatchResult:
        results: list[RecipientResult] = []
        for index, message in enumerate(messages):
            result, stop = self._send_one(message)
            results.append(result)
            if stop:
                reason = result.reason
                results += [
                    RecipientResult(m.key, Outcome.RETRY, reason=reason)
                    for m in messages[index + 1 :]
                ]
                return BatchResult(results, stop)
        return BatchResult(results)

    def _send_one(self, message: Message) -> tuple[RecipientResult, str | None]:
        body = self.request_body(message)
        headers = sign(
            self.credentials,
            method="POST",
            url=self.api.base_url + PATH,
            body=body,
            region=self.region,
            service="ses",
            now=datetime.now(UTC),
            headers={"Content-Type": "application/json"},
        )
        answer = self.api.post(PATH, data=body, headers=headers)
        key = message.key
        if isinstance(answer, NoAnswer):
            outcome = Outcome.RETRY if answer.never_sent else Outcome.UNKNOWN
            return RecipientResult(key, outcome, reason=answer.reason), None
        status = answer.status_code
        parsed = json_body(answer)
        if status == 200 and isinstance(parsed, dict) and parsed.get("MessageId"):
            return RecipientResult(key, Outcome.SENT, provider_id=str(parsed["MessageId"])), None
        code = _error_code(answer, parsed)
        text = _error_message(answer, parsed)
        reason = f"SES {code or f'HTTP {status}'}: {text}"
        if status == 200:
            return RecipientResult(key, Outcome.UNKNOWN, reason=reason), None
        if code in TRANSIENT or status == 429 or status >= 500:
            wait = retry_after_seconds(answer.headers.get("Retry-After"))
            return RecipientResult(key, Outcome.RETRY, reason=reason, retry_after=wait), None
        sender = split_mailbox(message.sender)[1].lower()
        if code in FOR_THE_MESSAGE and sender not in text.lower():
            return RecipientResult(key, Outcome.FAILED, reason=reason), None
        stop = f"Amazon SES refused the send ({reason})"
        return RecipientResult(key, Outcome.RETRY, reason=stop), stop

    def close(self) -> None:
        self.api.close()


def _error_code(answer: requests.Response, parsed: object) -> str:
    """SES v2 names the error in ``X-Amzn-ErrorType`` (``Code:namespace``) or the body."""
    header = answer.headers.get("X-Amzn-ErrorType", "")
    if header:
        return str(header).split(":", 1)[0]
    if isinstance(parsed, dict):
        value = parsed.get("__type") or parsed.get("code") or parsed.get("Code") or ""
        return str(value).rsplit("#", 1)[-1]
    return ""


def _error_message(answer: requests.Response, parsed: object) -> str:
    if isinstance(parsed, dict):
        for name in ("message", "Message"):
            if parsed.get(name):
                return str(parsed[name])
    return error_text(answer)


def region_and_credentials(options: Options, environ: Mapping[str, str]) -> tuple[str, Credentials]:
    """The SES region (setting or AWS_REGION) and the AWS keys: the sender and the
    suppression-list reader sign their calls with the same ones."""
    region = options.string("region", environ.get("AWS_REGION", "")) or ""
    if not region:
        raise options.error("region", 'the SES region is required, e.g. region = "us-east-1"')
    credentials = Credentials(
        require_secret(environ, "AWS_ACCESS_KEY_ID", "ses"),
        require_secret(environ, "AWS_SECRET_ACCESS_KEY", "ses"),
        environ.get("AWS_SESSION_TOKEN", "").strip(),
    )
    return region, credentials


def create(settings: Settings, environ: Mapping[str, str]) -> SesProvider:
    options = Options(settings, OPTIONS)
    region, credentials = region_and_credentials(options, environ)
    api = api_from(options, "Amazon SES", f"https://email.{region}.amazonaws.com", {}, 30)
    return SesProvider(api, credentials, region, options.string("configuration_set", ""))


OPTIONS = {
    "region": "the AWS region, e.g. us-east-1 (or AWS_REGION from the environment)",
    "configuration_set": "an SES configuration set for the messages (default: none)",
    "sns_topic_arn": "the SNS topic (or a list of them) whose notifications /webhooks/ses accepts",
    **http_options("https://email.<region>.amazonaws.com", timeout=30),
}
INFO = ProviderInfo(
    name="ses",
    summary="Amazon SES v2 SendEmail with raw MIME, SigV4-signed; set rate to your max send rate",
    create=create,
    secrets=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    options=OPTIONS,
)
