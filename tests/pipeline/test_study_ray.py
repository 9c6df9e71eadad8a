"""The study on a real Ray cluster: a head and a worker node started on 127.0.0.1 as
separate processes (tests/ray_nodes.py), a small study (one level, one seed, two arms,
on the emulated Cortex-M4, whose instruction counts are exact, so every number of a point
repeats) run through it and compared with the serial run of the same config, a worker
killed mid-point and a head killed mid-study.

Each node advertises `mcu-qemu`, so the microcontroller is profiled inside the point's
task, on whichever node runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_OVERRIDES
from tests.system_tools import NEEDS_MCU

pytest.importorskip("ray", reason='the cluster study needs Ray: pip install -e ".[cluster]"')

from pipeline.cache import StageCache  # noqa: E402 - after the skip
from tests.ray_nodes import LocalCluster  # noqa: E402

pytestmark = [pytest.mark.slow, NEEDS_MCU]

ROOT = Path(__file__).resolve().parents[2]
STUDY = (*TINY_OVERRIDES, "study.levels=1/4", "study.seeds=1", "study.arms=scratch,distill")
STUDY_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def cluster() -> LocalCluster:
    nodes = LocalCluster.start(workers=1, cpus=1, resources={"mcu-qemu": 1})
    try:
        yield nodes  # started, not waited for: the serial run goes on meanwhile
    finally:
        nodes.stop()


def make_checkout(folder: Path) -> Path:
    """A folder where `make` runs the real Makefile with this virtual environment (its
    build/ and dist/ are the folder's own, not the repository's)."""
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", folder / "Makefile")
    (folder / "pyproject.toml").write_text("")
    python = folder / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (folder / ".venv" / ".installed").touch()  # newer than pyproject.toml: no install
    return folder


def make_study(folder: Path, *extra: str, address: str | None = None) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    if address:
        environment["RAY_ADDRESS"] = address
    result = subprocess.run(
        ["make", "--no-print-directory", "study", "TARGET=mcu",
         f"CONFIG={ROOT / 'configs' / 'default.toml'}", f"SET={' '.join((*STUDY, *extra))}"],
        cwd=folder, env=environment, capture_output=True, text=True, timeout=STUDY_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def study_command(folder: Path, address: str) -> list[str]:
    sets = [item for override in STUDY for item in ("--set", override)]
    return [sys.executable, "-m", "pipeline", "study", "--target", "mcu", "--cluster", address,
            "--build-dir", str(folder / "build"), "--dist-dir", str(folder / "dist"), *sets]


def points(folder: Path) -> list[dict]:
    return json.loads((folder / "dist" / "study" / "study.json").read_text())["points"]


def entries(folder: Path) -> set[tuple[str, str]]:
    return set(StageCache(folder / "build" / "cache").entries())


def assert_every_entry_verifies(folder: Path) -> None:
    """Nothing half-written: no scratch folder of a killed writer, every entry sealed."""
    cache = StageCache(folder / "build" / "cache")
    leftovers = [path for path in cache.root.glob("*/.*") if path.name != ".locks"]
    assert leftovers == []
    for stage, key in cache.entries():
        assert cache.lookup(stage, key) is not None, (stage, key)


@pytest.fixture(scope="module")
def serial(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`make study TARGET=mcu` of the small study, on this machine alone."""
    folder = make_checkout(tmp_path_factory.mktemp("serial") / "checkout")
    output = make_study(folder)
    cluster.wait()
    return {"folder": folder, "points": points(folder), "output": output}


def seeded_with_the_teacher(folder: Path, serial: dict) -> Path:
    """A head cache holding the serial run's teacher (the same key: the same config), so
    both points start at once, one on each node."""
    teacher = StageCache(serial["folder"] / "build" / "cache").root / "teacher"
    shutil.copytree(teacher, folder / "build" / "cache" / "teacher")
    return folder


def test_make_study_on_two_nodes_gives_the_serial_points(
    cluster: LocalCluster, serial: dict, tmp_path: Path,
) -> None:
    folder = make_checkout(tmp_path / "checkout")
    output = make_study(folder, "study.executor=ray", address=cluster.address)
    assert points(folder) == serial["points"]  # same points, same numbers
    assert entries(folder) == entries(serial["folder"])  # the same cache as on one machine
    sent = [line for line in output.splitlines() if line.startswith("study      sent ")]
    assert len(sent) == 2 and sum("teacher" in line for line in sent) == 1  # trained once
    assert "cluster    2 point tasks" in output
    assert_every_entry_verifies(folder)


def test_a_killed_head_resumes_from_its_cache(
    cluster: LocalCluster, serial: dict, tmp_path: Path,
) -> None:
    """The driver SIGKILLed once a point is finished: a re-run sends only the other."""
    folder = seeded_with_the_teacher(tmp_path, serial)
    driver = subprocess.Popen(study_command(folder, cluster.address), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True,
                              env=os.environ | {"PYTHONUNBUFFERED": "1"})
    finished = None
    for line in driver.stdout:
        if line.startswith("study      ") and " done" in line:
            finished = line.split(" at ", 1)[0].removeprefix("study      ")
            break
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    assert finished in ("scratch", "distill")
    rerun = subprocess.run(study_command(folder, cluster.address), capture_output=True,
                           text=True, timeout=STUDY_TIMEOUT_S)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    sent = [line for line in rerun.stdout.splitlines() if line.startswith("study      sent ")]
    assert len(sent) == 1 and finished not in sent[0]  # the finished point is not redone
    assert f"{finished} at 1/4, seed 0 [from the head's cache]" in rerun.stdout
    assert points(folder) == serial["points"]
    assert_every_entry_verifies(folder)


def test_a_worker_killed_mid_point_is_retried_on_the_other_node(
    cluster: LocalCluster, serial: dict, tmp_path: Path,
) -> None:
    """Last in this file: the worker node stays dead."""
    worker = cluster.workers[0]
    folder = seeded_with_the_teacher(tmp_path, serial)
    driver = subprocess.Popen(study_command(folder, cluster.address), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + STUDY_TIMEOUT_S
    while not worker.running_points():
        assert driver.poll() is None and time.monotonic() < deadline, "no point reached the worker"
        time.sleep(0.2)
    time.sleep(2.0)  # mid-point: its stages are running
    worker.kill()
    output, _ = driver.communicate(timeout=STUDY_TIMEOUT_S)
    assert driver.returncode == 0, output[-3000:]
    finished_on = {line.split(" node ", 1)[1].split(",", 1)[0]
                   for line in output.splitlines() if line.startswith("study      ")
                   and " done" in line}
    assert len(finished_on) == 1  # both points, the killed one retried, on the head node
    assert points(folder) == serial["points"]  # the same answer, nothing lost
    assert_every_entry_verifies(folder)
