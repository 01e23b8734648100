"""The ``newsletter`` command: parse options, call a pipeline function, print the result.

Every command is a thin shell over functions tests call directly.  Errors become one line on
stderr, naming the file, line and field; exit codes: 0 done, 1 problems found, 2 bad input.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import json
import os
import shlex
import sqlite3
import sys
import webbrowser
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.config import Settings, load_settings
from pipeline.delivery.provider import Outcome
from pipeline.errors import InputError, NewsletterError, StoppedEarly
from pipeline.schedule import Decision, IssueState
from pipeline.wording import count as counted
from pipeline.wording import local_time, shown, stopped_by

if TYPE_CHECKING:
    from pipeline.audience.subscribers import Skipped
    from pipeline.events.sync import SyncReport
    from pipeline.sending import SendPlan, SendReport

EXIT_PROBLEMS = 1
EXIT_BAD_INPUT = 2


_READING = "newsletter.command_being_read"


def port_option(default: int, help: str) -> Callable[[Any], Any]:
    """``--port`` of the commands that serve (preview, serve): a TCP port, 0 for any free."""
    return click.option(
        "--port", default=default, show_default=True, type=click.IntRange(0, 65535), help=help
    )


class NewsletterGroup(click.Group):
    """Turns pipeline errors into one clear line and exit code 2, never a traceback."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command's whole first sentence, wrapped, instead of click's cut-off "...":
        the list in `--help` is how a person finds the command she needs."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        # click raises some option errors ("'--to' requires an argument") with no context:
        # remember which command was being read, so the hint names its --help.
        if name is not None:
            ctx.meta[_READING] = f"{ctx.command_path} {name}"
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            # click's own four lines (usage, hint, blank, error) become one, like ours.
            if exc.ctx is not None:
                where = exc.ctx.command_path
            else:
                where = ctx.meta.get(_READING, ctx.command_path)
            click.echo(f"error: {exc.format_message()} ({where} --help shows how)", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except InputError as exc:
            click.echo(f"error: {exc.location_message()}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except StoppedEarly as exc:
            from pipeline.sending import EXIT_INTERRUPTED  # run it again: as a stopped send

            click.echo(f"not sent: {exc}", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except NewsletterError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_PROBLEMS)


NewsletterGroup.group_class = NewsletterGroup  # `subscribers` and any other group alike


def _settings(ctx: click.Context) -> Settings:
    config: Path | None = ctx.obj.get("config")
    return load_settings(config)


def _existing_issue(settings: Settings, issue: Path) -> Path:
    """The draft she named; when it is not there, say which one she probably meant."""
    if issue.is_file():
        return issue
    if issue.is_dir():
        raise InputError("is a folder, not a draft: name one .md file in it", path=issue)
    folder = settings.newsletters_dir
    names = sorted(p.name for p in folder.glob("*.md")) if folder.is_dir() else []
    guesses = [name for name in names if issue.stem and issue.stem in name]
    guesses = guesses or difflib.get_close_matches(issue.name, names, n=1)
    if len(guesses) == 1:
        hint = f"; did you mean {shown(folder / guesses[0])}?"
    elif names:
        hint = f"; the drafts are in {shown(folder)}/ (newsletter status lists them)"
    else:
        hint = ""
    raise InputError(f"no such file{hint}", path=issue)


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

    Start with `newsletter init`; then, inside the folder it made:

    \b
    newsletter new "Why hip rotation matters"
    newsletter check newsletters/*-why-hip-rotation-matters.md
    newsletter preview newsletters/*-why-hip-rotation-matters.md
    newsletter send newsletters/*-why-hip-rotation-matters.md --dry-run
    newsletter status
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=".")
def init(folder: Path) -> None:
    """Start a newsletter in an empty folder (default: this one).

    Creates newsletter.toml, templates/, newsletters/ (with a first draft) and a sample
    subscribers.csv, then prints what to do next.

    \b
    newsletter init my-newsletter
    """
    from pipeline.project import init_project, next_steps

    created = init_project(folder, datetime.now().date())
    for path in created:
        click.echo(f"created {path}")
    click.echo(next_steps(folder, created[-1]))


@cli.command()
@click.argument("title")
@click.pass_context
def new(ctx: click.Context, title: str) -> None:
    """Start a new issue: newsletters/YYYY-MM-DD-slug.md, dated today.

    The draft has its front matter (subject, preheader, a commented-out send_at and tags)
    and a body to replace; nothing is sent until you send it or give it a send_at.

    \b
    newsletter new "Why hip rotation matters"
    """
    from pipeline.project import new_issue

    settings = _settings(ctx)
    today = datetime.now(settings.timezone).date()
    path = new_issue(settings.newsletters_dir, title, today)
    click.echo(f"created {shown(path)}")
    click.echo(f"next: write it, then: newsletter preview {shlex.quote(shown(path))}")


@cli.command()
@click.argument("issue", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write to (default: build/<slug>/).",
)
@click.pass_context
def build(ctx: click.Context, issue: Path, out: Path | None) -> None:
    """Render an issue to HTML, text and MJML, as the first subscriber would get it.

    Writes build/<slug>/email.html, email.txt and email.mjml, filled in for the first
    subscribed row of the list (or a sample reader), and prints the HTML's size.

    \b
    newsletter build newsletters/*-welcome-to-our-newsletter.md
    """
    from pipeline.build import build_issue

    settings = _settings(ctx)
    result = build_issue(_existing_issue(settings, issue), settings, out)
    for path in (result.html, result.text, result.mjml):
        click.echo(str(path))
    click.echo(f"HTML size: {result.html_bytes / 1024:.1f} KB (Gmail clips at 102 KB)")


@cli.command()
@click.argument("issues", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_context
def check(ctx: click.Context, issues: tuple[Path, ...]) -> None:
    """Check issues before they go out: one line per problem, exit 1 if any.

    \b
    newsletter check newsletters/*-welcome-to-our-newsletter.md
    newsletter check newsletters/*.md
    """
    from pipeline.render.checks import check_issue

    settings = _settings(ctx)
    found = 0
    shown: set[str] = set()  # a newsletter.toml problem is said once, not once per issue
    for path in issues:
        try:
            _existing_issue(settings, path)  # a typo: "no such file", with a guess
        except InputError as exc:
            problems = [exc]
        else:
            problems = check_issue(path, settings)
        for problem in problems:
            line = problem.location_message()
            if line not in shown:
                shown.add(line)
                click.echo(line)
                found += 1
        if not problems:
            click.echo(f"{path}: ok")
    if found:
        click.echo(f"{found} problem{'s' if found != 1 else ''} found", err=True)
        ctx.exit(EXIT_PROBLEMS)


@cli.command()
@click.argument("issue", type=click.Path(path_type=Path))
@port_option(8025, "Port on 127.0.0.1 (0: any free).")
@click.option("--no-open", is_flag=True, help="Do not open a browser.")
@click.pass_context
def preview(ctx: click.Context, issue: Path, port: int, no_open: bool) -> None:
    """Show the issue as a subscriber will see it, on a desktop and on a phone.

    Serves it on 127.0.0.1 and opens the browser; the page reloads when you save the
    draft, a template, newsletter.toml or the list.  Ctrl-C stops it.

    \b
    newsletter preview newsletters/*-welcome-to-our-newsletter.md
    newsletter preview newsletters/*-welcome-to-our-newsletter.md --port 0
    """
    from pipeline.preview import PreviewRenderer, make_server

    config = ctx.obj.get("config")
    issue = _existing_issue(_settings(ctx), issue)  # fail now, clearly, on a bad config
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


def _delivered(settings: Settings, slug: str) -> str:
    """What "sent" means for this provider: the outbox only writes files."""
    if settings.provider.name == "outbox":
        return f"written to {shown(provider_folder(settings) / slug)}/"
    return f"sent via {settings.provider.name}"


def _print_report(
    report: SendReport, settings: Settings, *, quiet: bool = False, issue: Path | None = None
) -> None:
    counts = report.counts
    click.echo(f"{report.slug}: {report.status.value}")
    click.echo(
        f"  audience {counts.audience}: sent {counts.sent}, failed {counts.failed}, "
        f"unknown {counts.unknown}, pending {counts.pending}"
    )
    run = report.this_run
    click.echo(
        f"  this run: {run.sent} {_delivered(settings, report.slug)}, failed {run.failed}, "
        f"unknown {run.unknown}"
        + (f"; {report.reconciled} found already delivered" if report.reconciled else "")
    )
    asked = report.asked
    if asked is not None and (
        asked.found or asked.resent or asked.waiting or asked.problem or asked.too_old
    ):
        name = settings.provider.name
        if asked.problem and not (asked.found or asked.resent or asked.waiting):
            # Nothing was asked at all (SendGrid without its add-on, the provider down):
            # "asked ... 0 not found yet (asked again by the next run)" said the opposite.
            click.echo(f"  could not ask {name} about unknown recipients: {asked.problem}")
        else:
            click.echo(
                f"  asked {name} about unknown recipients: {asked.found} it had accepted (now"
                f" sent), {asked.resent} it never had (sent by this run), {asked.waiting} not"
                " found yet (asked again by the next run)"
            )
            if asked.problem:
                click.echo(f"    could not ask: {asked.problem}")
        if asked.too_old:
            click.echo(
                f"    {counted(asked.too_old, 'recipient')} sent longer ago than {name}'s search"
                " remembers: not asked (not found would prove nothing); look them up"
            )
    if report.skipped:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(report.skipped.items()))
        click.echo(f"  skipped {counted(sum(report.skipped.values()), 'row')}: {reasons}")
    if report.withdrawn:
        click.echo(
            f"  withdrawn: {report.withdrawn} left the list or unsubscribed since the send began"
        )
    if report.returned:
        click.echo(
            f"  back: {report.returned} withdrawn earlier (not on the list, or not subscribed,"
            " when it was read) are on it again, so they get the issue after all"
        )
    if report.added:
        click.echo(f"  included: {report.added} who joined the list since the send began")
    if report.joined:
        who = "person has" if report.joined == 1 else "people have"
        # The whole command, as she would type it: a bare "--include-new" left her guessing.
        where = shlex.quote(shown(issue)) if issue is not None else "ISSUE.md"
        click.echo(
            f"  {report.joined} {who} joined the list since the send began and did not get "
            f"this issue: newsletter send {where} --include-new sends it to them"
        )
    limit = 5 if quiet else 50
    _print_kept_out(report.kept_out, report.skipped["left earlier"], settings, limit)
    for item in report.invalid[:limit]:
        click.echo(f"  invalid row {settings.subscribers}:{item.line}: {item.detail}")
    for email, reason in report.failures[:limit]:
        click.echo(f"  failed {email}: {reason}")
    issue_ref = shlex.quote(report.slug)
    if counts.failed > min(limit, len(report.failures)):
        click.echo(
            f"  ... {counted(counts.failed, 'failed recipient')} in all: "
            f"newsletter status {issue_ref} --failed lists them"
        )
    unknown = counts.unknown  # the ledger's total; report.unknown is only an excerpt
    if unknown:
        replayable = report.unknown_replayable
        click.echo(f"  unknown {unknown}: may or may not have been delivered")
        if replayable:
            click.echo(
                f"    {replayable} in batches this provider was sent: the next run replays them "
                "under the same idempotency key, which it delivers once"
            )
        if asked is not None and not asked.unavailable and unknown > asked.too_old:
            click.echo(
                f"    the next run asks {settings.provider.name} about them again"
                " before sending anything"
            )
        elif unknown > replayable:
            # Never plain advice to re-send: some of these were most likely delivered.
            click.echo(
                f"    {unknown - replayable}: look each one up in {settings.provider.name}'s "
                "log (or ask the reader) before doing anything; --resend-unknown sends every "
                "one of them again, so a reader who did get the issue gets it twice"
            )
        for email, reason in report.unknown[:limit]:
            click.echo(f"    {email}: {reason}" if reason else f"    {email}")
        if unknown > len(report.unknown[:limit]):
            more = unknown - len(report.unknown[:limit])
            click.echo(f"    ... and {more} more: newsletter status {issue_ref} --unknown")
    if run.paused:
        click.echo(f"  paused: {run.paused}. Run again to resume.")
    if run.stopped:
        click.echo(f"  stopped: {run.stopped}. Fix it, then run again to resume.")


def _print_kept_out(kept_out: list[Skipped], total: int, settings: Settings, limit: int) -> None:
    """Rows that say subscribed for someone the consent history says left: what it means
    and the way back, once; then each row."""
    if not kept_out:
        return
    click.echo(
        f"  kept out: {counted(total, 'row')} marked subscribed in the list for"
        " someone who left since (the consent history says so; an older copy of the list put"
        " back?); if they asked to be back: newsletter subscribers resubscribe ADDRESS"
    )
    for item in kept_out[:limit]:
        click.echo(f"    {settings.subscribers}:{item.line}: {item.email}: {item.detail}")
    if total > limit:
        click.echo(f"    ... and {total - limit} more")


def _print_interrupted(report: SendReport, resume: str) -> None:
    """One line after a signal: what is left, and the command that goes on from there."""
    if not report.interrupted:
        return
    pending = report.counts.pending
    # The terminal it would go to may be gone (SIGHUP); the ledger has it all anyway.
    with contextlib.suppress(OSError):
        click.echo(
            f"  stopped by {stopped_by(report.interrupted)}: every answer received was"
            f" recorded; {pending:,} reader{'s' if pending != 1 else ''} still to send."
            f" Resume with: {resume}"
        )


def _exit_after_abandon(ctx: click.Context, code: int, abandoned: int) -> None:
    """After giving up on answers in flight, a worker thread may still wait for one (up to
    the provider's timeout); the ledger has it as unknown already, so do not wait for it."""
    if abandoned:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    ctx.exit(code)


def _progress() -> Callable[[int, int], None] | None:
    """A progress bar on stderr, when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // total if total else width
        bar = "#" * filled + "." * (width - filled)
        # The terminal may be gone (closed mid-send: SIGHUP); the send goes on to settle.
        with contextlib.suppress(OSError):
            click.echo(f"\r  [{bar}] {done}/{total}", nl=False, err=True)

    return show


@cli.command()
@click.argument("issue", required=False, type=click.Path(path_type=Path))
@click.option("--due", is_flag=True, help="Send every issue whose send_at has passed (for cron).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Show what would happen; send nothing.")
@click.option(
    "--to",
    "to_addresses",
    metavar="ADDRESS",
    multiple=True,
    help="Send a test copy to ADDRESS, outside the ledger (repeat for several).",
)
@click.option("--now", is_flag=True, help="Send an issue whose send_at is still to come, now.")
@click.option("--resend-unknown", is_flag=True, help="Re-send recipients whose fate is unknown.")
@click.option(
    "--force",
    is_flag=True,
    help="Send an issue edited after its sending began, or one word for word another sent.",
)
@click.option(
    "--include-new",
    is_flag=True,
    help="Also send to people who joined the list after the issue's sending began.",
)
@click.pass_context
def send(
    ctx: click.Context,
    issue: Path | None,
    due: bool,
    yes: bool,
    dry_run: bool,
    to_addresses: tuple[str, ...],
    now: bool,
    resend_unknown: bool,
    force: bool,
    include_new: bool,
) -> None:
    """Send an issue to the list, exactly once per subscriber.

    Shows a summary and asks first (--yes does not ask).  An issue whose send_at is still
    to come is cron's to send: sending it by hand says so, and with --yes needs --now.
    Resumes where an interrupted send stopped; never re-sends a recipient recorded as sent.
    Exit codes: 0 all done, 1 some recipients failed, unknown or pending, 2 bad input,
    75 stopped by SIGTERM, SIGINT (Ctrl-C) or SIGHUP (the terminal closed; every answer
    received is recorded): run it again.

    \b
    newsletter send newsletters/*-welcome-to-our-newsletter.md --dry-run
    newsletter send newsletters/*-welcome-to-our-newsletter.md --to me@example.org
    newsletter send newsletters/*-welcome-to-our-newsletter.md --yes
    newsletter send --due          # from cron
    """
    from pipeline.delivery.providers import create_provider
    from pipeline.sending import dry_run as run_dry
    from pipeline.sending import send_due, send_issue, send_tests

    if due == (issue is not None):
        raise click.UsageError("give either ISSUE or --due")
    if due and (dry_run or to_addresses or resend_unknown or force or now or include_new):
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
        drafts = {plan.draft.slug: plan.draft.path for plan in due_run.plans}
        for due_report in due_run.reports:
            _print_report(due_report, settings, quiet=True, issue=drafts.get(due_report.slug))
            _print_interrupted(due_report, "newsletter send --due")
        abandoned = sum(r.this_run.abandoned for r in due_run.reports)
        _exit_after_abandon(ctx, due_run.exit_code, abandoned)
    assert issue is not None
    issue = _existing_issue(settings, issue)
    provider = create_provider(settings, environ)
    try:
        if dry_run:
            preview = run_dry(issue, settings, provider, environ)
            click.echo(f'{preview.slug}: "{preview.subject}" via {preview.provider} (dry run)')
            click.echo(f"  audience: {counted(preview.audience, 'subscriber')}")
            if preview.skipped:
                reasons = ", ".join(f"{r} {n}" for r, n in sorted(preview.skipped.items()))
                click.echo(f"  skipped {counted(sum(preview.skipped.values()), 'row')}: {reasons}")
            _print_kept_out(preview.kept_out, preview.skipped["left earlier"], settings, 20)
            for item in preview.invalid[:20]:
                click.echo(f"  invalid row {settings.subscribers}:{item.line}: {item.detail}")
            if preview.early is not None:
                click.echo(
                    f"  scheduled for {local_time(preview.early, settings.timezone)}: "
                    "sending it now would be early (cron sends it then; by hand, --now)"
                )
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
        if to_addresses:
            worst = 0
            for message, result in send_tests(issue, settings, provider, to_addresses, environ):
                if result.outcome is Outcome.SENT and settings.provider.name == "outbox":
                    folder = provider_folder(settings) / message.issue
                    what = f"written to {shown(folder / result.provider_id)}"
                else:
                    what = _TEST_COPY_WORDS[result.outcome]
                    if result.outcome is Outcome.SENT and result.provider_id:
                        what += f" ({settings.provider.name} id {result.provider_id})"
                click.echo(f"test copy to {message.to}: {what}")
                if result.reason:
                    click.echo(f"  {result.reason}")
                worst = max(worst, 0 if result.outcome is Outcome.SENT else 1)
            ctx.exit(worst)

        def confirm(plan: SendPlan) -> bool:
            early = ""
            if plan.early is not None:
                early = (
                    f"It is scheduled for {local_time(plan.early, settings.timezone)}, "
                    "when cron would send it. "
                )
            if plan.resuming and plan.counts is not None:
                newcomers = ""
                if plan.joined and plan.include_new:
                    people = counted(plan.joined, "person", "people")
                    newcomers = f" (with {people} who joined since)"
                elif plan.joined:
                    who = "person has" if plan.joined == 1 else "people have"
                    newcomers = (
                        f" ({plan.joined} {who} joined the list since it began: add"
                        " --include-new to send it to them too)"
                    )
                what = (
                    f'Resume "{plan.subject}": {plan.counts.sent} sent, '
                    f"{plan.audience} still to send{newcomers} via {plan.provider}?"
                )
            else:
                now_word = "now, early, " if plan.early is not None else ""
                what = (
                    f'{early}Send "{plan.subject}" {now_word}to '
                    f"{counted(plan.audience, 'subscriber')} via {plan.provider}?"
                )
            if yes:
                return True
            if not sys.stdin.isatty():
                needs = "--yes --now" if plan.early is not None and not now else "--yes"
                raise InputError(f"{what} Add {needs} to send without a terminal.")
            try:
                return click.confirm(what, default=False)
            except click.Abort:  # Ctrl-C at the question: a "no", said as the "no" is
                click.echo()
                return False

        report = send_issue(
            issue,
            settings,
            provider,
            environ=environ,
            resend_unknown=resend_unknown,
            force=force,
            include_new=include_new,
            confirm=None if yes else confirm,
            progress=_progress(),
            early=now,
        )
    finally:
        provider.close()
    if report is None:
        click.echo("not sent")
        ctx.exit(1)
    # After SIGHUP the terminal is gone: the ledger has everything, the exit code says the rest.
    with contextlib.suppress(OSError):
        if sys.stderr.isatty():
            click.echo("", err=True)
        _print_report(report, settings, issue=issue)
        _print_interrupted(report, f"newsletter send {issue} --yes")
    _exit_after_abandon(ctx, report.exit_code, report.this_run.abandoned)


def provider_folder(settings: Settings) -> Path:
    """Where the outbox provider writes (settings are checked when it is created)."""
    from pipeline.delivery.providers.outbox import outbox_folder

    return outbox_folder(settings)


@cli.command()
@click.argument("issue", required=False, type=click.Path(path_type=Path))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON array: one object per issue (issue, audience, sent, failed, unknown, "
    "pending, when, state, send_at, provider_says).",
)
@click.option("--failed", "who", flag_value="failed", help="List who failed, and why (ISSUE).")
@click.option(
    "--unknown", "who", flag_value="unknown", help="List whose delivery is unknown (ISSUE)."
)
@click.pass_context
def status(ctx: click.Context, issue: Path | None, as_json: bool, who: str | None) -> None:
    """Where every issue stands: draft, scheduled, due, missed, sending or complete.

    Lists each issue in newsletters/ (and any the ledger knows) with its state, when it is
    due in your time zone, and for one that started: audience, sent, failed, unknown,
    pending.  With ISSUE, only that one; --failed or --unknown list those recipients.

    \b
    newsletter status
    newsletter status newsletters/*-welcome-to-our-newsletter.md
    newsletter status newsletters/*-welcome-to-our-newsletter.md --failed   # once sent
    newsletter status --json
    """
    from pipeline.ledger.lock import send_running
    from pipeline.ledger.store import RecipientStatus
    from pipeline.sending import recipients_in, recorded_issues, status_rows

    settings = _settings(ctx)
    if who is not None:
        if issue is None:
            raise InputError(f"--{who} lists one issue's recipients: give the ISSUE too")
        report = status_rows(settings, issue)
        (row,) = report.rows
        if row.counts is None:
            nobody = "nobody has failed" if who == "failed" else "no delivery is unknown"
            raise InputError(f"{row.issue} has not been sent ({row.state}), so {nobody}")
        total, people = recipients_in(settings, row.issue, RecipientStatus(who))
        if as_json:
            listed = [{"email": email, "reason": reason} for email, reason in people]
            click.echo(json.dumps(listed, indent=2))
            return
        click.echo(f"{row.issue}: {who} {total}")
        for email, reason in people:
            click.echo(f"  {email}: {reason}" if reason else f"  {email}")
        return
    report = status_rows(settings, issue)
    from pipeline.ledger.start_record import unmatched, when

    known = {row.issue for row in report.rows if row.counts is not None}
    if unmatched(settings.newsletters_dir, known):  # look again, with every issue recorded
        known |= recorded_issues(settings)
    lost = unmatched(settings.newsletters_dir, known)
    if issue is not None:  # only that issue's record: the others are not in this report
        lost = [
            (path, record)
            for path, record in lost
            if record.issue in {r.issue for r in report.rows}
        ]
    for path, record in lost:
        click.echo(
            f"error: {path}: {record.issue} began sending "
            f"{when(record.started_at, settings.timezone)} ({record.sent} sent by "
            f"{when(record.updated_at, settings.timezone)}), but the ledger has no record of "
            "it: it was lost or replaced; put back the copy `newsletter backup` made "
            "(README: Losing the ledger)",
            err=True,
        )
    if lost:
        ctx.exit(EXIT_BAD_INPUT)
    if as_json:
        click.echo(json.dumps([row.as_json() for row in report.rows], indent=2))
    else:
        if not report.rows and not report.problems:
            click.echo(
                f"no issues in {shown(settings.newsletters_dir)}/ yet: "
                'start one with newsletter new "Title"'
            )
        for row in report.rows:
            click.echo(f"{row.issue}: {row.state.value}, {row.detail}")
            if row.counts is not None:
                c = row.counts
                click.echo(
                    f"  audience {c.audience}: sent {c.sent}, failed {c.failed}, "
                    f"unknown {c.unknown}, pending {c.pending}"
                )
            if (
                row.state is IssueState.SENDING
                and row.counts is not None
                and row.counts.pending + row.counts.unknown > 0
                and not send_running(settings.state_dir)
            ):
                # "sending" with no send running: it was stopped or killed (Ctrl-C, a closed
                # terminal, a reboot), and nothing goes on until a run picks it up.
                draft = shown(row.path) if row.path is not None else f"newsletters/{row.issue}.md"
                click.echo(
                    f"  not running now (it was stopped): newsletter send {draft} --yes"
                    " goes on from here (cron does, if it is due)"
                )
            if row.provider_says:
                # What the provider's events said since: delivered, bounced, complained...
                says = ", ".join(f"{kind} {n}" for kind, n in row.provider_says.items())
                click.echo(f"  provider says: {says}")
        if len(report.rows) > 1:
            states = Counter(row.state.value for row in report.rows)
            summary = ", ".join(f"{state} {n}" for state, n in states.items())
            click.echo(f"{counted(len(report.rows), 'issue')}: {summary}")
    for problem in report.problems:
        click.echo(f"error: {problem.location_message()}", err=True)
    if report.problems:
        ctx.exit(EXIT_PROBLEMS)


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the site to (default: site/; build/archive-preview/ with --drafts).",
)
@click.option(
    "--drafts", is_flag=True, help="A private preview that includes drafts and scheduled issues."
)
@click.pass_context
def archive(ctx: click.Context, out: Path | None, drafts: bool) -> None:
    """Build the web edition: every published issue as a page, an index, a feed, a sitemap.

    An issue is published once it was sent, or once its send_at has passed; one only
    written to the outbox (a trial) was sent to nobody.  Upload the folder to your site.

    \b
    newsletter archive
    newsletter archive --drafts
    """
    from pipeline.report.words import long_date
    from pipeline.web_edition.publication import Visibility
    from pipeline.web_edition.site import build_site

    settings = _settings(ctx)
    if out is None:
        out = settings.build_dir / "archive-preview" if drafts else settings.root / "site"
    try:
        result = build_site(settings, out, now=datetime.now(UTC), drafts=drafts)
    except OSError as exc:
        why = _why_unwritable(out, exc)
        raise InputError(f"cannot write the site: {why}", path=shown(out)) from None
    for path, blank in result.blank_fields:
        draft = shown(path) if blank.line is None else f"{shown(path)}:{blank.line}"
        click.echo(
            f"{draft}: {{{{ {blank.source} }}}} is blank on the web page (it has no default);"
            f' write {{{{ {blank.source} | default("there") }}}}',
            err=True,
        )
    for skip in result.skipped:
        if skip.gone:
            click.echo(f"not on the site: {skip.reason}", err=True)
            continue
        draft = shown(skip.path)
        reason = skip.reason.replace(str(skip.path), draft, 1)
        click.echo(
            f"not published, it has a problem a send would refuse: {reason}; newsletter check"
            f" {draft} lists every problem",
            err=True,
        )
    issues = counted(len(result.published), "published issue")
    if drafts:
        issues += (
            f" and {counted(len(result.private), 'draft or scheduled issue')} (private preview)"
        )
    where = out.resolve()
    if where.is_relative_to(Path.cwd()):
        where = where.relative_to(Path.cwd())
    click.echo(
        f"{where}/: {issues}; {counted(len(result.written), 'file')} changed"
        + (f", {counted(len(result.removed), 'page')} removed" if result.removed else "")
    )
    kept = [
        f"{counted(count, noun)} ({why})"
        for visibility, noun, why in (
            (Visibility.DRAFT, "draft", "no send_at, never sent"),
            (Visibility.SCHEDULED, "scheduled issue", "its send_at is still to come"),
        )
        if (count := result.kept_back[visibility])
    ]
    if kept:
        click.echo(
            f"kept off the site: {', '.join(kept)}; newsletter archive --drafts previews them"
        )
    for entry in result.trials:
        # The outbox writes files and emails nobody: such an issue went to no reader.
        draft = shown(entry.issue.path)
        if entry.public and entry.published_at is not None:
            when = long_date(entry.published_at.astimezone(settings.timezone))
            click.echo(
                f"{draft}: on the site by its send_at ({when}), but"
                " it was only written to the outbox (a trial): nobody was emailed it"
            )
        else:
            click.echo(
                f"not published: {draft} was only written to the outbox (a trial): nobody"
                " was emailed it"
            )
    if drafts:
        click.echo("this preview includes unpublished issues: do not upload it")


@cli.command()
@click.argument("issue", required=False, type=click.Path(path_type=Path))
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report as one HTML file with charts (opens offline).",
)
@click.pass_context
def report(ctx: click.Context, issue: Path | None, html_path: Path | None) -> None:
    """How each issue did, and how the list grew, week by week.

    \b
    newsletter report
    newsletter report newsletters/*-welcome-to-our-newsletter.md
    newsletter report --html report.html
    """
    from pipeline.report.html_report import check_report_path, render_html
    from pipeline.report.report import make_report
    from pipeline.report.terminal import format_report

    settings = _settings(ctx)
    if html_path is not None:
        check_report_path(settings, html_path)  # before anything: never over her files
    slug = issue.stem if issue else None
    made = make_report(settings, datetime.now(UTC), slug)
    if issue is not None and not made.issues:
        if not issue.is_file():
            _existing_issue(settings, issue)  # a typo: "no such file", with a guess
        raise InputError("this issue has not been sent: nothing to report yet", path=issue)
    click.echo(format_report(made), nl=False)
    if html_path is not None:
        page = render_html(made, settings)
        try:
            # Like saving a file: a folder she names in the path is made for her.
            html_path.parent.mkdir(parents=True, exist_ok=True)
            html_path.write_text(page, encoding="utf-8")
        except OSError as exc:
            why = _why_unwritable(html_path, exc)
            raise InputError(f"cannot write the report: {why}", path=html_path) from None
        click.echo(f"wrote {html_path}")


def _why_unwritable(path: Path, exc: OSError) -> str:
    """The system's reason in her words: "File exists" from making a folder means a file is
    in the way, so name that file."""
    target = Path(exc.filename) if isinstance(exc.filename, str) else path
    candidates = [target, *target.parents] if isinstance(exc, FileExistsError) else target.parents
    blocker = next((parent for parent in candidates if parent.is_file()), None)
    if blocker is not None:
        return f"{shown(blocker)} is a file, not a folder"
    return (exc.strerror or str(exc)).lower()


@cli.group()
def subscribers() -> None:
    """Check, list, add, remove and export the list (subscribers.csv).

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
    from pipeline.audience.subscribers import Subscriber, check_list, scan

    path = _list_path(ctx)
    report = check_list(path)
    header = read_header(path)
    # Kept out of every send by the consent history (an older copy of the list put back):
    # counted and named here too, or check and send disagree on who gets an issue.
    left = _everyone_left(ctx)
    kept_out = []
    if left:
        kept_out = [
            (item.line, item.email, left[item.key])
            for item in scan(path)
            if isinstance(item, Subscriber) and item.key in left
        ]
    if removed := remove_leftovers(path):
        click.echo(
            f"  removed {counted(removed, 'copy', 'copies')} of the list left by an "
            "interrupted change"
        )
    audience = report.audience - len(kept_out)
    click.echo(f"{path}: {counted(report.rows, 'row')}, {audience:,} would get an issue")
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
    for line, address, why in kept_out:
        click.echo(
            f"{path}:{line}: kept out of sends: {address} says subscribed here, but left"
            f" since: {why}; if they asked to be back: newsletter subscribers resubscribe"
            f" {address}"
        )
    for stray in report.strays:
        cells = ", ".join(repr(cell[:40]) for cell in stray.cells[:3])
        more = ", ..." if len(stray.cells) > 3 else ""
        click.echo(
            f"{path}:{stray.line}: {counted(len(stray.cells), 'cell')} in no column the"
            f" header names ({cells}{more}), so nothing reads"
            f" {'them' if len(stray.cells) > 1 else 'it'}: name the column in the header"
            " (line 1), or delete the cells"
        )
    if report.invalid:
        ctx.exit(EXIT_PROBLEMS)


DELIMITER_NAMES = {";": "semicolons", "\t": "tabs", ",": "commas"}

# A test copy's outcome in words: "retry" is the delivery loop's word for "try again".
_TEST_COPY_WORDS = {
    Outcome.SENT: "sent",
    Outcome.FAILED: "not sent, refused",
    Outcome.RETRY: "not sent: try again later",
    Outcome.UNKNOWN: "not known whether it was sent: look in your inbox before sending another",
}
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
    click.echo(f"{counted(count, 'row')}{f' ({which})' if which else ''}")
    if count == 0 and tag:
        # A typo ('runner' for 'runners') looks like an empty group: name the tags there are.
        there = sorted(set().union(*(entry.tags for entry in entries(_list_path(ctx)))))
        if tag.strip().lower() not in there:
            hint = difflib.get_close_matches(tag.strip().lower(), there, n=1)
            click.echo(
                f"no row has the tag {tag!r}"
                + (f" (the list's tags: {', '.join(there)})" if there else " (no row has a tag)")
                + (f"; did you mean {hint[0]!r}?" if hint else "")
            )


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
    from pipeline.audience.listing import entries, find
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
    # A typo ('runner' for 'runners') would make a group of one that no issue's tags reach:
    # a new tag close to one the list has is said before it is written.
    there = set().union(*(entry.tags for entry in entries(path))) if tag_list else set()
    close = {
        tag: hint[0]
        for tag in tag_list
        if tag not in there and (hint := difflib.get_close_matches(tag, sorted(there), n=1))
    }
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
        for tag, theirs in close.items():
            click.echo(
                f"  note: no one else has the tag {tag!r}; the list has {theirs!r} (a typo?"
                f" fix it in {shown(path)})"
            )
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
    click.echo(f"removed {email} from {path} ({counted(result.removed, 'row')} deleted)")


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
    # A row that says subscribed for someone the history says left (an older copy of the
    # list put back) is kept out of every send until this command records they are back.
    left = None if result.changed else _left_for_good(ctx, email)
    if result.changed or left:
        _record_by_hand(ctx, email, "resubscribed", "newsletter subscribers resubscribe")
    was = ", ".join(sorted({entry.status for entry in before}))
    if result.changed:
        click.echo(f"{email}: subscribed again (was {was})")
    elif left:
        click.echo(
            f"{email}: subscribed again (the list said subscribed, but the history says"
            f" {left}); the next send includes them"
        )
    else:
        click.echo(f"{email}: already subscribed; nothing changed")


def _left_for_good(ctx: click.Context, email: str) -> str | None:
    """The opt-out the consent history holds against this address, if nothing undid it."""
    from pipeline.ledger.consent import consent_key

    return _everyone_left(ctx).get(consent_key(email))


def _everyone_left(ctx: click.Context) -> dict[str, str]:
    """Every address the consent history keeps out of sends (``left_for_good``)."""
    from pipeline.ledger.consent import left_for_good
    from pipeline.sending import LEDGER_NAME, open_ledger

    settings = _settings(ctx.find_root())
    if not (settings.state_dir / LEDGER_NAME).exists():
        return {}
    ledger = open_ledger(settings)
    try:
        return left_for_good(ledger.db)
    finally:
        ledger.close()


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
    click.echo(f"exported {counted(count, 'row')} to {out}")
    from pipeline.audience.subscribers import check_list

    if strays := check_list(path, keep=0).strays:
        lines = ", ".join(str(stray.line) for stray in strays[:5])
        click.echo(
            f"  not in the copy: cells in no column the header names, on"
            f" {counted(len(strays), 'row')} (line {lines}{', ...' if len(strays) > 5 else ''});"
            " `newsletter subscribers check` names them",
            err=True,
        )


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
    from pipeline.audience.listing import status_of
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
        # Readers who were on the list before the history was kept have none: say where
        # they stand, so "nothing recorded" does not read as "not on the list".
        status = status_of(settings.subscribers, address)
        if status is None:
            click.echo(f"{address}: nothing recorded, and not in {shown(settings.subscribers)}")
        else:
            click.echo(
                f"{address}: nothing recorded; {status} in {shown(settings.subscribers)}, "
                "from before the history was kept or put there by editing the file"
            )
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
    from email.utils import parseaddr
    from urllib.parse import parse_qs, urlsplit

    from pipeline.audience.list_writer import ListChange, apply_changes
    from pipeline.ledger.start_record import records_folder
    from pipeline.messages.secret import load_secret
    from pipeline.messages.unsubscribe import read_token

    settings = _settings(ctx)
    path = settings.subscribers
    # What she pastes from her mail: "Ada <ada@example.org>", or a link in the <> of a header.
    target = target.strip()
    if target.startswith("<") and target.endswith(">"):
        target = target[1:-1].strip()
    by_address = "@" in target and "token=" not in target
    if by_address:
        address = parseaddr(target)[1] or target
    else:
        token = target
        if "token=" in token:
            token = parse_qs(urlsplit(token).query).get("token", [""])[0]
        key = read_token(
            load_secret(
                settings.state_dir,
                os.environ,
                sent_records=records_folder(settings.newsletters_dir),
            ),
            token.removeprefix("unsubscribe "),
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
        click.echo(f"{address}: unsubscribed ({counted(result.changed, 'row')} changed)")
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
@port_option(8026, "Port (0: any free).")
@click.option(
    "--threads",
    default=16,
    show_default=True,
    # 0 started a server that accepted every request and answered none.
    type=click.IntRange(1, 256),
    help="Requests handled at once (worker threads, 1 to 256).",
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
        if exc.errno == errno.EADDRINUSE:
            raise InputError(
                f"port {port} is already in use (another newsletter serve, or another "
                "program); try --port 0 for any free port",
                field="--port",
            ) from None
        raise InputError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="--host"
        ) from None
    shown_host = f"[{host}]" if ":" in host else host  # an IPv6 address, as a URL writes it
    where = f"http://{shown_host}:{server.effective_port}"  # type: ignore[union-attr]
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
@port_option(8026, "Port (0: any free).")
@click.pass_context
def unsubscribe_server(ctx: click.Context, host: str, port: int) -> None:
    """The old name of `newsletter serve`, kept so existing setups keep working.

    \b
    newsletter unsubscribe-server --port 8026
    """
    ctx.invoke(serve, host=host, port=port)


@cli.command()
@click.option(
    "--out",
    help="File to write, or a folder to write it in "
    "(default: .newsletter/backups/ledger-<UTC time>.sqlite3).",
)
@click.pass_context
def backup(ctx: click.Context, out: str | None) -> None:
    """Copy the ledger safely, even while a send is running (SQLite's online backup).

    Copying ledger.sqlite3 by hand is not a backup: recent sends may still be in its -wal
    file. Keep the copy somewhere else; to restore, stop sending and put it back as
    .newsletter/ledger.sqlite3 (removing any ledger.sqlite3-wal and -shm beside it).

    \b
    newsletter backup
    newsletter backup --out /mnt/backups/newsletter-ledger.sqlite3
    newsletter backup --out /media/usb/
    """
    from pipeline.ledger.backup import backup_ledger
    from pipeline.sending import LEDGER_NAME

    settings = _settings(ctx)
    name = f"ledger-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.sqlite3"
    if out is None:
        target = settings.state_dir / "backups" / name
    elif not out.strip():
        raise InputError("--out is empty: give a file name, or a folder to put the backup in")
    else:
        # A folder (a USB stick, a synced folder) gets a dated file inside it, as by default.
        target = Path(out).expanduser()
        if out.endswith(("/", os.sep)) or target.is_dir():
            target = target / name
    made = backup_ledger(settings.state_dir / LEDGER_NAME, target)
    issues = f"{made.issues} issue{'s' if made.issues != 1 else ''}"
    people = f"{made.recipients} recipient row{'s' if made.recipients != 1 else ''}"
    click.echo(f"backed up the ledger ({issues}, {people}) to {made.path}")


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
