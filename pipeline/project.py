"""Start a newsletter (``init``) and start an issue (``new``): files a person then edits."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import unicodedata
from datetime import date, timedelta
from pathlib import Path

from pipeline.config import CONFIG_NAME
from pipeline.errors import InputError
from pipeline.wording import shown

STARTER = Path(__file__).parent / "starter"
STARTER_FILES = {
    "newsletter.toml": CONFIG_NAME,
    "subscribers.csv": "subscribers.csv",
    "templates-README.md": "templates/README.md",
    "gitignore": ".gitignore",
}


def slugify(title: str) -> str:
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:60].rstrip("-") or "issue"


def new_issue(newsletters_dir: Path, title: str, today: date) -> Path:
    """Scaffold ``newsletters/YYYY-MM-DD-slug.md``; never overwrite an existing draft."""
    if not title.strip():
        raise InputError("the title must not be empty")
    path = newsletters_dir / f"{today.isoformat()}-{slugify(title)}.md"
    if path.exists():
        raise InputError("already exists; pick another title or edit that draft", path=path)
    # A JSON string is a valid YAML double-quoted one: quotes and backslashes escaped alike.
    quoted = json.dumps(title.strip(), ensure_ascii=False)[1:-1]
    # An example a week ahead: uncommented as it stands, it schedules, never sends at once.
    send_at = f"{today + timedelta(days=7):%Y-%m-%d} 07:00"
    newsletters_dir.mkdir(parents=True, exist_ok=True)
    text = (STARTER / "issue.md").read_text(encoding="utf-8")
    path.write_text(
        text.replace("{{TITLE}}", quoted).replace("{{SEND_AT}}", send_at), encoding="utf-8"
    )
    return path


def next_steps(folder: Path, draft: Path) -> str:
    """What ``init`` prints last: commands that work as printed, from where she is."""
    lines = ["next:"]
    if folder.resolve() != Path.cwd().resolve():
        lines.append(f"  cd {shlex.quote(shown(folder))}")
    lines += [
        "  edit newsletter.toml: name, from, reply_to, timezone, postal_address, base_url,"
        " signature, [cta] url (check lists any placeholder left)",
        "  edit subscribers.csv: your readers, one a row (keep the header row)",
        f"  newsletter check newsletters/{draft.name}",
        f"  newsletter preview newsletters/{draft.name}",
    ]
    return "\n".join(lines)


def init_project(folder: Path, today: date) -> list[Path]:
    """Create newsletter.toml, templates/, newsletters/ and a sample subscribers.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    clashes = [name for name in (CONFIG_NAME, "subscribers.csv") if (folder / name).exists()]
    if clashes:
        verb = "exists" if len(clashes) == 1 else "exist"
        raise InputError(
            f"{' and '.join(clashes)} already {verb} here; init only fills an empty folder",
            path=folder,
        )
    created = []
    for source, target in STARTER_FILES.items():
        destination = folder / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(STARTER / source, destination)
        created.append(destination)
    created.append(new_issue(folder / "newsletters", "Welcome to our newsletter", today))
    return created
