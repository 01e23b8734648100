"""Run every benchmark, one after the other: `.venv/bin/python bench/all.py [--small]`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "render.py",
    "personalise.py",
    "send.py",
    "scale.py",
    "peer.py",
    "latency.py",
    "providers.py",
    "optout_load.py",
]

failed = []
for script in SCRIPTS:
    print(f"\n## bench/{script}", flush=True)
    if subprocess.run([sys.executable, str(HERE / script), *sys.argv[1:]], check=False).returncode:
        failed.append(script)
if failed:
    sys.exit(f"failed: {', '.join(failed)}")
