"""Two real `pipeline artifacts` processes on one checkout: the second waits for the
first's cache entries and bundle instead of racing it (issue 16, finding 4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devices.bundle import read_manifest
from devices.fsutil import sha256_file
from tests.conftest import TINY_OVERRIDES
from tests.faults import fault_log

ROOT = Path(__file__).resolve().parent.parent.parent
STAGES = ("teacher", "student", "pruned", "export", "validate")


def _start(build: Path, dist: Path, log: Path) -> subprocess.Popen:
    sets = [item for override in TINY_OVERRIDES for item in ("--set", override)]
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "artifacts", "--targets", "host",
         "--build-dir", str(build), "--dist-dir", str(dist), *sets],
        cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_two_concurrent_runs_compute_each_stage_once_and_leave_one_whole_bundle(
    tmp_path: Path,
) -> None:
    build, dist = tmp_path / "build", tmp_path / "dist"
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    runs = [_start(build, dist, logs[0]), _start(build, dist, logs[1])]
    codes = [run.wait(timeout=600) for run in runs]
    output = [log.read_text() for log in logs]
    assert codes == [0, 0], output
    both = "\n".join(output)
    for stage in STAGES:  # one computes it, the other waits and finds it sealed
        computed = [line for line in both.splitlines()
                    if line.startswith(stage) and "computed" in line]
        assert len(computed) == 1, (stage, computed)
    assert "waiting: another run is" in both
    leftovers = [path for path in [*build.rglob(".*"), *dist.rglob(".*")]
                 if path.name.endswith(".tmp") or ".old-" in path.name]
    assert not leftovers
    manifest = read_manifest(dist / "host")
    torn = [entry["path"] for entry in manifest.files
            if sha256_file(dist / "host" / entry["path"]) != entry["sha256"]]
    fault_log.CASES.append(("two concurrent runs", f"exits {codes}, each stage once",
                            not torn, len(torn)))
    assert not torn
