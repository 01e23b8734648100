"""Start a newsletter (``init``) and start an issue (``new``): files a person then edits."""

from __future__ import annotations

import re
import shutil
import unicodedata
from datetime import date
from pathlib import Path

from pipeline.config import CONFIG_NAME
from pipeline.errors import InputError

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
    quoted = title.strip().replace('"', '\\"')
    newsletters_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(
        (STARTER / "issue.md").read_text(encoding="utf-8").replace("{{TITLE}}", quoted),
        encoding="utf-8",
    )
    return path


def init_project(folder: Path, today: date) -> list[Path]:
    """Create newsletter.toml, templates/, newsletters/ and a sample subscribers.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    clashes = [name for name in (CONFIG_NAME, "subscribers.csv") if (folder / name).exists()]
    if clashes:
        raise InputError(
            f"{', '.join(clashes)} already exist here; init only fills an empty folder",
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
