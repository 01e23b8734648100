"""One error tree for the whole pipeline.

Input and configuration errors carry where they come from (file, line, field) so the CLI can
print one line a person can act on; they are a different class from failures to deliver, so
"carry on past a bad recipient" can never hide a broken configuration.
"""

from __future__ import annotations

from pathlib import Path


class NewsletterError(Exception):
    """Base of every error the pipeline raises on purpose."""


class InputError(NewsletterError):
    """Bad input from a person: a draft, a template, the list.  Exit code 2."""

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        super().__init__(self.location_message())

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Sent back from another process (the web app's list applier): rebuilt with where it
        # comes from, not from its one-line text (pickle's default, args[0], lost the line).
        return _rebuilt, (self.message, self.path, self.line, self.field)

    def location_message(self) -> str:
        where = ""
        if self.path:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


def _rebuilt(message: str, path: str | None, line: int | None, field: str | None) -> InputError:
    return InputError(message, path=path, line=line, field=field)


class ConfigError(InputError):
    """A missing or invalid setting in newsletter.toml or the environment."""


class InputErrors(InputError):
    """Several problems found in one pass, so a person can fix them all at once."""

    def __init__(self, problems: list[InputError]) -> None:
        self.problems = problems
        first = problems[0]
        super().__init__(first.message, path=first.path, line=first.line, field=first.field)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return InputErrors, (self.problems,)

    def location_message(self) -> str:
        return "\n".join(problem.location_message() for problem in self.problems)


class StoppedEarly(NewsletterError):
    """A person stopped a command (Ctrl-C) before it had changed or sent anything: said in
    one line ("not sent: ..."), not click's bare "Aborted!"."""
