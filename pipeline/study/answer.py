"""The answer, a pure function of the measured points: per level and target, the arm with
the best validation top-1 among those meeting the target's budget, its test top-1, and
whether the runner-up is distinguishable from it on the same test images (statistics.py).
When it is not, the answer says "tie within noise" instead of naming a winner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.study.arms import HARDWARE_ARMS
from pipeline.study.levels import MAC_TOLERANCE
from pipeline.study.points import Point
from pipeline.study.statistics import PairedComparison, Spread, compare_seeds


@dataclass(frozen=True)
class ArmAtLevel:
    """Every seed of one arm at one level."""

    arm: str
    level: str
    points: tuple[Point, ...]

    @property
    def measured(self) -> bool:
        return bool(self.points) and not any(point.failed for point in self.points)

    def spread(self, key: str) -> Spread:
        return Spread.of([point.record[key] for point in self.points])

    @property
    def macs(self) -> int:
        return round(float(np.mean([point.record["macs"] for point in self.points])))

    def latency_ms(self, target: str) -> float | None:
        values = [(point.record["latency"].get(target) or {}).get("ms") for point in self.points]
        return None if any(v is None for v in values) else float(np.mean(values))

    def meets(self, target: str) -> bool:
        return self.measured and all(
            point.record["budget"].get(target, {}).get("passed") for point in self.points)

    def test_correct(self) -> list[np.ndarray]:
        ordered = sorted(self.points, key=lambda point: point.record["seed"])
        return [point.test_correct for point in ordered]


def group(points: Sequence[Point]) -> list[ArmAtLevel]:
    keys: dict[tuple[str, str], list[Point]] = {}
    for point in points:
        keys.setdefault((point.record["arm"], point.record["level"]), []).append(point)
    return [ArmAtLevel(arm, level, tuple(members)) for (arm, level), members in keys.items()]


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _rank_key(candidate: ArmAtLevel, target: str) -> tuple[float, float]:
    latency = candidate.latency_ms(target)
    return (-candidate.spread("top1_val").mean, latency if latency is not None else float("inf"))


def _comparison(first: ArmAtLevel, second: ArmAtLevel) -> PairedComparison:
    return compare_seeds(first.test_correct(), second.test_correct())


def _verdict(first: ArmAtLevel, second: ArmAtLevel, comparison: PairedComparison) -> str:
    a, b = first.spread("top1_test").mean, second.spread("top1_test").mean
    if comparison.distinguishable:
        return (f"{first.arm} beats {second.arm}: {_percent(a)} vs {_percent(b)} test top-1, "
                f"p = {comparison.p_value:.2g}")
    if comparison.reversed:  # picked on validation, beaten on test: no winner to name
        return (f"validation and test disagree: {second.arm} {_percent(b)} vs {first.arm} "
                f"{_percent(a)} on test, p = {comparison.p_value:.2g}")
    return (f"tie within noise: {first.arm} {_percent(a)} vs {second.arm} {_percent(b)}, "
            f"p = {comparison.p_value:.2g}")


def _entry(candidate: ArmAtLevel | None) -> dict[str, Any] | None:
    if candidate is None:
        return None
    return {"arm": candidate.arm, "level": candidate.level, "macs": candidate.macs,
            "top1_val": candidate.spread("top1_val").to_dict(),
            "top1_test": candidate.spread("top1_test").to_dict()}


def choose(candidates: Sequence[ArmAtLevel], target: str, where: str) -> dict[str, Any]:
    """The best arm meeting the budget (on validation), the runner-up, and the paired test
    between them on test: {pick, runner_up, p_value, distinguishable, text}."""
    measured = [c for c in candidates if c.measured]
    meeting = sorted((c for c in measured if c.meets(target)),
                     key=lambda c: _rank_key(c, target))
    if not meeting:
        return {"pick": None, "runner_up": None, "p_value": None, "distinguishable": None,
                "text": f"{where}: no arm meets the {target} budget"}
    pick = meeting[0]
    others = [c for c in meeting[1:] if c.arm != pick.arm]
    runner_up = others[0] if others else None
    answer = {"pick": _entry(pick), "runner_up": _entry(runner_up), "p_value": None,
              "distinguishable": None}
    latency = pick.latency_ms(target)
    cost = "latency not measured" if latency is None else f"{latency:.4g} ms"
    text = (f"{where}: {pick.arm} at {pick.level} ({_percent(pick.spread('top1_test').mean)} "
            f"test, {cost})")
    if runner_up is None:
        answer["text"] = text + "; the only arm meeting the budget"
        return answer
    comparison = _comparison(pick, runner_up)
    answer |= {"p_value": comparison.p_value, "distinguishable": comparison.distinguishable,
               "discordant_images": list(comparison.discordant)}
    answer["text"] = f"{text}; {_verdict(pick, runner_up, comparison)}"
    return answer


def distillation_gain(candidates: Sequence[ArmAtLevel]) -> dict[str, Any] | None:
    """What the teacher bought the student at one size: distill against scratch."""
    arms = {c.arm: c for c in candidates if c.measured}
    if "distill" not in arms or "scratch" not in arms:
        return None
    distill, scratch = arms["distill"], arms["scratch"]
    comparison = _comparison(distill, scratch)
    points = 100 * (distill.spread("top1_test").mean - scratch.spread("top1_test").mean)
    return {"points": points, "p_value": comparison.p_value,
            "distinguishable": comparison.distinguishable,
            "text": f"distillation {points:+.2f} points over scratch "
                    f"(p = {comparison.p_value:.2g})"}


# each hardware-aware arm and the uniform arm it replaces (the same source and fine-tune)
UNIFORM_OF = {"prune-hw": "prune", "distill+prune-hw": "distill+prune"}


def _cost_on(candidate: ArmAtLevel, target: str) -> float | None:
    """The arm's measured cost on `target`: exact instructions where counted, else ms."""
    values = []
    for point in candidate.points:
        latency = point.record["latency"].get(target) or {}
        values.append(latency.get("instructions") or latency.get("ms"))
    return None if any(v is None for v in values) else float(np.mean(values))


def _amount(value: float) -> str:
    """Instructions as a whole count, milliseconds to four figures."""
    return f"{value:,.0f}" if value >= 1000 else f"{value:.4g}"


def hardware_gain(candidates: Sequence[ArmAtLevel], target: str) -> list[dict[str, Any]]:
    """What choosing channels by measured cost bought at one level: each hardware-aware arm
    against its uniform arm on the same test images (wins, loses or ties), with both costs."""
    arms = {c.arm: c for c in candidates if c.measured}
    found = []
    for aware, uniform in UNIFORM_OF.items():
        if aware not in arms or uniform not in arms:
            continue
        first, second = arms[aware], arms[uniform]
        comparison = _comparison(first, second)
        points = 100 * (first.spread("top1_test").mean - second.spread("top1_test").mean)
        verdict = ("wins" if comparison.distinguishable else
                   "loses" if comparison.reversed else "ties")
        cost_aware, cost_uniform = _cost_on(first, target), _cost_on(second, target)
        costs = ("" if cost_aware is None or cost_uniform is None else
                 f" at {_amount(cost_aware)} vs {_amount(cost_uniform)} on {target}")
        found.append({"arm": aware, "against": uniform, "points": points,
                      "p_value": comparison.p_value, "verdict": verdict,
                      "cost": cost_aware, "against_cost": cost_uniform,
                      "macs": first.macs, "against_macs": second.macs,
                      "text": f"{aware} {verdict} against {uniform}: {points:+.2f} points"
                              f"{costs} (p = {comparison.p_value:.2g})"})
    return found


def measured_budget(candidate: ArmAtLevel) -> float | None:
    """A hardware-aware arm's cost on its budget's target, the mean over its seeds."""
    values = [(point.record.get("prune_budget") or {}).get("measured")
              for point in candidate.points]
    return None if any(v is None for v in values) else float(np.mean(values))


def off_level(candidate: ArmAtLevel, level_macs: int, level_cost: float | None = None) -> bool:
    """More than 10% off the level: by MACs, or for the hardware-aware arms by the measured
    cost they were pruned to (their MACs are what that cost buys)."""
    if candidate.arm in HARDWARE_ARMS:
        cost = measured_budget(candidate)
        return level_cost is None or cost is None or (
            abs(cost - level_cost) > MAC_TOLERANCE * level_cost)
    return abs(candidate.macs - level_macs) > MAC_TOLERANCE * level_macs


def answer_study(points: Sequence[Point], levels: Sequence[tuple[str, int]],
                 targets: Sequence[str], level_costs: Mapping[str, float] | None = None
                 ) -> dict[str, Any]:
    """`levels`: (label, MACs wanted); `level_costs`: label -> the cost the hardware-aware
    arms were pruned to. Per level and target: the choice; per target: the choice over
    every level (the summary `make advise` prints) and where the pick changes."""
    grouped = group(points)
    answers = []
    costs = level_costs or {}
    for label, level_macs in levels:
        here = [c for c in grouped if c.level == label]
        off = sorted(c.arm for c in here
                     if c.measured and off_level(c, level_macs, costs.get(label)))
        for target in targets:
            answer = {"level": label, "target": target, "macs": level_macs,
                      "arms_off_level": off, **choose(here, target, f"{label} of the teacher's "
                                                                     f"MACs on {target}")}
            answer["distillation"] = distillation_gain(here)
            answer["hardware_aware"] = hardware_gain(here, target)
            answers.append(answer)
    summary = {}
    for target in targets:
        picks = [(a["level"], a["pick"]["arm"] if a["pick"] else None)
                 for a in answers if a["target"] == target]
        changes = [f"{before[1]} at {before[0]} -> {after[1]} at {after[0]}"
                   for before, after in zip(picks, picks[1:]) if before[1] != after[1]]
        overall = choose(grouped, target, target)
        summary[target] = overall | {"crossings": changes}
    return {"answers": answers, "summary": summary}
