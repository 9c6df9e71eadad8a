"""How long the whole suite takes, as CI runs it: a fresh clone of HEAD, `CI=true bash
.ci/run` (the Debian packages, the venv, `make test`), then the time per test file and the
slowest tests, from pytest's JUnit XML and `--durations`.

    .venv/bin/python benchmarks/suite_time.py [--slowest 20] [--keep] [--json out.json]
        [--pytest-args "-n 0"]

Only the standard library: it runs before the clone has a virtual environment. The time is
wall-clock on this machine with whatever else runs on it, so compare figures measured one
after the other on an idle machine (README, "Tests").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DURATION = re.compile(r"^(\d+\.\d+)s (call|setup|teardown)\s+(\S+)$")


def clone_head(into: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(into)], check=True)
    return into


def run_ci(clone: Path, junit: Path, slowest: int, pytest_args: str) -> tuple[int, float, str]:
    environment = {**os.environ, "CI": "true",
                   "PYTEST_ARGS": f"--durations={slowest} --junitxml={junit} {pytest_args}"}
    started = time.monotonic()
    result = subprocess.run(["bash", ".ci/run"], cwd=clone, env=environment,
                            capture_output=True, text=True)
    return result.returncode, time.monotonic() - started, result.stdout + result.stderr


def seconds_per_file(junit: Path) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        path = "/".join(part for part in module if not part[:1].isupper()) + ".py"
        totals[path] += float(case.get("time") or 0.0)
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def slowest_tests(log: str) -> list[tuple[float, str, str]]:
    return [(float(match[1]), match[2], match[3])
            for match in map(DURATION.match, log.splitlines()) if match]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slowest", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the clone")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--pytest-args", default="", help="added to PYTEST_ARGS")
    args = parser.parse_args(argv)
    clone = clone_head(Path(tempfile.mkdtemp(prefix="suite-time.")) / "clone")
    junit = clone.parent / "junit.xml"
    code, wall, log = run_ci(clone, junit, args.slowest, args.pytest_args)
    (clone.parent / "ci.log").write_text(log)
    summary = [line for line in log.splitlines() if re.match(r"^=+ .* in [\d.]+s", line)]
    print(f"CI=true bash .ci/run on a fresh clone: exit {code}, {wall:.0f} s "
          f"({wall / 60:.1f} min) wall, install included; log in {clone.parent / 'ci.log'}")
    print(summary[-1] if summary else "(no pytest summary line: see the log)")
    files = seconds_per_file(junit) if junit.is_file() else {}
    print("\nseconds per test file (sum of its tests' times):")
    for path, seconds in files.items():
        print(f"  {seconds:7.1f}  {path}")
    slow = slowest_tests(log)
    print(f"\nthe {len(slow)} slowest (pytest --durations):")
    for seconds, phase, test in slow:
        print(f"  {seconds:7.2f}  {phase:8s} {test}")
    if args.json:
        args.json.write_text(json.dumps({"exit": code, "wall_s": wall, "per_file_s": files,
                                         "slowest": slow}, indent=2))
    if not args.keep:
        subprocess.run(["rm", "-rf", str(clone)], check=False)
    return code


if __name__ == "__main__":
    sys.exit(main())
