"""The ``newsletter`` command: parse options, call a pipeline function, print the result.

Every command is a thin shell over functions tests call directly.  Errors become one line on
stderr, naming the file, line and field; exit codes: 0 done, 1 problems found, 2 bad input.
"""

from __future__ import annotations

import webbrowser
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from pipeline.config import Settings, load_settings
from pipeline.errors import InputError, NewsletterError

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


def main() -> None:
    cli(obj={})
