"""Build the static site: ``index.html``, ``issues/<slug>/index.html``, ``feed.xml``,
``sitemap.xml`` and ``assets/style.css``.

Incremental: each issue page is rendered again only when something it shows changed (the
draft, its neighbours, the templates, the settings or this code); its words are kept in a
small cache in ``.newsletter/`` so the index and the feed never re-render unchanged issues.
Files are replaced atomically and only when their bytes change, so an upload (rsync) sends
only what changed.  A page for an issue that is no longer public (a preview built into the
same folder, never site/, an issue whose date was moved back) is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import jinja2
from markupsafe import Markup

from pipeline.config import Settings
from pipeline.content.merge_fields import MergeField
from pipeline.errors import InputError
from pipeline.render.compile import render_template
from pipeline.web_edition.feed import FeedItem, atom_feed
from pipeline.web_edition.page import blank_fields, render_issue, summary
from pipeline.web_edition.publication import Entry, Skipped, Visibility, collect
from pipeline.web_edition.urls import issue_path, issue_url, signup_url, site_url

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
WEB_TEMPLATES = "web"  # the project's templates/web/ overrides these, file by file
FEED_ENTRIES = 50
PUBLIC_FOLDER = "site"  # `newsletter archive` writes here by default: the folder she uploads
# The code a page's words come from: an upgrade that changes any of it (how a draft loads,
# how merge fields take their defaults, how Markdown renders) renders every page again,
# rather than keeping pages made by the old code until each draft is next edited.
_CODE = tuple(
    sorted(
        path
        for package in ("web_edition", "content", "render")
        for path in (Path(__file__).parent.parent / package).glob("*.py")
    )
)


@dataclass
class ArchiveResult:
    out: Path
    published: list[str] = field(default_factory=list)  # slugs on the site, newest first
    private: list[str] = field(default_factory=list)  # drafts and scheduled (in a preview)
    rendered: int = 0  # issue pages rendered this time
    reused: int = 0  # issue pages unchanged since the last build
    written: list[Path] = field(default_factory=list)  # files whose bytes changed
    removed: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    # Merge fields with no default, blank on a shown page ("Hi ,"): said on every build.
    blank_fields: list[tuple[Path, MergeField]] = field(default_factory=list)
    # Drafts and scheduled issues a public build left out, so she is told where they went.
    kept_back: Counter[Visibility] = field(default_factory=Counter)
    # Issues the ledger shows only written to the outbox (trials, emailed to nobody): kept
    # off the site, or on it by their send_at all the same; said on every build.
    trials: list[Entry] = field(default_factory=list)


@dataclass(frozen=True)
class _Words:
    """What the index, the feed and a page's neighbours need of an issue (cached)."""

    title: str
    summary: str
    image: str
    body: str


def _environment(settings: Settings) -> jinja2.Environment:
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(settings.templates_dir / WEB_TEMPLATES),
            jinja2.FileSystemLoader(BUILTIN_TEMPLATES),
        ]
    )
    return jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _fingerprint(settings: Settings) -> str:
    """Everything every page depends on besides its own draft."""
    digest = hashlib.sha256(repr(settings).encode("utf-8"))
    folders = (BUILTIN_TEMPLATES, settings.templates_dir / WEB_TEMPLATES)
    files = [p for folder in folders if folder.is_dir() for p in sorted(folder.iterdir())]
    for path in (*files, *_CODE):
        if path.is_file():
            digest.update(str(path).encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _write(path: Path, data: bytes, result: ArchiveResult) -> None:
    """Replace ``path`` atomically, and only when its bytes change."""
    try:
        if path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name: the next build removes only a dead build's temp files.
    fd, temp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    result.written.append(path)


def _long_date(moment: datetime | None, settings: Settings) -> tuple[str, str]:
    if moment is None:
        return "", ""
    local = moment.astimezone(settings.timezone)
    return f"{local:%B} {local.day}, {local.year}", local.isoformat()


def _label(entry: Entry, settings: Settings) -> str:
    if entry.visibility is Visibility.SCHEDULED and entry.issue.send_at is not None:
        when, _ = _long_date(entry.issue.send_at, settings)
        return f"Scheduled for {when}: not public"
    if entry.visibility is Visibility.DRAFT:
        return "Draft: not public"
    if entry.visibility is Visibility.TRIAL:
        return "Only written to the outbox (a trial): not public"
    return ""


def _cache_path(settings: Settings, out: Path) -> Path:
    name = hashlib.sha256(str(out.resolve()).encode("utf-8")).hexdigest()[:16]
    return settings.state_dir / "archive" / f"{name}.json"


def _load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def build_site(
    settings: Settings, out: Path, *, now: datetime, drafts: bool = False
) -> ArchiveResult:
    """Write the site for the issues public at ``now`` (and, with ``drafts``, the rest)."""
    check_out_folder(settings, out, drafts=drafts)
    entries, skipped = collect(settings, now)
    shown = [e for e in entries if e.public or drafts]
    result = ArchiveResult(out=out, skipped=skipped)
    result.published = [e.issue.slug for e in entries if e.public]
    result.private = [e.issue.slug for e in shown if not e.public]
    result.kept_back = Counter(e.visibility for e in entries if not e.public and not drafts)
    result.trials = [e for e in entries if e.trial]

    env = _environment(settings)
    fingerprint = _fingerprint(settings)
    cache_file = _cache_path(settings, out)
    cache = _load_cache(cache_file)
    old_pages: dict[str, Any] = cache.get("pages", {}) if cache.get("code") == fingerprint else {}
    new_pages: dict[str, Any] = {}

    author = parseaddr(settings.sender)[0] or settings.name
    common: dict[str, Any] = {
        "settings": settings,
        "theme": settings.theme,
        "archive": settings.archive,
        "cta": settings.cta,
        "preview": drafts,
        "signup_url": signup_url(settings),
        "subscribe_action": f"{settings.base_url}/subscribe",
        "sender_name": author,
    }

    # First the words of every shown issue (from the cache when its draft is unchanged).
    words: dict[str, _Words] = {}
    for entry in shown:
        slug = entry.issue.slug
        result.blank_fields += [(entry.issue.path, f) for f in blank_fields(entry.issue)]
        cached = old_pages.get(slug)
        if cached and cached.get("draft") == entry.issue.content_hash:
            words[slug] = _Words(**cached["words"])
        else:
            content = render_issue(entry.issue)
            words[slug] = _Words(
                title=content.title,
                summary=summary(content),
                image=content.image,
                body=str(content.body),
            )

    # Then each issue's page, rendered only when what it shows has changed.
    for index, entry in enumerate(shown):
        slug = entry.issue.slug
        newer = shown[index - 1] if index > 0 else None
        older = shown[index + 1] if index + 1 < len(shown) else None
        date, iso = _long_date(entry.published_at or entry.issue.send_at, settings)
        page = {
            "slug": slug,
            "title": words[slug].title,
            "date": date,
            "iso": iso,
            "label": _label(entry, settings),
            "newer": _neighbour(newer, words),
            "older": _neighbour(older, words),
        }
        key = hashlib.sha256(
            json.dumps([entry.issue.content_hash, page, drafts], sort_keys=True).encode("utf-8")
        ).hexdigest()
        target = out / "issues" / slug / "index.html"
        new_pages[slug] = {
            "draft": entry.issue.content_hash,
            "key": key,
            "words": asdict(words[slug]),
        }
        if old_pages.get(slug, {}).get("key") == key and target.is_file():
            result.reused += 1
            continue
        w = words[slug]
        html = render_template(
            env,
            "issue.html.j2",
            common
            | {
                "root": "../../",
                "canonical": issue_url(settings, slug),
                "description": w.summary,
                "image": w.image,
                "page": page | {"body": Markup(w.body)},
            },
        )
        _write(target, html.encode("utf-8"), result)
        result.rendered += 1

    listing = []
    for entry in shown:
        date, iso = _long_date(entry.published_at or entry.issue.send_at, settings)
        w = words[entry.issue.slug]
        listing.append(
            {
                "href": f"issues/{issue_path(entry.issue.slug)}/index.html",
                "title": w.title,
                "summary": w.summary,
                "date": date,
                "iso": iso,
                "label": _label(entry, settings),
            }
        )
    latest_image = next((words[e.issue.slug].image for e in shown if words[e.issue.slug].image), "")
    index_html = render_template(
        env,
        "index.html.j2",
        common
        | {
            "root": "",
            "canonical": site_url(settings),
            "description": f"Every issue of the {settings.name} newsletter, newest first.",
            "image": latest_image,
            "entries": listing,
        },
    )
    _write(out / "index.html", index_html.encode("utf-8"), result)
    _write(
        out / "assets" / "style.css",
        render_template(env, "style.css.j2", common).encode("utf-8"),
        result,
    )

    # The feed and the sitemap list public issues only, even in a preview; the feed only
    # the newest FEED_ENTRIES (readers poll it; the index and the sitemap have them all).
    public = [e for e in shown if e.public and e.published_at is not None]
    items = [
        FeedItem(
            url=issue_url(settings, e.issue.slug),
            title=words[e.issue.slug].title,
            summary=words[e.issue.slug].summary,
            body=words[e.issue.slug].body,
            published=e.published_at,
        )
        for e in public[:FEED_ENTRIES]
        if e.published_at is not None
    ]
    _write(out / "feed.xml", atom_feed(settings, author, items, now), result)
    _write(out / "sitemap.xml", _sitemap(settings, public), result)

    result.removed = _prune(out, {e.issue.slug for e in shown})
    _sweep_temp_files(out)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps({"code": fingerprint, "pages": new_pages}), encoding="utf-8")
    return result


def _neighbour(entry: Entry | None, words: dict[str, _Words]) -> dict[str, str] | None:
    if entry is None:
        return None
    href = f"../{issue_path(entry.issue.slug)}/index.html"
    return {"href": href, "title": words[entry.issue.slug].title}


def _sitemap(settings: Settings, public: Iterable[Entry]) -> bytes:
    """sitemaps.org 0.9: the index and every public issue, with its date."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">',
        f"  <url><loc>{xml_escape(site_url(settings))}</loc></url>",
    ]
    for entry in public:
        when = entry.published_at
        lastmod = when.astimezone(settings.timezone).date().isoformat() if when else ""
        lines.append(
            f"  <url><loc>{xml_escape(issue_url(settings, entry.issue.slug))}</loc>"
            + (f"<lastmod>{lastmod}</lastmod>" if lastmod else "")
            + "</url>"
        )
    lines.append("</urlset>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _prune(out: Path, keep: set[str]) -> list[Path]:
    """Remove the pages of issues this build did not write: they are no longer to be seen.

    Only what the archive itself writes goes: a folder's ``index.html`` (and a killed build's
    temp files), then the folder if that left it empty.  Anything else in it is hers and
    stays, and a symlink is never followed, so a folder that was never the archive's (an
    ``issues/`` of her own under ``--out``, a link to elsewhere) loses nothing.
    """
    issues = out / "issues"
    removed: list[Path] = []
    if not issues.is_dir() or issues.is_symlink():
        return removed
    for folder in sorted(issues.iterdir()):
        if folder.name in keep or folder.is_symlink() or not folder.is_dir():
            continue
        page = folder / "index.html"
        if page.is_symlink() or not page.is_file():
            continue
        page.unlink()
        for temp in folder.glob(".index.html.*.tmp"):
            if not _writer_alive(temp):
                temp.unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()
        removed.append(folder)
    return removed


def _sweep_temp_files(out: Path) -> None:
    """Remove the temp files a killed build left where ``_write`` makes them (``.name.*.tmp``),
    so an upload of the folder never carries a half-written page."""
    folders = [out, out / "assets"]
    issues = out / "issues"
    if issues.is_dir() and not issues.is_symlink():
        folders += [f for f in issues.iterdir() if f.is_dir() and not f.is_symlink()]
    for folder in folders:
        if folder.is_dir():
            for temp in folder.glob(".*.tmp"):
                if temp.is_file() and not temp.is_symlink() and not _writer_alive(temp):
                    temp.unlink(missing_ok=True)


_TEMP_PID = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def _writer_alive(temp: Path) -> bool:
    """Whether the build that made ``temp`` still runs (a second ``archive`` at the same
    time, from cron): its temp file is about to become a page, not a leftover."""
    match = _TEMP_PID.match(temp.name)
    if match is None:
        return False
    try:
        os.kill(int(match[1]), 0)
    except (ProcessLookupError, OverflowError):  # gone; or no pid at all
        return False
    except PermissionError:  # another user's process, alive
        return True
    return True


def check_out_folder(settings: Settings, out: Path, *, drafts: bool = False) -> None:
    """Refuse a folder where the site would mix with the project's own files: the project
    itself (or a folder holding it), or her drafts, templates or the ledger's folder; and a
    private preview in ``site/``, the folder she uploads."""
    where = out.resolve()
    if drafts and where == (settings.root / PUBLIC_FOLDER).resolve():
        raise InputError(
            f"is the folder you upload, and a preview with drafts must never be uploaded;"
            f" leave out --out (the preview goes to {settings.build_dir.name}/archive-preview/)",
            path=out,
            field="--out",
        )
    if settings.root.is_relative_to(where):
        raise InputError(
            "is the project's own folder (or holds it): the site would mix with your drafts"
            " and settings; choose a folder of its own, such as site/",
            path=out,
            field="--out",
        )
    # Folders of hers, and of personal data (the outbox's emails, the ledger, build/'s emails
    # made for the first reader on the list): the site is uploaded, so it never is one, never
    # holds one, and is never inside one but build/ (the preview's build/archive-preview/).
    outboxes = {settings.root / "outbox"}
    if settings.provider.name == "outbox":
        outboxes.add(settings.root / str(settings.provider.options.get("folder", "outbox")))
    private = [settings.newsletters_dir, settings.templates_dir, settings.state_dir, *outboxes]
    for own in sorted({*private, settings.build_dir, settings.subscribers}):
        mine = own.resolve()
        label = own.name if own == settings.subscribers else f"{own.name}/"
        if where == mine or mine.is_relative_to(where):
            how = "is" if where == mine else "holds"
            raise _private_out(out, f"{how} {label}")
    for own in sorted(private):
        if where.is_relative_to(own.resolve()):
            raise _private_out(out, f"is inside {own.name}/")


def _private_out(out: Path, what: str) -> InputError:
    return InputError(
        f"{what}, which holds your own files or readers' data, and the site is uploaded;"
        " choose a folder of its own, such as site/",
        path=out,
        field="--out",
    )
