"""The ``newsletter`` command's first step: load the CLI, then run it.

Loading it (click, Jinja, the pipeline's modules) takes a few tenths of a second, before any
of the CLI's own handling of Ctrl-C exists: a Ctrl-C then was a KeyboardInterrupt traceback.
Nothing has been read or written by then, and this says so in one line."""

from __future__ import annotations

import sys

EXIT_CTRL_C = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def main() -> None:
    try:
        from pipeline.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("stopped by Ctrl-C while starting: nothing was done\n")
        raise SystemExit(EXIT_CTRL_C) from None
    run()
