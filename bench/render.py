"""1. Render: compile the sample issue (Markdown -> Jinja2 -> MJML -> HTML + text), median of
many runs, against the official MJML compiler (the `mjml` npm package, installed here with
npm into bench/.node) compiling the same MJML in one Node process.

    .venv/bin/python bench/render.py            # 50 runs each
    .venv/bin/python bench/render.py --small    # 10 runs each (CI)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mjml
from _common import REPO, SAMPLE_ISSUE, emit, machine, table

from pipeline.config import load_settings
from pipeline.content.issue import load_issue
from pipeline.render.compile import compile_issue

NODE_DIR = REPO / "bench" / ".node"
NODE_SCRIPT = """
const mjml2html = require(process.argv[2]);
const fs = require('fs');
const source = fs.readFileSync(process.argv[3], 'utf8');
const runs = parseInt(process.argv[4], 10);
mjml2html(source);  // warm up
const times = [];
for (let i = 0; i < runs; i++) {
  const start = process.hrtime.bigint();
  const out = mjml2html(source, {validationLevel: 'soft'});
  times.push(Number(process.hrtime.bigint() - start) / 1e6);
  if (out.errors.length) { console.error(JSON.stringify(out.errors)); }
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)];
console.log(JSON.stringify({median_ms: median, bytes: mjml2html(source).html.length}));
"""


def median_ms(function: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def official_mjml(source: str, runs: int) -> dict[str, float] | None:
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        print("npm/node not found: skipping the official MJML compiler", file=sys.stderr)
        return None
    if not (NODE_DIR / "node_modules" / "mjml").is_dir():
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(NODE_DIR),
                "--no-audit",
                "--no-fund",
                "--silent",
                "mjml@4",
            ],
            check=True,
        )
    with tempfile.TemporaryDirectory() as temp:
        script, mjml_file = Path(temp) / "bench.js", Path(temp) / "email.mjml"
        script.write_text(NODE_SCRIPT)
        mjml_file.write_text(source)
        out = subprocess.run(
            [node, str(script), str(NODE_DIR / "node_modules" / "mjml"), str(mjml_file), str(runs)],
            capture_output=True,
            text=True,
            check=True,
        )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    runs = 10 if parser.parse_args().small else 50
    settings = load_settings(REPO / "newsletter.toml")
    path = REPO / SAMPLE_ISSUE

    def whole() -> None:
        compile_issue(load_issue(path, settings.timezone), settings)

    compiled = compile_issue(load_issue(path, settings.timezone), settings)
    whole()  # warm up
    ours_whole = median_ms(whole, runs)
    ours_mjml = median_ms(lambda: mjml.mjml2html(compiled.mjml, disable_comments=True), runs)
    official = official_mjml(compiled.mjml, runs)
    rows = [
        ("compile the sample issue", "median ms"),
        ("ours: Markdown + Jinja2 + MJML (mrml) + text", f"{ours_whole:.2f}"),
        ("ours: MJML -> HTML only (mjml-python / mrml)", f"{ours_mjml:.2f}"),
    ]
    if official:
        rows.append(("official mjml 4 (npm), MJML -> HTML only", f"{official['median_ms']:.2f}"))
    print(f"machine: {machine()}; {runs} runs each")
    print(table(rows))
    if official:
        print(
            f"ratio official/mrml for the same MJML: {official['median_ms'] / ours_mjml:.1f}x; "
            f"official/our whole pipeline: {official['median_ms'] / ours_whole:.1f}x"
        )
    figures = {"ours_ms": ours_whole, "mrml_ms": ours_mjml}
    if official:
        figures |= {
            "official_ms": official["median_ms"],
            "ratio": official["median_ms"] / ours_mjml,
        }
    emit(figures)


if __name__ == "__main__":
    main()
