"""One study point on a cluster worker, which shares nothing with the head: the head's
entries of the point's chain arrive as bytes and fill a private stage cache in a temp
folder; the runner computes the rest there, the targets placed on workers are profiled
there, and every entry this worker sealed goes back as bytes for the head's cache to
receive (pipeline/cache_transfer.py). A worker killed mid-point leaves only its temp
folder (removed by the next point on that machine), never a half-written entry at the head.

No Ray here: pipeline/study/ray_executor.py runs this function as a Ray task."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from devices.artifact_kinds import model_file
from devices.base import TargetProfile
from devices.errors import PipelineError
from devices.fsutil import remove_dead_scratch, sha256_file
from pipeline.cache import StageCache
from pipeline.cache_transfer import PackedEntry, pack_entry, receive_packed
from pipeline.data import Dataset
from pipeline.runner import Runner
from pipeline.study.points import PointSpec, profile_point

WORK_FOLDER = "edge-pipeline-points"  # under the worker's temp folder


@dataclass(frozen=True)
class RemotePointJob:
    spec: PointSpec
    targets: tuple[TargetProfile, ...]  # the point's targets profiled on the worker


@dataclass(frozen=True)
class RemotePointResult:
    entries: tuple[PackedEntry, ...]  # every entry the worker sealed: stages and profiles
    lines: tuple[str, ...]  # what the runner and the profiles printed
    error: str | None = None  # the point's stages were refused (the point's, not the study's)
    profile_errors: dict[str, str] = field(default_factory=dict)  # target -> why not measured
    node: str = ""
    seconds: float = 0.0  # the task's own run time, of which:
    moving_seconds: float = 0.0  # writing the shipped entries, packing the sealed ones

    @property
    def bytes(self) -> int:
        return sum(len(packed.data) for packed in self.entries)


@contextmanager
def private_build_folder() -> Iterator[Path]:
    """A build folder of this worker's own, named so that the next point on this machine
    removes it if this process is killed (devices.fsutil.remove_dead_scratch)."""
    root = Path(tempfile.gettempdir()) / WORK_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    remove_dead_scratch(root)
    folder = Path(tempfile.mkdtemp(dir=root, prefix=f".point.pid{os.getpid()}.", suffix=".tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_remote_point(job: RemotePointJob, dataset: Dataset,
                     shipped: Sequence[PackedEntry]) -> RemotePointResult:
    started = time.perf_counter()
    lines: list[str] = []
    with private_build_folder() as build:
        cache = StageCache(build / "cache")
        for packed in shipped:
            receive_packed(cache, packed, origin="the head")
        moving = time.perf_counter() - started
        error, profile_errors = _run(job, dataset, build, lines.append)
        packing = time.perf_counter()
        received = {packed.name for packed in shipped}
        entries = tuple(pack_entry(entry) for stage, key in cache.entries()
                        if (stage, key) not in received
                        and (entry := cache.lookup(stage, key)) is not None)
        moving += time.perf_counter() - packing
    return RemotePointResult(entries, tuple(lines), error, profile_errors, socket.gethostname(),
                             round(time.perf_counter() - started, 3), round(moving, 3))


def _run(job: RemotePointJob, dataset: Dataset, build: Path, echo: Callable[[str], None]
         ) -> tuple[str | None, dict[str, str]]:
    """The point's stages, then its workers' profiles; what was refused, said."""
    try:
        run = Runner(job.spec.config, build, echo=lambda line: echo("    " + line)).run(
            dataset=dataset)
    except PipelineError as error:  # e.g. int8 refused by validation: the point's answer
        return str(error), {}
    profile_errors = {}
    for profile in job.targets:
        artifact = run.outcomes["export"].entry.path / model_file(profile.artifact_format,
                                                                  profile.artifact_precision)
        try:
            profile_point(job.spec, run, profile, sha256_file(artifact), build / "points",
                          build, echo)
        except PipelineError as error:  # the device failed: this point is not measured
            profile_errors[profile.name] = str(error)
    return None, profile_errors
