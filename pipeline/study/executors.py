"""Where a study's points run (`study.executor`): a registry of modules, each with
`check(cluster)`, run before anything is planned (a missing extra, an unreachable
cluster: said at once), and `measure_points(job) -> list[Point]` in the order of
`job.specs`. A module is imported only when chosen, so the Ray one (and `import ray`, an
optional extra) costs nothing to a study that runs here (docs/architecture.md, The flow)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from devices.base import TargetProfile
from pipeline.data import Dataset
from pipeline.profile import Echo
from pipeline.study.points import Point, PointSpec

EXECUTORS: dict[str, str] = {
    "serial": "pipeline.study.serial",  # one point after another, in this process
    "ray": "pipeline.study.ray_executor",  # each point a task on a Ray cluster
}


@dataclass(frozen=True)
class PointsJob:
    specs: tuple[PointSpec, ...]
    targets: tuple[TargetProfile, ...]
    dataset: Dataset
    build_dir: Path  # its cache is the study's source of truth
    points_dir: Path  # dist/study/points/
    echo: Echo
    cluster: str | None = None  # a Ray address (`--cluster`); None: RAY_ADDRESS, or this machine's


class Executor(Protocol):
    def check(self, cluster: str | None) -> None: ...

    def measure_points(self, job: PointsJob) -> list[Point]: ...


def load_executor(name: str) -> Executor:
    return cast(Executor, importlib.import_module(EXECUTORS[name]))
