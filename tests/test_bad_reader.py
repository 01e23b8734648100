"""One reader's data never stops a send: an address no provider can take, a message that
cannot be built or encoded, a 100 KB name, control characters.  That reader is ``invalid`` or
``failed`` with the reason; everyone else gets the issue, once."""

from __future__ import annotations

import email
import re
from collections.abc import Callable, Sequence
from email import policy
from pathlib import Path

import pytest

from pipeline.audience.subscribers import Subscriber
from pipeline.config import Settings, load_settings
from pipeline.delivery.loop import DeliveryLoop
from pipeline.delivery.provider import BatchResult
from pipeline.delivery.providers import create_provider
from pipeline.delivery.providers.outbox import OutboxProvider
from pipeline.delivery.providers.smtp import SmtpProvider
from pipeline.ledger.store import IssueStatus, RecipientStatus
from pipeline.messages.compose import Message, MessageFactory
from pipeline.messages.mime import to_mime
from pipeline.sending import delivery_policy, open_ledger, prepare, send_issue

from .conftest import SAMPLE_ISSUE
from .test_send import newsletter
from .test_smtp import Relay, relay  # noqa: F401 (the aiosmtpd fixture)

SLUG = "2025-07-21-hip-rotation"
HEADER = "email,first_name,last_name,status,tags\n"


def readers(count: int, insert: dict[int, str] | None = None) -> str:
    rows = [f"reader{i:03d}@example.org,Reader{i},,," for i in range(count)]
    for at, row in sorted((insert or {}).items(), reverse=True):
        rows.insert(at, row)
    return HEADER + "\n".join(rows) + "\n"


def test_a_non_ascii_address_is_an_invalid_row_and_everyone_else_gets_the_issue(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(csv=readers(600, {149: "jürgen@example.org,Jürgen,,,"}))
    code, out, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert "Traceback" not in out + err
    assert f"{SLUG}: complete" in out, out + err
    assert "audience 600: sent 600, failed 0, unknown 0, pending 0" in out
    assert "subscribers.csv:151: email: 'jürgen@example.org' has 'ü' before the @" in out
    assert "Internationalized" not in out
    assert len(list((root / "outbox" / SLUG).glob("*.eml"))) == 600
    assert code == 0


def test_a_non_ascii_address_in_the_list_check_says_why(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(csv=readers(2, {1: "jürgen@example.org,Jürgen,,,"}))
    code, out, _ = newsletter(root, "subscribers", "check")
    assert code == 1
    assert (
        "subscribers.csv:3: invalid: email: 'jürgen@example.org' has 'ü' before the @, which most"
        " email services cannot deliver to (it needs SMTPUTF8): ask the reader for another address"
    ) in out


def test_an_international_domain_is_sent_in_its_ascii_form(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(csv=readers(1, {1: "anna@bücher.example,Anna,,,"}))
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0, out
    (path,) = (root / "outbox" / SLUG).glob("anna@*.eml")
    assert b"To: Anna <anna@xn--bcher-kva.example>" in path.read_bytes()


def _loaded_ledger(root: Path, people: list[tuple[str, dict[str, str]]]) -> Settings:
    """A ledger whose audience was recorded by an older version, which let anything in."""
    settings = load_settings(root / "newsletter.toml")
    compiled = prepare(root / SAMPLE_ISSUE, settings)
    ledger = open_ledger(settings)
    try:
        ledger.start_issue(SLUG, compiled.fingerprint, settings.provider.name)
        ledger.add_recipients(
            SLUG,
            (
                Subscriber(line, address, address.lower(), {"email": address, **fields})
                for line, (address, fields) in enumerate(people, start=2)
            ),
        )
    finally:
        ledger.close()
    return settings


def _run_loop(settings: Settings, provider: OutboxProvider | SmtpProvider) -> tuple[int, int]:
    compiled = prepare(settings.root / SAMPLE_ISSUE, settings)
    ledger = open_ledger(settings)
    try:
        factory = MessageFactory(compiled, settings, b"k" * 32)
        policy = delivery_policy(settings, provider)
        result = DeliveryLoop(ledger, provider, factory, policy, sleep=lambda s: None).run(SLUG)
        rows = {row["email"]: row for row in ledger.history(SLUG)}
    finally:
        ledger.close()
    bad = rows["jürgen@example.org"]
    assert bad["status"] == RecipientStatus.FAILED
    assert "cannot be sent to" in bad["reason"]
    assert result.stopped is None and result.unknown == 0
    return result.sent, result.failed


def test_a_reader_whose_message_cannot_be_built_fails_alone_in_the_outbox(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(csv=readers(1))
    people = [(f"reader{i:03d}@example.org", {"first_name": f"R{i}"}) for i in range(300)]
    people.insert(149, ("jürgen@example.org", {"first_name": "Jürgen"}))
    settings = _loaded_ledger(root, people)
    sent, failed = _run_loop(settings, OutboxProvider(root / "outbox"))
    assert (sent, failed) == (300, 1)
    assert len(list((root / "outbox" / SLUG).glob("*.eml"))) == 300


def test_a_reader_whose_message_cannot_be_built_fails_alone_over_smtp(
    make_project: Callable[..., Path],
    relay: tuple[Relay, int],  # noqa: F811
) -> None:
    server, port = relay
    root = make_project(
        provider=f'name = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"',
        csv=readers(1),
    )
    people = [(f"reader{i:03d}@example.org", {"first_name": f"R{i}"}) for i in range(120)]
    people.insert(49, ("jürgen@example.org", {"first_name": "Jürgen"}))
    settings = _loaded_ledger(root, people)
    provider = create_provider(settings, {})
    assert isinstance(provider, SmtpProvider)
    try:
        sent, failed = _run_loop(settings, provider)
    finally:
        provider.close()
    assert (sent, failed) == (120, 1)
    received = sorted(rcpt for rcpt, _ in server.received)
    assert received == sorted(address for address, _ in people if address.isascii())


def test_smtp_encodes_each_message_alone(
    make_project: Callable[..., Path],
    relay: tuple[Relay, int],  # noqa: F811
) -> None:
    """A message the provider itself cannot encode fails alone; the others in its batch go."""
    server, port = relay
    root = make_project(
        provider=f'name = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"',
        csv=readers(3),
    )
    settings = load_settings(root / "newsletter.toml")
    factory = MessageFactory(prepare(root / SAMPLE_ISSUE, settings), settings, b"k" * 32)
    messages = [factory.build(f"r{i}@example.org", f"r{i}@example.org", {}) for i in range(3)]
    # Past the factory's checks, as a bug or an older ledger could hand it over.
    bad = Message(**{**_fields(messages[1]), "to_email": "jü@example.org", "to": "jü@example.org"})
    provider = create_provider(settings, {})
    try:
        answer = provider.send([messages[0], bad, messages[2]])
    finally:
        provider.close()
    assert [r.outcome.value for r in answer.results] == ["sent", "failed", "sent"]
    assert "not sendable" in answer.results[1].reason
    assert sorted(r for r, _ in server.received) == ["r0@example.org", "r2@example.org"]


def _fields(message: Message) -> dict[str, object]:
    return {name: getattr(message, name) for name in Message.__slots__}


class BrokenProvider(OutboxProvider):
    """A provider with a bug: it writes part of a batch, then raises."""

    def send(self, messages: Sequence[Message]) -> BatchResult:
        super().send(messages[:3])
        raise RuntimeError("bug in the provider")


def test_a_provider_that_raises_leaves_its_batch_unknown_and_stops_the_send(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(csv=readers(250))
    settings = load_settings(root / "newsletter.toml")
    report = send_issue(root / SAMPLE_ISSUE, settings, BrokenProvider(root / "outbox"), environ={})
    assert report is not None
    # Nobody can say which of that batch went: unknown, never pending (no blind re-send).
    assert report.counts.unknown == 100 and report.counts.pending == 150
    assert report.status is IssueStatus.STOPPED
    assert "bug in the provider" in (report.this_run.stopped or "")
    ledger = open_ledger(settings)
    try:
        assert ledger.counts(SLUG).unknown == 100  # nothing was left in flight
        assert ledger.recipients(SLUG, RecipientStatus.INFLIGHT) == []
    finally:
        ledger.close()


def test_the_unknown_report_counts_every_one_and_warns_before_a_resend(
    make_project: Callable[..., Path],
) -> None:
    """The count is the ledger's total, not the length of the excerpt printed, and the
    advice never says to simply re-send (some of them were most likely delivered)."""
    root = make_project(csv=readers(250))
    settings = load_settings(root / "newsletter.toml")
    send_issue(root / SAMPLE_ISSUE, settings, BrokenProvider(root / "outbox"), environ={})
    # The next run (a normal provider, the outbox) looks at its files: the 3 written are
    # found; the rest of that batch goes normally.  Here, a provider that cannot look:
    ledger = open_ledger(settings)
    try:
        with ledger.transaction() as db:
            db.execute("UPDATE recipients SET status = 'unknown' WHERE status != 'withdrawn'")
            # As a provider that emails left them: batches through the outbox alone are a
            # trial (nobody emailed), which a provider that emails starts afresh.
            db.execute("UPDATE batches SET provider = 'smtp'")
    finally:
        ledger.close()
    (root / "newsletter.toml").write_text(
        (root / "newsletter.toml").read_text().replace('name = "outbox"', 'name = "smtp"'),
        encoding="utf-8",
    )
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert "unknown 250: may or may not have been delivered" in out, out
    assert "gets it twice" in out and "... and 200 more" in out
    assert code == 1


def test_a_100_kb_name_and_control_characters_fail_nobody(
    make_project: Callable[..., Path],
) -> None:
    huge = "x" * 100_000
    root = make_project(
        # (The sample reader `check` renders is the first row: a normal one.)
        csv=HEADER
        + "ok@example.org,Ok,,,\n"
        + f"long@example.org,{huge},{huge},,\n"
        + 'nul@example.org,"A\x00B\x07C",D\x1bE,,\n'
    )
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0, out
    assert "audience 3: sent 3, failed 0" in out
    for path in (root / "outbox" / SLUG).glob("*.eml"):
        data = path.read_bytes()
        head = data.split(b"\r\n\r\n", 1)[0]
        assert max(len(line) for line in head.split(b"\r\n")) <= 998, path.name
        parsed = email.message_from_bytes(data, policy=policy.default)
        assert not any(ord(c) < 32 for c in str(parsed["To"]))
    nul = (root / "outbox" / SLUG / "nul@example.org.eml").read_bytes()
    assert b"To: ABC DE <nul@example.org>" in nul
    long_to = email.message_from_bytes(
        (root / "outbox" / SLUG / "long@example.org.eml").read_bytes(), policy=policy.default
    )["To"]
    assert long_to.addresses[0].addr_spec == "long@example.org"
    assert len(long_to.addresses[0].display_name) <= 64


def test_to_mime_keeps_every_header_line_within_998_octets(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(csv=readers(1))
    settings = load_settings(root / "newsletter.toml")
    factory = MessageFactory(prepare(root / SAMPLE_ISSUE, settings), settings, b"k" * 32)
    name = "Ünïcödé " * 5000
    message = factory.build("a@example.org", "a@example.org", {"first_name": name})
    head = to_mime(message).split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998


def test_over_smtp_a_non_ascii_address_stops_nothing_and_leaves_nothing_unknown(
    make_project: Callable[..., Path],
    relay: tuple[Relay, int],  # noqa: F811
) -> None:
    """It used to: 100 unknown, 49 of them delivered, and --resend-unknown (as advised) sent
    those 49 again."""
    server, port = relay
    root = make_project(
        provider=f'name = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"',
        csv=readers(120, {49: "jürgen@example.org,Jürgen,,,"}),
    )
    code, out, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0, out + err
    assert "audience 120: sent 120, failed 0, unknown 0, pending 0" in out
    assert "ask the reader for another address" in out
    received = [rcpt for rcpt, _ in server.received]
    assert sorted(received) == sorted(f"reader{i:03d}@example.org" for i in range(120))
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes", "--resend-unknown")
    assert code == 0 and len(server.received) == 120  # nothing to re-send, nobody twice


@pytest.mark.parametrize("sender", ["jürgen@example.org", "news@bücher.example"])
def test_a_non_ascii_sender_is_a_configuration_error_not_a_failed_reader(
    make_project: Callable[..., Path], sender: str
) -> None:
    """Every message carries the sender: it would fail every reader, permanently."""
    root = make_project(csv=readers(3))
    config = root / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(re.sub(r'(?m)^from = ".*"$', f'from = "News <{sender}>"', text), "utf-8")
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2 and "newsletter.toml" in err and "from" in err, err
    assert not (root / "outbox").exists()


# A field that grows: `replace("", ...)` puts its text between every character, and a chain
# of them multiplies.  A 100 KB name once made a 277 MB message (1.5 GB in memory) that the
# outbox wrote and a provider would have been sent; `check` said ok, as its sample is short.
GROWING = "{{ subscriber.first_name" + "|replace('', 'xxxxxxxxxx')" * 3 + " }}"


def test_a_merge_field_that_grows_a_long_value_fails_that_reader_alone(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(
        csv=HEADER + "ok@example.org,Ok,,,\n" + f"long@example.org,{'A' * 100_000},,,\n"
    )
    draft = root / SAMPLE_ISSUE
    head, sep, body = draft.read_text(encoding="utf-8").partition("\n---\n")
    draft.write_text(head + sep + f"\n{GROWING}\n" + body, encoding="utf-8")
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert "audience 2: sent 1, failed 1" in out, out
    assert code != 0
    ok = (root / "outbox" / SLUG / "ok@example.org.eml").read_bytes()
    assert b"x" * 10 in ok  # the short name was grown and sent
    assert not (root / "outbox" / SLUG / "long@example.org.eml").exists()
    settings = load_settings(root / "newsletter.toml")
    ledger = open_ledger(settings)
    try:
        reason = {row["email"]: row for row in ledger.history(SLUG)}["long@example.org"]["reason"]
    finally:
        ledger.close()
    assert "replace" in reason and "longer than" in reason, reason


def test_many_merge_fields_on_a_long_value_fail_that_reader_alone(
    make_project: Callable[..., Path],
) -> None:
    # 200 distinct fields of a 100 KB name: 20 MB for one reader, past what providers take.
    fields = " ".join(f"{{{{ subscriber.first_name ~ '{i}' }}}}" for i in range(200))
    root = make_project(
        csv=HEADER + "ok@example.org,Ok,,,\n" + f"long@example.org,{'A' * 100_000},,,\n"
    )
    draft = root / SAMPLE_ISSUE
    head, sep, body = draft.read_text(encoding="utf-8").partition("\n---\n")
    draft.write_text(head + sep + f"\n{fields}\n" + body, encoding="utf-8")
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 1 and "audience 2: sent 1, failed 1" in out, out
    assert not (root / "outbox" / SLUG / "long@example.org.eml").exists()
    ledger = open_ledger(load_settings(root / "newsletter.toml"))
    try:
        reason = {row["email"]: row for row in ledger.history(SLUG)}["long@example.org"]["reason"]
    finally:
        ledger.close()
    assert "more than a provider takes" in reason, reason


def test_adding_a_non_ascii_address_by_hand_says_what_to_do(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(csv=readers(2, {}))
    before = (root / "subscribers.csv").read_bytes()
    code, out, err = newsletter(root, "subscribers", "add", "jürgen@bücher.de")
    assert code == 2 and out == ""
    assert err == (
        "error: 'jürgen@bücher.de' is not a valid address: it has 'ü' before the @, which most"
        " email services cannot deliver to (it needs SMTPUTF8): ask the reader for another"
        " address\n"
    )
    assert (root / "subscribers.csv").read_bytes() == before
