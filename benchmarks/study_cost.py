"""Time `make study` from an empty cache, then again from the warm cache.

Checks the study issue's cost claims on this machine: the default study on the emulated
Cortex-M4 in at most 20 minutes cold and 1 minute warm. The cold run's dist/study/ is
kept (copied to --keep) so its table can go into the README.
Usage: .venv/bin/python benchmarks/study_cost.py [--targets mcu] [--keep DIR] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLD_LIMIT_S = 20 * 60.0
WARM_LIMIT_S = 60.0


def timed_study(root: Path, targets: str, extra: list[str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as output:
        subprocess.run(
            [sys.executable, "-m", "pipeline", "study", "--targets", targets,
             "--build-dir", str(root / "build"), "--dist-dir", str(root / "dist"), *extra],
            check=True, stdout=output, stderr=subprocess.STDOUT,
        )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="mcu")
    parser.add_argument("--keep", type=Path, default=Path("build/study-benchmark"))
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    extra = [item for value in args.set for item in ("--set", value)]
    args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cold = timed_study(root, args.targets, extra, args.keep / "cold.log")
        warm = timed_study(root, args.targets, extra, args.keep / "warm.log")
        shutil.copytree(root / "dist" / "study", args.keep / "study", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("points"))
    print(f"cold study {cold:7.1f}s  (limit {COLD_LIMIT_S:.0f}s)  "
          f"{'ok' if cold <= COLD_LIMIT_S else 'TOO SLOW'}")
    print(f"warm study {warm:7.1f}s  (limit {WARM_LIMIT_S:.0f}s)  "
          f"{'ok' if warm <= WARM_LIMIT_S else 'TOO SLOW'}")
    print(f"logs and dist/study/ in {args.keep}")
    return 0 if cold <= COLD_LIMIT_S and warm <= WARM_LIMIT_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
