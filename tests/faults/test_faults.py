"""Fault injection with real processes: a run killed (SIGKILL) inside each stage, a corrupt
entry in each stage, a full disk under dist/. For each case: the exit code, the one-line
message naming the fault, and nothing lost or half-written (every cache entry verifies,
dist/ holds the previous bundle or the new one, never a mix). The table of the cases
(tried, survived, data lost) ends the test log (tests/faults/conftest.py)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devices.bundle import read_manifest
from devices.fsutil import sha256_file
from pipeline.cache import StageCache
from tests.conftest import TINY_OVERRIDES
from tests.faults import fault_log

ROOT = Path(__file__).resolve().parent.parent.parent
STAGES = ("teacher", "student", "pruned", "export", "validate")
def _command(build: Path, dist: Path) -> list[str]:
    sets = [item for override in TINY_OVERRIDES for item in ("--set", override)]
    return [sys.executable, "-m", "pipeline", "artifacts", "--targets", "host",
            "--build-dir", str(build), "--dist-dir", str(dist), *sets]


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "EDGE_SET": ""}


def _entries_verify(build: Path) -> list[str]:
    """Every sealed entry of every stage verifies; the names of those that do not."""
    cache = StageCache(build / "cache")
    broken = []
    for stage in STAGES:
        for entry in (build / "cache" / stage).glob("[!.]*"):
            problems: list[str] = []
            if cache.lookup(stage, entry.name, warn=problems.append) is None or problems:
                broken.append(f"{stage}/{entry.name[:12]}")
    return broken


def _bundle_whole(dist: Path) -> bool:
    folder = dist / "host"
    manifest = read_manifest(folder)
    return all(sha256_file(folder / entry["path"]) == entry["sha256"]
               for entry in manifest.files)


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One complete run: its cache and its bundle, copied into each case."""
    root = tmp_path_factory.mktemp("faults-warm")
    subprocess.run(_command(root / "build", root / "dist"), cwd=ROOT, env=_environment(),
                   check=True, capture_output=True)
    return {"build": root / "build", "dist": root / "dist"}


def _copy_without(warm: dict[str, Path], root: Path, stages: tuple[str, ...]
                  ) -> tuple[Path, Path]:
    build, dist = root / "build", root / "dist"
    shutil.copytree(warm["build"], build)
    shutil.copytree(warm["dist"], dist)
    for stage in stages:
        shutil.rmtree(build / "cache" / stage)
    return build, dist


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_a_run_killed_inside_each_stage_loses_nothing(warm: dict[str, Path], tmp_path: Path,
                                                      stage: str) -> None:
    # only this stage must be computed: later entries' keys do not depend on it, so the
    # re-run recomputes it and reuses the rest (which keeps the suite inside its 3 minutes)
    build, dist = _copy_without(warm, tmp_path, (stage,))
    previous = sha256_file(dist / "host" / "manifest.json")
    process = subprocess.Popen(_command(build, dist), cwd=ROOT, env=_environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(f"{stage:<10} running"):
            time.sleep(random.Random(stage).uniform(0.0, 1.0))  # a point inside the stage
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=120)
    lost = len(_entries_verify(build)) + (0 if _bundle_whole(dist) else 1)
    unchanged = sha256_file(dist / "host" / "manifest.json") == previous
    rerun = subprocess.run(_command(build, dist), cwd=ROOT, env=_environment(),
                           capture_output=True, text=True)
    survived = (process.returncode == -signal.SIGKILL and unchanged and rerun.returncode == 0
                and _bundle_whole(dist) and not _entries_verify(build))
    fault_log.CASES.append((f"SIGKILL in {stage}", f"exit {process.returncode}, rerun "
                    f"{rerun.returncode}", survived, lost))
    assert lost == 0 and survived, rerun.stdout[-2000:]
    leftovers = [p for p in build.rglob(".*") if p.name.endswith(".tmp") or ".old-" in p.name]
    assert not leftovers  # the re-run removed the dead run's scratch


def _corrupt_one_byte(entry: Path) -> str:
    """Flip one byte of the entry's first payload file (validate has only entry.json)."""
    files = [path for path in sorted(entry.rglob("*")) if path.is_file()]
    victim = next((p for p in files if p.name != "entry.json"), entry / "entry.json")
    content = bytearray(victim.read_bytes())
    content[len(content) // 2] ^= 0xFF
    victim.write_bytes(bytes(content))
    return victim.name


@pytest.mark.slow
def test_a_corrupt_entry_in_every_stage_is_named_and_recomputed(warm: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    """One run over a cache with one corrupt entry in every stage (one run, not five,
    keeps the suite inside its 3 minutes): each is named, recomputed, and verifies after."""
    build, dist = _copy_without(warm, tmp_path, ())
    entries = {stage: next((build / "cache" / stage).glob("[!.]*")) for stage in STAGES}
    victims = {stage: _corrupt_one_byte(entry) for stage, entry in entries.items()}
    result = subprocess.run(_command(build, dist), cwd=ROOT, env=_environment(),
                            capture_output=True, text=True)
    lost = len(_entries_verify(build)) + (0 if _bundle_whole(dist) else 1)
    outcomes = {}
    for stage, entry in entries.items():
        named = f"cache entry {stage}/{entry.name[:12]} is corrupt" in result.stdout
        recomputed = f"{stage:<10} computed" in result.stdout
        outcomes[stage] = result.returncode == 0 and named and recomputed
        fault_log.CASES.append((f"corrupt {victims[stage]} in {stage}",
                                f"exit {result.returncode}, {'named' if named else 'NOT named'}",
                                outcomes[stage], lost if stage == STAGES[-1] else 0))
    assert all(outcomes.values()) and lost == 0, (outcomes, result.stdout[-2000:])


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_a_full_disk_under_dist_keeps_the_previous_bundle(warm: dict[str, Path],
                                                          tmp_path: Path) -> None:
    build, _ = _copy_without(warm, tmp_path, ())
    dist = tmp_path / "small"
    dist.mkdir()
    bundle_bytes = sum(p.stat().st_size for p in (warm["dist"] / "host").rglob("*"))
    size_kb = (bundle_bytes * 3 // 2) // 1024 + 8  # room for one bundle, not two
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(dist)],
                   check=True)
    try:
        shutil.copytree(warm["dist"] / "host", dist / "host")
        previous = sha256_file(dist / "host" / "manifest.json")
        result = subprocess.run(_command(build, dist), cwd=ROOT, env=_environment(),
                                capture_output=True, text=True)
        message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        lost = 0 if _bundle_whole(dist) else 1
        kept = sha256_file(dist / "host" / "manifest.json") == previous
        scratch = [p.name for p in dist.iterdir() if p.name not in ("host", ".locks")]
        survived = (result.returncode == 2 and "no space left on the device" in message
                    and kept and not scratch)
        fault_log.CASES.append(("disk full writing dist/host", f"exit {result.returncode}",
                        survived, lost))
        assert survived and lost == 0, (result.returncode, message, scratch)
    finally:
        subprocess.run(["umount", str(dist)], check=False)
