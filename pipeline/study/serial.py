"""`study.executor = "serial"`: every point in this process, one after another."""

from __future__ import annotations

from pipeline.study.executors import PointsJob
from pipeline.study.points import Point, measure_point
from pipeline.study.progress_line import StudyClock, finished_line


def check(cluster: str | None) -> None:
    """Nothing to reach (`--cluster` selects the Ray executor, pipeline/cli.py)."""


def measure_points(job: PointsJob) -> list[Point]:
    clock = StudyClock(len(job.specs))
    points = []
    for index, spec in enumerate(job.specs, 1):
        job.echo(f"study      [{index}/{len(job.specs)}] {spec.arm} at {spec.level}, "
                 f"seed {spec.seed}")
        point = measure_point(spec, list(job.targets), job.dataset, build_dir=job.build_dir,
                              points_dir=job.points_dir, echo=job.echo)
        job.echo(finished_line(spec, point, clock))
        points.append(point)
    return points
