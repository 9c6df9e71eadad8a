"""The study's line per finished point: the point's numbers, how many points are done and
still to go, and the time left estimated from the pace so far (wall time per finished
point, so a cluster's parallel points shorten the estimate as they shorten the study)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.study.points import Point, PointSpec


def duration(seconds: float) -> str:
    """`42s`, `3m 05s`, `2h 10m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


@dataclass
class StudyClock:
    total: int
    now: Callable[[], float] = time.perf_counter
    started: float = field(default=0.0)
    done: int = 0

    def __post_init__(self) -> None:
        self.started = self.now()

    def finished(self) -> str:
        """Count one more finished point; say where the study stands."""
        self.done += 1
        left = self.total - self.done
        if left == 0:
            return f"{self.done}/{self.total} done in {duration(self.now() - self.started)}"
        pace = (self.now() - self.started) / self.done
        return f"{self.done}/{self.total} done, {left} to go, about {duration(pace * left)} left"


def describe_point(point: Point) -> str:
    record = point.record
    if point.failed:
        return f"refused: {record['error']}"
    latencies = ", ".join(
        f"{target} {entry['ms']:.4g} ms" if entry.get("ms") is not None
        else f"{target} not measured" for target, entry in record["latency"].items())
    return (f"{record['macs']:,} MACs, top-1 val {record['top1_val']:.4f} test "
            f"{record['top1_test']:.4f}; {latencies}")


def finished_line(spec: PointSpec, point: Point, clock: StudyClock, where: str = "") -> str:
    """`study      scratch at 1/4, seed 0 [on 10.0.0.2]: <numbers> (3/40 done, …)`."""
    place = f" [{where}]" if where else ""
    return (f"study      {spec.arm} at {spec.level}, seed {spec.seed}{place}: "
            f"{describe_point(point)} ({clock.finished()})")
