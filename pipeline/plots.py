"""PNG plots for the report and the study: accuracy/latency Pareto charts, training
curves and the study's fronts.

Every function takes plain numbers and returns PNG bytes (matplotlib's Agg backend, no
display needed); callers write them atomically. `non_dominated` is the front both the
report and the study mark.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_MARKER, MAX_MARKER = 40.0, 900.0  # marker areas (points^2) for the smallest/largest file
LOG_SCALE_SPREAD = 20.0  # slowest / fastest latency above which the x axis turns logarithmic


@dataclass(frozen=True)
class ParetoPoint:
    label: str
    latency_ms: float
    top1: float
    bytes: int | None
    measured: bool  # False: a stand-in estimate, drawn hollow
    group: str = ""  # e.g. the target; one colour per group


def non_dominated(
    items: Sequence[Any], objectives: Sequence[Callable[[Any], float | None]]
) -> list[int]:
    """Indices of items no other item dominates. Each objective returns a value to
    MINIMISE (negate accuracies); an item with a None objective is never on the front."""
    values = [[objective(item) for objective in objectives] for item in items]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    complete = [index for index, row in enumerate(values) if None not in row]
    return [index for index in complete
            if not any(dominates(values[other], values[index])
                       for other in complete if other != index)]


def pareto_front(points: Sequence[ParetoPoint]) -> list[int]:
    """Higher top-1 and lower latency are better."""
    return non_dominated(points, (lambda p: -p.top1, lambda p: p.latency_ms))


def _pyplot() -> Any:
    import matplotlib  # deferred: seconds of start-up, only `make report` draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def _marker_areas(points: Sequence[ParetoPoint]) -> list[float]:
    sizes = [p.bytes for p in points if p.bytes]
    if not sizes:
        return [MIN_MARKER * 3] * len(points)
    low, high = min(sizes), max(sizes)
    span = (high - low) or 1
    return [MIN_MARKER * 3 if not p.bytes else
            MIN_MARKER + (MAX_MARKER - MIN_MARKER) * (p.bytes - low) / span for p in points]


def pareto_png(points: Sequence[ParetoPoint], title: str) -> bytes:
    """Top-1 against latency; marker area = bytes; the front joined by a dashed line."""
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    groups = sorted({p.group for p in points})
    colours = {group: f"C{index % 10}" for index, group in enumerate(groups)}
    for point, area in zip(points, _marker_areas(points)):
        colour = colours[point.group]
        axes.scatter([point.latency_ms], [100 * point.top1], s=area, alpha=0.75,
                     facecolors=colour if point.measured else "none", edgecolors=colour,
                     linewidths=1.5)
        if not point.measured and len(groups) > 1:
            continue  # one label per measured point keeps the every-target chart readable
        suffix = "" if point.measured else " (est.)"
        axes.annotate(f"{point.label}{suffix}", (point.latency_ms, 100 * point.top1),
                      textcoords="offset points", xytext=(6, 6), fontsize=8)
    for index, group in enumerate(groups):  # one front per target: devices don't compete
        members = [p for p in points if p.group == group]
        front = sorted((members[i] for i in pareto_front(members)), key=lambda p: p.latency_ms)
        axes.plot([p.latency_ms for p in front], [100 * p.top1 for p in front], "--",
                  color=colours[group] if len(groups) > 1 else "k", linewidth=1,
                  label="Pareto front" if index == 0 else None)
    latencies = [p.latency_ms for p in points if p.latency_ms > 0]
    if latencies and max(latencies) / min(latencies) > LOG_SCALE_SPREAD:
        axes.set_xscale("log")
    for group in groups if len(groups) > 1 else ():
        axes.scatter([], [], color=colours[group], label=group)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize=8)
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("top-1 (%)")
    axes.set_title(f"{title}\nmarker area = bytes; hollow = latency estimated from MACs",
                   fontsize=10)
    axes.grid(True, alpha=0.3)
    return _png(figure)


def curves_png(stage: str, history: dict[str, Sequence[float]]) -> bytes:
    """Loss curves left, every other metric (accuracy, learning rate…) right."""
    pyplot = _pyplot()
    figure, (loss_axes, metric_axes) = pyplot.subplots(1, 2, figsize=(9, 3.5))
    for name, values in sorted(history.items()):
        if not values:
            continue
        axes = loss_axes if "loss" in name else metric_axes
        axes.plot(range(1, len(values) + 1), list(values), marker=".", label=name)
    for axes, what in ((loss_axes, "loss"), (metric_axes, "metric")):
        axes.set_xlabel("epoch")
        axes.set_ylabel(what)
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    figure.suptitle(f"training curves: {stage}")
    return _png(figure)


@dataclass(frozen=True)
class CurvePoint:
    x: float
    top1: float  # mean over seeds
    low: float  # seed minimum
    high: float  # seed maximum


def study_front_png(curves: dict[str, Sequence[CurvePoint]], x_label: str, title: str) -> bytes:
    """Top-1 against a cost, one line per arm (its levels), bars from the seeds' minimum to
    maximum, the front over every arm's points ringed."""
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    everything = [point for points in curves.values() for point in points]
    for index, (arm, points) in enumerate(curves.items()):
        ordered = sorted(points, key=lambda p: p.x)
        axes.errorbar([p.x for p in ordered], [100 * p.top1 for p in ordered],
                      yerr=[[100 * (p.top1 - p.low) for p in ordered],
                            [100 * (p.high - p.top1) for p in ordered]],
                      marker="o", capsize=3, color=f"C{index % 10}", label=arm)
    front = non_dominated(everything, (lambda p: -p.top1, lambda p: p.x))
    axes.scatter([everything[i].x for i in front], [100 * everything[i].top1 for i in front],
                 s=220, facecolors="none", edgecolors="k", linewidths=1.2, label="front")
    xs = [p.x for p in everything if p.x > 0]
    if xs and max(xs) / min(xs) > LOG_SCALE_SPREAD / 4:
        axes.set_xscale("log")
    axes.set_xlabel(x_label)
    axes.set_ylabel("test top-1 (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    return _png(figure)
