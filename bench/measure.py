"""Run a command; print one JSON line: its wall seconds, peak RSS (MB) and exit code.

Used by the benchmarks so each measured run is a process of its own: RUSAGE_CHILDREN of
this wrapper is exactly that command's peak memory.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

start = time.perf_counter()
result = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=False)
seconds = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kilobytes on Linux
print(json.dumps({"seconds": seconds, "max_rss_mb": peak_kb / 1024, "exit": result.returncode}))
