"""Time the default run from an empty cache, then again from a warm cache.

Checks two claims of the foundation issue on this machine: the default run finishes in
under 3 minutes, and the cached re-run takes under 25% of the first run's wall time.
Usage: .venv/bin/python benchmarks/default_run.py [--until STAGE] [--set section.key=value ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST_RUN_LIMIT_S = 180.0
WARM_RATIO_LIMIT = 0.25


def timed_run(build_dir: Path, extra: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--build-dir", str(build_dir), *extra],
        check=True, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--until", default=None)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    extra = (["--until", args.until] if args.until else []) + [
        item for value in args.set for item in ("--set", value)
    ]
    with tempfile.TemporaryDirectory() as folder:
        cold = timed_run(Path(folder), extra)
        warm = timed_run(Path(folder), extra)
    ratio = warm / cold
    print(f"cold run {cold:7.1f}s  (limit {FIRST_RUN_LIMIT_S:.0f}s)  "
          f"{'ok' if cold < FIRST_RUN_LIMIT_S else 'TOO SLOW'}")
    print(f"warm run {warm:7.1f}s  ratio {ratio:.3f}  (limit {WARM_RATIO_LIMIT})  "
          f"{'ok' if ratio < WARM_RATIO_LIMIT else 'TOO SLOW'}")
    return 0 if cold < FIRST_RUN_LIMIT_S and ratio < WARM_RATIO_LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(main())
