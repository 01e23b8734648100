"""The ``newsletter`` command: parse options, call a pipeline function, print the result.

Every command is a thin shell over functions tests call directly.  Errors become one line on
stderr, naming the file, line and field; exit codes: 0 done, 1 problems found, 2 bad input.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import webbrowser
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.config import Settings, load_settings
from pipeline.delivery.provider import Outcome
from pipeline.errors import InputError, NewsletterError
from pipeline.schedule import Decision

if TYPE_CHECKING:
    from pipeline.events.sync import SyncReport
    from pipeline.sending import SendPlan, SendReport

EXIT_PROBLEMS = 1
EXIT_BAD_INPUT = 2


class NewsletterGroup(click.Group):
    """Turns pipeline errors into one clear line and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"error: {exc.location_message()}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except NewsletterError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_PROBLEMS)


def _settings(ctx: click.Context) -> Settings:
    config: Path | None = ctx.obj.get("config")
    return load_settings(config)


@click.group(cls=NewsletterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="newsletter.toml to use (default: found from the current folder upwards).",
)
@click.version_option(package_name="newsletter-pipeline")
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """Write a newsletter in Markdown; render, check, preview and send it.

    \b
    newsletter new "Why hip rotation matters"
    newsletter check newsletters/2025-07-21-hip-rotation.md
    newsletter build newsletters/2025-07-21-hip-rotation.md
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=".")
def init(folder: Path) -> None:
    """Start a newsletter in an empty folder.

    Creates newsletter.toml, templates/, newsletters/ (with a first draft) and a sample
    subscribers.csv.

    \b
    newsletter init my-newsletter
    """
    from pipeline.project import init_project

    for path in init_project(folder, datetime.now().date()):
        click.echo(f"created {path}")
    click.echo("next: edit newsletter.toml (name, from, postal_address), then `newsletter check`")


@cli.command()
@click.argument("title")
@click.pass_context
def new(ctx: click.Context, title: str) -> None:
    """Scaffold a new issue: newsletters/YYYY-MM-DD-slug.md.

    \b
    newsletter new "Why hip rotation matters"
    """
    from pipeline.project import new_issue

    settings = _settings(ctx)
    today = datetime.now(settings.timezone).date()
    click.echo(f"created {new_issue(settings.newsletters_dir, title, today)}")


@cli.command()
@click.argument("issue", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write to (default: build/<slug>/).",
)
@click.pass_context
def build(ctx: click.Context, issue: Path, out: Path | None) -> None:
    """Render an issue to HTML, text and MJML, for a sample subscriber.

    \b
    newsletter build newsletters/2025-07-21-hip-rotation.md
    """
    from pipeline.build import build_issue

    result = build_issue(issue, _settings(ctx), out)
    for path in (result.html, result.text, result.mjml):
        click.echo(str(path))
    click.echo(f"HTML size: {result.html_bytes / 1024:.1f} KB (Gmail clips at 102 KB)")


@cli.command()
@click.argument("issues", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_context
def check(ctx: click.Context, issues: tuple[Path, ...]) -> None:
    """Check issues before they go out: one line per problem, exit 1 if any.

    \b
    newsletter check newsletters/2025-07-21-hip-rotation.md
    """
    from pipeline.render.checks import check_issue

    settings = _settings(ctx)
    found = 0
    for path in issues:
        problems = check_issue(path, settings)
        for problem in problems:
            click.echo(problem.location_message())
        if not problems:
            click.echo(f"{path}: ok")
        found += len(problems)
    if found:
        click.echo(f"{found} problem{'s' if found != 1 else ''} found", err=True)
        ctx.exit(EXIT_PROBLEMS)


@cli.command()
@click.argument("issue", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--port", default=8025, show_default=True, help="Port on 127.0.0.1 (0: any free).")
@click.option("--no-open", is_flag=True, help="Do not open a browser.")
@click.pass_context
def preview(ctx: click.Context, issue: Path, port: int, no_open: bool) -> None:
    """Serve the rendered issue on 127.0.0.1, desktop and phone side by side.

    Re-renders when the draft, a template or newsletter.toml changes.

    \b
    newsletter preview newsletters/2025-07-21-hip-rotation.md
    """
    from pipeline.preview import PreviewRenderer, make_server

    config = ctx.obj.get("config")
    _settings(ctx)  # fail now, clearly, on a bad config
    renderer = PreviewRenderer(issue, lambda: load_settings(config))
    server = make_server(renderer, port)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    click.echo(f"previewing {issue} at {url} (Ctrl-C to stop)")
    if not no_open:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _print_report(report: SendReport, settings: Settings, *, quiet: bool = False) -> None:
    counts = report.counts
    click.echo(f"{report.slug}: {report.status.value}")
    click.echo(
        f"  audience {counts.audience}: sent {counts.sent}, failed {counts.failed}, "
        f"unknown {counts.unknown}, pending {counts.pending}"
    )
    run = report.this_run
    click.echo(
        f"  this run via {settings.provider.name}: sent {run.sent}, failed {run.failed}, "
        f"unknown {run.unknown}"
        + (f"; {report.reconciled} found already delivered" if report.reconciled else "")
    )
    asked = report.asked
    if asked is not None and (asked.found or asked.resent or asked.waiting or asked.problem):
        name = settings.provider.name
        click.echo(
            f"  asked {name} about unknown recipients: {asked.found} it had accepted (now"
            f" sent), {asked.resent} it never had (sent by this run), {asked.waiting} not"
            " found yet (asked again by the next run)"
        )
        if asked.problem:
            click.echo(f"    could not ask: {asked.problem}")
    if report.skipped:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(report.skipped.items()))
        click.echo(f"  skipped {sum(report.skipped.values())} rows: {reasons}")
    if report.withdrawn:
        click.echo(f"  withdrawn: {report.withdrawn} opted out since the send began")
    limit = 5 if quiet else 50
    for item in report.invalid[:limit]:
        click.echo(f"  invalid row {settings.subscribers}:{item.line}: {item.detail}")
    for email, reason in report.failures[:limit]:
        click.echo(f"  failed {email}: {reason}")
    if report.unknown:
        replayable = report.unknown_replayable
        click.echo(f"  unknown {len(report.unknown)}: may or may not have been delivered")
        if replayable:
            click.echo(
                f"    {replayable} in batches this provider was sent: the next run replays them "
                "under the same idempotency key, which it delivers once"
            )
        if asked is not None:
            click.echo(
                f"    the next run asks {settings.provider.name} about them again"
                " before sending anything"
            )
        elif len(report.unknown) > replayable:
            click.echo(
                f"    {len(report.unknown) - replayable}: re-send them with --resend-unknown "
                "once you have checked"
            )
        for email, _ in report.unknown[:limit]:
            click.echo(f"    {email}")
    if run.paused:
        click.echo(f"  paused: {run.paused}. Run again to resume.")
    if run.stopped:
        click.echo(f"  stopped: {run.stopped}. Fix it, then run again to resume.")


def _progress() -> Callable[[int, int], None] | None:
    """A progress bar on stderr, when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // total if total else width
        bar = "#" * filled + "." * (width - filled)
        click.echo(f"\r  [{bar}] {done}/{total}", nl=False, err=True)

    return show


@cli.command()
@click.argument("issue", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--due", is_flag=True, help="Send every issue whose send_at has passed (for cron).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Show what would happen; send nothing.")
@click.option(
    "--to", "to_address", metavar="ADDRESS", help="Send one test copy, outside the ledger."
)
@click.option("--resend-unknown", is_flag=True, help="Re-send recipients whose fate is unknown.")
@click.option("--force", is_flag=True, help="Send an issue edited after its sending began.")
@click.pass_context
def send(
    ctx: click.Context,
    issue: Path | None,
    due: bool,
    yes: bool,
    dry_run: bool,
    to_address: str | None,
    resend_unknown: bool,
    force: bool,
) -> None:
    """Send an issue to the list, exactly once per subscriber.

    Resumes where an interrupted send stopped; never re-sends a recipient recorded as sent.
    Exit codes: 0 all done, 1 some recipients failed, unknown or pending, 2 bad input.

    \b
    newsletter send newsletters/2025-07-21-hip-rotation.md --dry-run
    newsletter send newsletters/2025-07-21-hip-rotation.md --to me@example.org
    newsletter send newsletters/2025-07-21-hip-rotation.md --yes
    newsletter send --due          # from cron
    """
    from pipeline.delivery.providers import create_provider
    from pipeline.sending import dry_run as run_dry
    from pipeline.sending import send_due, send_issue, send_test

    if due == (issue is not None):
        raise click.UsageError("give either ISSUE or --due")
    if due and (dry_run or to_address or resend_unknown or force):
        raise click.UsageError("--due takes no other option: cron sends as configured")
    settings = _settings(ctx)
    environ = dict(os.environ)
    if due:
        due_run = send_due(settings, environ, now=datetime.now(UTC))
        for plan in due_run.plans:
            if plan.decision is Decision.TOO_LATE:
                click.echo(f"{plan.draft.slug}: not sent: {plan.detail}")
        if due_run.suppressions is not None:
            _print_sync(due_run.suppressions)
        if due_run.suppressions_problem:
            click.echo(
                f"warning: suppression lists not read ({due_run.suppressions_problem});"
                " sending with the list as it is",
                err=True,
            )
        for problem in due_run.problems:
            click.echo(f"error: {problem.location_message()}", err=True)
        for due_report in due_run.reports:
            _print_report(due_report, settings, quiet=True)
        ctx.exit(due_run.exit_code)
    assert issue is not None
    provider = create_provider(settings, environ)
    try:
        if dry_run:
            preview = run_dry(issue, settings, provider, environ)
            click.echo(f'{preview.slug}: "{preview.subject}" via {preview.provider} (dry run)')
            click.echo(f"  audience: {preview.audience} subscribers")
            if preview.skipped:
                reasons = ", ".join(f"{r} {n}" for r, n in sorted(preview.skipped.items()))
                click.echo(f"  skipped: {reasons}")
            for item in preview.invalid[:20]:
                click.echo(f"  invalid row {settings.subscribers}:{item.line}: {item.detail}")
            if preview.ledger_counts is None:
                click.echo("  would start a new send")
            else:
                c = preview.ledger_counts
                click.echo(
                    f"  would resume ({preview.ledger_status}): sent {c.sent}, failed {c.failed}, "
                    f"unknown {c.unknown}, pending {c.pending}"
                )
            for message in preview.samples:
                click.echo(f"  --- To: {message.to}\n      Subject: {message.subject}")
                for name, value in message.headers:
                    click.echo(f"      {name}: {value}")
            click.echo("nothing was sent; run without --dry-run to send")
            return
        if to_address:
            message, result = send_test(issue, settings, provider, to_address, environ)
            click.echo(f"test copy to {message.to}: {result.outcome.value} {result.provider_id}")
            if result.reason:
                click.echo(f"  {result.reason}")
            ctx.exit(0 if result.outcome is Outcome.SENT else 1)

        def confirm(plan: SendPlan) -> bool:
            if plan.resuming and plan.counts is not None:
                what = (
                    f'Resume "{plan.subject}": {plan.counts.sent} sent, '
                    f"{plan.audience} still to send via {plan.provider}?"
                )
            else:
                what = f'Send "{plan.subject}" to {plan.audience} subscribers via {plan.provider}?'
            if yes:
                return True
            if not sys.stdin.isatty():
                raise click.UsageError(f"{what} Add --yes to send without a terminal.")
            return click.confirm(what, default=False)

        report = send_issue(
            issue,
            settings,
            provider,
            environ=environ,
            resend_unknown=resend_unknown,
            force=force,
            confirm=None if yes else confirm,
            progress=_progress(),
        )
    finally:
        provider.close()
    if report is None:
        click.echo("not sent")
        ctx.exit(1)
    if sys.stderr.isatty():
        click.echo("", err=True)
    _print_report(report, settings)
    ctx.exit(report.exit_code)


@cli.command()
@click.argument("issue", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per issue.")
@click.pass_context
def status(ctx: click.Context, issue: Path | None, as_json: bool) -> None:
    """Per issue: audience, sent, failed, unknown, pending, and when.

    \b
    newsletter status
    newsletter status newsletters/2025-07-21-hip-rotation.md --json
    """
    from pipeline.sending import status_rows

    rows = status_rows(_settings(ctx), issue.stem if issue else None)
    if as_json:
        keys = (
            "issue",
            "audience",
            "sent",
            "failed",
            "unknown",
            "pending",
            "when",
            "provider_says",
        )
        click.echo(json.dumps([{k: row[k] for k in keys} for row in rows], indent=2))
        return
    if not rows:
        click.echo("nothing has been sent yet")
        return
    for row in rows:
        note = f" ({row['note']})" if row["note"] else ""
        click.echo(
            f"{row['issue']}: {row['status']}{note}, {row['when']}\n"
            f"  audience {row['audience']}: sent {row['sent']}, failed {row['failed']}, "
            f"unknown {row['unknown']}, pending {row['pending']}"
        )
        says = row["provider_says"]
        if isinstance(says, dict) and says:
            # What the provider's events said since: delivered, bounced, complained...
            click.echo("  provider says: " + ", ".join(f"{k} {n}" for k, n in says.items()))


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else plural or word + 's'}"


@cli.group(short_help="Check, list, add, remove and export the list.")
def subscribers() -> None:
    """Look after the list (subscribers.csv): check it, list, add, remove, export.

    Every change goes through one writer: under a lock, by temp file and rename, rows it does
    not change copied back exactly.

    \b
    newsletter subscribers check
    newsletter subscribers list --tag runners
    newsletter subscribers add sam@example.org --first-name Sam --tag runners
    newsletter subscribers resubscribe alan@example.org
    newsletter subscribers remove grace@example.org
    newsletter subscribers export --out subscribers-export.csv
    """


def _list_path(ctx: click.Context) -> Path:
    return _settings(ctx.find_root()).subscribers


def _list_to_change(ctx: click.Context) -> Path:
    """The list, with what the web app has queued applied first: a change by hand then lands
    after an opt-out or a confirmation answered before it, never under it."""
    from pipeline.audience.change_queue import apply_queued
    from pipeline.sending import LEDGER_NAME, open_ledger

    settings = _settings(ctx.find_root())
    if (settings.state_dir / LEDGER_NAME).exists():
        ledger = open_ledger(settings)
        try:
            apply_queued(ledger.db, settings.subscribers, settings.state_dir)
        finally:
            ledger.close()
    return settings.subscribers


def _record_by_hand(ctx: click.Context, email: str, action: str, detail: str) -> None:
    """The consent history's line for a change made with a command."""
    from pipeline.ledger.consent import record_consent
    from pipeline.sending import open_ledger

    try:
        ledger = open_ledger(_settings(ctx.find_root()))
        try:
            record_consent(ledger.db, email, action, "by-hand", detail=detail)
        finally:
            ledger.close()
    except sqlite3.Error as exc:
        click.echo(f"warning: not written to the consent history: {exc}", err=True)


@subscribers.command(name="check", short_help="Counts, invalid rows, duplicates, columns read.")
@click.pass_context
def subscribers_check(ctx: click.Context) -> None:
    """Counts by status and tag, invalid rows and duplicates; exit 1 if a row is invalid.

    Also says how it read the header: which columns it took for email, first_name,
    last_name and tags (e.g. "First Name"), and a separator other than commas.

    \b
    newsletter subscribers check
    """
    from pipeline.audience.csv_source import read_header
    from pipeline.audience.list_writer import remove_leftovers
    from pipeline.audience.subscribers import check_list

    path = _list_path(ctx)
    report = check_list(path)
    header = read_header(path)
    if removed := remove_leftovers(path):
        click.echo(
            f"  removed {_plural(removed, 'copy', 'copies')} of the list left by an "
            "interrupted change"
        )
    click.echo(f"{path}: {_plural(report.rows, 'row')}, {report.audience:,} would get an issue")
    if header.mapped:
        mapped = ", ".join(f"'{cell}' as {name}" for cell, name in header.mapped)
        click.echo(f"  columns read: {mapped}")
    if header.delimiter != ",":
        click.echo(f"  separated by {DELIMITER_NAMES[header.delimiter]}, not commas")
    for name, count in sorted(report.by_status.items()):
        click.echo(f"  {name}: {count:,}")
    if report.by_tag:
        tags = ", ".join(f"{tag} {n:,}" for tag, n in sorted(report.by_tag.items()))
        click.echo(f"  tags (subscribed): {tags}")
    for item in report.invalid:
        click.echo(f"{path}:{item.line}: invalid: {item.detail}")
    for item in report.duplicates:
        click.echo(f"{path}:{item.line}: duplicate of an earlier row: {item.email}")
    for item in report.suppressed:
        click.echo(f"{path}:{item.line}: not sent: {item.detail}: {item.email}")
    if report.invalid:
        ctx.exit(EXIT_PROBLEMS)


DELIMITER_NAMES = {";": "semicolons", "\t": "tabs", ",": "commas"}
STATUS_CHOICE = click.Choice(["subscribed", "unsubscribed", "bounced", "complained"])


@subscribers.command(name="list", short_help="Print the list (--status, --tag).")
@click.option("--status", type=STATUS_CHOICE, help="Only rows with this status.")
@click.option("--tag", help="Only rows with this tag.")
@click.pass_context
def subscribers_list(ctx: click.Context, status: str | None, tag: str | None) -> None:
    """Print the list: address, status, name and tags, one row a line.

    \b
    newsletter subscribers list
    newsletter subscribers list --status unsubscribed
    newsletter subscribers list --tag runners
    """
    from pipeline.audience.listing import entries

    count = 0
    for entry in entries(_list_path(ctx), status=status, tag=tag):
        tags = ", ".join(sorted(entry.tags))
        click.echo(f"{entry.email:<34} {entry.status:<12} {entry.name:<24} {tags}".rstrip())
        count += 1
    which = " ".join(w for w in (status, f"tagged {tag}" if tag else None) if w)
    click.echo(f"{_plural(count, 'row')}{f' ({which})' if which else ''}")


@subscribers.command(name="add", short_help="Add someone, subscribed.")
@click.argument("email")
@click.option("--first-name", default="", help="First name (for {{ subscriber.first_name }}).")
@click.option("--last-name", default="", help="Last name.")
@click.option("--tag", "tags", multiple=True, help="A tag; repeat for several.")
@click.pass_context
def subscribers_add(
    ctx: click.Context, email: str, first_name: str, last_name: str, tags: tuple[str, ...]
) -> None:
    """Add someone to the list, subscribed.

    Someone already on the list is left as they are (use `resubscribe` for someone who
    asked to be back).

    \b
    newsletter subscribers add sam@example.org --first-name Sam --last-name Ortiz
    newsletter subscribers add kim@example.org --tag runners --tag seniors
    """
    from pipeline.audience.list_writer import ListChange, apply_changes
    from pipeline.audience.listing import find
    from pipeline.audience.subscribers import parse_tags

    path = _list_to_change(ctx)
    existing = find(path, email)
    if existing:
        first = existing[0]
        raise InputError(
            f"{email} is already on the list ({first.status}): nothing changed"
            + (
                "; `newsletter subscribers resubscribe` if they asked to be back"
                if first.status != "subscribed"
                else ""
            ),
            path=path,
            line=first.line,
        )
    tag_list = sorted(parse_tags(";".join(tags)))
    fields = {"first_name": first_name, "last_name": last_name}
    if tag_list:
        fields["tags"] = ";".join(tag_list)
    change = ListChange(email, fields={k: v for k, v in fields.items() if v}, create=True)
    result = apply_changes(path, [change])
    if result.added:
        _record_by_hand(ctx, email, "added", "newsletter subscribers add")
    what = f" (tags: {', '.join(tag_list)})" if tag_list else ""
    if result.added:
        click.echo(f"added {email}: subscribed{what}")
    else:  # added by someone else (the sign-up form) a moment ago
        click.echo(f"{email} was already on the list: nothing added")


@subscribers.command(name="remove", short_help="Delete an address (an erasure request).")
@click.argument("email")
@click.pass_context
def subscribers_remove(ctx: click.Context, email: str) -> None:
    """Delete every row of an address from the list (an erasure request).

    To stop sending but keep the row, use `newsletter unsubscribe ADDRESS` instead: an
    unsubscribed row also stops a later import from adding them back.  The ledger
    (.newsletter/) still records the issues already sent to the address.

    \b
    newsletter subscribers remove grace@example.org
    """
    from pipeline.audience.list_writer import ListChange, apply_changes

    path = _list_to_change(ctx)
    result = apply_changes(path, [ListChange(email, delete=True)])
    if result.removed:
        _record_by_hand(ctx, email, "removed", "newsletter subscribers remove")
    if not result.removed:
        raise InputError(f"{email} is not on the list: nothing removed", path=path)
    click.echo(f"removed {email} from {path} ({_plural(result.removed, 'row')} deleted)")


@subscribers.command(name="resubscribe", short_help="Subscribe again someone who asked.")
@click.argument("email")
@click.pass_context
def subscribers_resubscribe(ctx: click.Context, email: str) -> None:
    """Subscribe again someone who unsubscribed (only when they asked to be back).

    \b
    newsletter subscribers resubscribe alan@example.org
    """
    from pipeline.audience.list_writer import ListChange, apply_changes
    from pipeline.audience.listing import find

    path = _list_to_change(ctx)
    before = find(path, email)
    if not before:
        raise InputError(
            f"{email} is not on the list: `newsletter subscribers add {email}` adds them",
            path=path,
        )
    result = apply_changes(path, [ListChange(email, status="subscribed")])
    if result.changed:
        _record_by_hand(ctx, email, "resubscribed", "newsletter subscribers resubscribe")
    was = ", ".join(sorted({entry.status for entry in before}))
    if result.changed:
        click.echo(f"{email}: subscribed again (was {was})")
    else:
        click.echo(f"{email}: already subscribed; nothing changed")


@subscribers.command(name="export", short_help="A clean UTF-8 copy of the list.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: print to the screen).",
)
@click.pass_context
def subscribers_export(ctx: click.Context, out: Path | None) -> None:
    """A clean copy of the list: UTF-8, commas, standard column names first.

    A file gets a UTF-8 byte-order mark, so Excel shows accents (José) right when it opens
    it.

    \b
    newsletter subscribers export --out subscribers-export.csv
    newsletter subscribers export > copy.csv
    """
    from pipeline.audience.listing import export

    path = _list_path(ctx)
    if out is None:
        export(path, sys.stdout)
        return
    if out.resolve() == path.resolve():
        raise InputError("--out is the list itself: choose another file", field="--out")
    temp = out.with_name(f".{out.name}.tmp")
    try:
        with temp.open("w", encoding="utf-8-sig", newline="") as target:
            count = export(path, target)
        temp.replace(out)
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}", field="--out") from None
    finally:
        temp.unlink(missing_ok=True)
    click.echo(f"exported {_plural(count, 'row')} to {out}")


@subscribers.command(name="history")
@click.argument("address")
@click.pass_context
def subscribers_history(ctx: click.Context, address: str) -> None:
    """Proof of consent: every recorded change for one address, oldest first.

    Signup (time, IP, browser, the form's page), confirmation, and each later change with
    its cause (one-click, by hand, bounce, complaint...).

    \b
    newsletter subscribers history ada.runner@example.org
    """
    from pipeline.ledger.consent import consent_history
    from pipeline.sending import LEDGER_NAME, open_ledger

    settings = _settings(ctx.find_root())
    events = []
    if (settings.state_dir / LEDGER_NAME).exists():
        ledger = open_ledger(settings)
        try:
            events = consent_history(ledger.db, address)
        finally:
            ledger.close()
    if not events:
        click.echo(f"{address}: nothing recorded")
        return
    click.echo(f"{address}: {len(events)} event{'s' if len(events) != 1 else ''}")
    for event in events:
        click.echo(f"  {event.describe()}")


@cli.command(short_help="Unsubscribe an address, or apply a link.")
@click.argument("target", metavar="ADDRESS_OR_LINK")
@click.pass_context
def unsubscribe(ctx: click.Context, target: str) -> None:
    """Unsubscribe a reader, by address (a request by phone or mail) or by their link.

    A link (or its token) is checked against its signature, so a forged one changes
    nothing.  The row stays, marked unsubscribed, so a later import cannot add them back;
    `newsletter subscribers remove` deletes it instead.

    \b
    newsletter unsubscribe ada@example.org
    newsletter unsubscribe 'https://movementsolutions.example/unsubscribe?token=...'
    """
    from urllib.parse import parse_qs, urlsplit

    from pipeline.audience.list_writer import ListChange, apply_changes
    from pipeline.messages.secret import load_secret
    from pipeline.messages.unsubscribe import read_token

    settings = _settings(ctx)
    path = settings.subscribers
    by_address = "@" in target and "token=" not in target
    if by_address:
        address = target.strip()
    else:
        token = target
        if "token=" in token:
            token = parse_qs(urlsplit(token).query).get("token", [""])[0]
        key = read_token(
            load_secret(settings.state_dir, os.environ), token.removeprefix("unsubscribe ")
        )
        if key is None:
            raise InputError(
                "not a valid unsubscribe token or link (wrong signature, or cut short), "
                "nor an address"
            )
        address = key
    _list_to_change(ctx)
    result = apply_changes(path, [ListChange(address, status="unsubscribed")])
    if result.changed or result.unchanged:
        _record_by_hand(ctx, address, "unsubscribed", "newsletter unsubscribe")
    if result.changed:
        click.echo(f"{address}: unsubscribed ({_plural(result.changed, 'row')} changed)")
    elif result.unchanged:
        click.echo(f"{address}: already unsubscribed; nothing changed")
    elif by_address:
        raise InputError(
            f"{address} is not on the list: nothing changed (check the spelling)", path=path
        )
    else:
        click.echo(f"{address}: not on the list (any more); nothing to change")


@cli.group()
def suppressions() -> None:
    """The provider's own lists of bounced, complained and unsubscribed addresses."""


def _count(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _print_sync(report: SyncReport) -> None:
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(report.by_type.items()))
    read = _count(report.read, "entry", "entries")
    click.echo(
        f"{report.provider}: {read} read from {', '.join(report.lists)}"
        + (f" ({kinds})" if kinds else "")
        + f", {report.new} new"
    )
    changed = report.applied.changed
    click.echo(f"  subscribers.csv: {_count(len(changed), 'address', 'addresses')} changed")
    for effect in changed:
        click.echo(f"    {effect.email}: {effect.status} - {effect.why}")
    missing = len(report.applied.not_on_list)
    if missing:
        click.echo(f"  {_count(missing, 'address', 'addresses')} not on the list (unchanged)")


@suppressions.command(name="sync")
@click.pass_context
def suppressions_sync(ctx: click.Context) -> None:
    """Read the provider's suppression lists into subscribers.csv.

    Bounced, complained and unsubscribed addresses at Postmark (the stream's suppressions),
    SendGrid, Mailgun, Amazon SES or Brevo become that status in the list, each recorded in
    the consent history. Safe to run again: entries already read change nothing.

    \b
    newsletter suppressions sync
    """
    from pipeline.events.suppressions import run_sync

    _print_sync(run_sync(_settings(ctx), dict(os.environ)))


def _log_line(line: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    click.echo(f"{stamp} {line}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8026, show_default=True, help="Port (0: any free).")
@click.option(
    "--threads", default=8, show_default=True, help="Requests handled at once (worker threads)."
)
@click.option(
    "--proxies",
    default=0,
    show_default=True,
    help="Reverse proxies in front that set X-Forwarded-For (nginx on this machine: 1).",
)
@click.option("--snippet", is_flag=True, help="Print an HTML signup form to paste into a page.")
@click.pass_context
def serve(
    ctx: click.Context, host: str, port: int, threads: int, proxies: int, snippet: bool
) -> None:
    """Serve the web app: signup with double opt-in, confirm, unsubscribe, /healthz.

    Put it behind the site at base_url (see README: nginx, systemd). Signups are confirmed
    by email before they join subscribers.csv; one-click opt-outs are recorded at once and
    written into the list within moments (and before any send).

    \b
    newsletter serve --port 8026
    newsletter serve --snippet > signup-form.html
    """
    import signal

    from pipeline.web import create_app
    from pipeline.web.app import subscriptions_of
    from pipeline.web.mail import transactional_provider
    from pipeline.web.server import make_server, stop_server
    from pipeline.web.server import snippet as signup_snippet

    settings = _settings(ctx)
    if snippet:
        click.echo(signup_snippet(create_app(settings, background=False), settings))
        return
    # The provider's settings and secrets are checked now, not at the first signup.
    transactional_provider(settings, os.environ).close()
    app = create_app(settings, trusted_proxies=proxies, log=_log_line)
    try:
        server = make_server(app, host, port, threads=threads)
    except OSError as exc:
        subscriptions_of(app).close()
        raise NewsletterError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    where = f"http://{host}:{server.effective_port}"  # type: ignore[union-attr]
    click.echo(
        f"serving {settings.name} at {where}/subscribe (and /confirm, /unsubscribe, /healthz) "
        f"for {settings.subscribers} (Ctrl-C to stop)"
    )

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # systemctl stop sends SIGTERM: stop the same way as Ctrl-C

    signal.signal(signal.SIGTERM, stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        stop_server(server)
        subscriptions_of(app).close()  # finish the emails in hand, apply what is queued
        click.echo("stopped")


@cli.command("unsubscribe-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8026, show_default=True, help="Port (0: any free).")
@click.pass_context
def unsubscribe_server(ctx: click.Context, host: str, port: int) -> None:
    """The old name of `newsletter serve`, kept so existing setups keep working.

    \b
    newsletter unsubscribe-server --port 8026
    """
    ctx.invoke(serve, host=host, port=port)


@cli.command()
def providers() -> None:
    """List the email providers, with the settings and secrets each needs.

    \b
    newsletter providers
    """
    from pipeline.delivery.provider import COMMON_OPTIONS
    from pipeline.delivery.providers import REGISTRY
    from pipeline.events.receive import WEBHOOK_SECRETS
    from pipeline.events.suppressions import READERS

    for info in REGISTRY.values():
        click.echo(f"{info.name}: {info.summary}")
        for secret in info.secrets:
            click.echo(f"  secret (environment): {secret}")
        if info.name in WEBHOOK_SECRETS:
            click.echo(f"  webhooks at /webhooks/{info.name}: {WEBHOOK_SECRETS[info.name]}")
        if info.name in READERS:
            click.echo("  suppression lists: newsletter suppressions sync")
        for option, meaning in info.options.items():
            click.echo(f"  [provider] {option}: {meaning}")
    click.echo("every provider also takes:")
    for option, meaning in COMMON_OPTIONS.items():
        click.echo(f"  [provider] {option}: {meaning}")


def main() -> None:
    cli(obj={})
