"""Pruning to a measured budget: per-group channel counts chosen by what each group really
costs on the target, NetAdapt's greedy steps (Yang et al., ECCV 2018).

Each of `steps` steps asks to cut an equal share of the way from the unpruned cost to the
budget. For every prunable group it sizes the cut that group alone would need (from the cost
table, no training), prunes the current model there (the criterion ranks the group's
channels), re-estimates its BatchNorm statistics (EagleEye's adaptive BN, Li et al., ECCV
2020: a cheap proxy for a candidate's fine-tuned accuracy) and judges it on the VALIDATION
split. The step keeps the candidate that loses the least validation top-1 per unit of cost
saved, fine-tunes it for one pass over `step_samples` training images (NetAdapt's
short-term fine-tune), and the next step starts from it. The last step is sized to land
just under the budget (`aim`, the limit less the measurement's rounding), then refined: a
channel or two given back to the chosen group and the shortfall taken from one or two other
groups where that lands closer. Every decision reads predictions from the cost table, never
a timing taken during the search, so on the emulated Cortex-M4 the same inputs give the
same counts whether the table was cold or warm.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devices.errors import PruningError
from pipeline.config import StudentConfig
from pipeline.data import Dataset
from pipeline.hardware_cost.cost_model import CostModel, Prediction
from pipeline.hardware_cost.int8_graph import Int8Graph
from pipeline.hardware_cost.shape_model import ShapeMismatch, ShapeModel, probe
from pipeline.pruning.criteria import get_criterion
from pipeline.pruning.graph import DependencyGraph, analyse, leaf_layers
from pipeline.pruning.layer_rules import rule_for
from pipeline.pruning.recalibration import recalibrate_batch_norm
from pipeline.pruning.retraining import RetrainSettings, retrain
from pipeline.pruning.selection import SelectionRule, top_per_block
from pipeline.pruning.surgery import apply_keep
from pipeline.training import top1

Counts = dict[int, int]
LANDED = 0.995  # a landing within 0.5% under the aim is not refined
GIVE_BACK = 2  # channels (blocks) the refinement may return to the chosen group


@dataclass(frozen=True)
class SearchSettings:
    limit: float  # the budget, in the measurer's unit
    aim: float  # what a prediction must reach: the limit less the measurement's rounding
    steps: int  # the greedy steps from the unpruned cost to the aim, equal cuts
    criterion: str
    rule: SelectionRule  # layers, min_channels, and the seed criterion's thresholds
    step_samples: int  # training images each step's chosen model is fine-tuned on
    strategy: str  # the candidates' short fine-tune: "finetune" or "kd"
    training: StudentConfig
    learning_rate: float
    seed: int


@dataclass
class State:
    model: Any
    graph: DependencyGraph
    counts: Counts
    cost: Prediction
    top1_val: float


@dataclass(frozen=True)
class Candidate:
    group: int
    counts: Counts
    cost: float
    top1_val: float
    model: Any = field(repr=False, compare=False)


@dataclass(frozen=True)
class SearchOutcome:
    model: Any
    counts: Counts
    cost: Prediction
    top1_val: float
    steps: tuple[dict[str, Any], ...]
    shape_model: ShapeModel
    unpruned_cost: Prediction
    groups: dict[int, str]  # group index -> its producers, joined
    channels_before: Counts


def group_name(graph: DependencyGraph, group: int) -> str:
    return ", ".join(graph.groups[group].producers)


class BudgetSearch:
    def __init__(self, settings: SearchSettings, cost_model: CostModel, data: Dataset,
                 teacher: Any, samples: np.ndarray, convert: Callable[[Any], Int8Graph],
                 echo: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.cost_model = cost_model
        self.data = data
        self.teacher = teacher
        self.samples = samples
        self.convert = convert
        self.echo = echo
        self.criterion = get_criterion(settings.criterion)

    # -- costs ----------------------------------------------------------------------------
    def predict(self, counts: Mapping[int, int]) -> Prediction:
        return self.cost_model.predict(self.shapes.signatures(counts), self.shapes.io)

    def cost(self, counts: Mapping[int, int]) -> float:
        return self.predict(counts).total

    # -- channels -------------------------------------------------------------------------
    def _scores(self, model: Any, graph: DependencyGraph) -> dict[int, np.ndarray]:
        scores = self.criterion.score(model, graph, self.samples, self.settings.rule)
        if self.settings.rule.layers == "conv":
            layers = leaf_layers(model)
            scores = {index: values for index, values in scores.items()
                      if all(rule_for(layers[name]).convolution
                             for name in graph.groups[index].producers)}
        return scores

    def _floor(self, graph: DependencyGraph, group: int) -> int:
        channels, blocks = graph.groups[group].channels, graph.groups[group].blocks
        floor = min(self.settings.rule.min_channels, channels)
        return min(channels, max(blocks, math.ceil(floor / blocks) * blocks))

    def _pruned(self, state: State, counts: Mapping[int, int],
                scores: dict[int, np.ndarray]) -> Any:
        keep = {group: top_per_block(scores[group], count, state.graph.groups[group].blocks)
                for group, count in counts.items() if count < state.counts[group]}
        return apply_keep(state.model, state.graph, keep)

    def _calibrated(self, model: Any) -> Any:
        """BatchNorm statistics re-estimated on the sample images (no weight changes)."""
        recalibrate_batch_norm(model, self.samples)
        return model

    def _fine_tuned(self, model: Any, step: int) -> Any:
        """One short pass over `step_samples` training images, drawn per step."""
        settings, data = self.settings, self.data
        count = min(settings.step_samples, len(data.x_train))
        if count == 0:
            return model
        rng = np.random.default_rng([settings.seed, step])
        chosen = np.sort(rng.choice(len(data.x_train), count, replace=False))
        subset = dataclasses.replace(data, x_train=data.x_train[chosen],
                                     y_train=data.y_train[chosen], x_val=data.x_val[:0],
                                     y_val=data.y_val[:0])
        model, _ = retrain(settings.strategy, model, self.teacher, subset,
                           RetrainSettings(settings.training, 1, settings.learning_rate,
                                           settings.seed))
        return self._calibrated(model)

    def _top1_val(self, model: Any) -> float:
        return top1(model, self.data.x_val, self.data.y_val)

    # -- sizing ---------------------------------------------------------------------------
    def _size(self, counts: Counts, base_cost: float, group: int, target: float,
              exact: bool, graph: DependencyGraph) -> int | None:
        """Channels to take from `group` so the cost reaches `target` (the smallest such
        number when `exact`; None when the group can save nothing)."""
        unit = graph.groups[group].blocks
        most = counts[group] - self._floor(graph, group)
        if most < unit:
            return None

        def at(removed: int) -> float:
            return self.cost({**counts, group: counts[group] - removed})

        # two channels first (the MCU kernels take channels in pairs), twice as many while
        # that saves nothing (a runtime working in blocks of channels)
        probe = min(2 * unit, most)
        slope = (base_cost - at(probe)) / probe
        while slope <= 0 and probe < most:
            probe = min(most, 2 * probe)
            slope = (base_cost - at(probe)) / probe
        if slope <= 0:
            return None
        removed = min(most, max(unit, math.ceil((base_cost - target) / slope / unit) * unit))
        cost = at(removed)
        if not exact:
            return removed
        while cost > target and removed < most:
            extra = max(unit, math.ceil((cost - target) / slope / unit) * unit)
            removed = min(most, removed + extra)
            cost = at(removed)
        while removed > unit and at(removed - unit) <= target:
            removed -= unit
        return removed

    # -- one step -------------------------------------------------------------------------
    def _candidates(self, state: State, step: int, target: float, final: bool,
                    groups: list[int]) -> list[Candidate]:
        scores = self._scores(state.model, state.graph)
        found = []
        for group in groups:
            if group not in scores:
                continue
            removed = self._size(state.counts, state.cost.total, group, target, final,
                                 state.graph)
            if removed is None:
                continue
            counts = {**state.counts, group: state.counts[group] - removed}
            model = self._calibrated(self._pruned(state, counts, scores))
            found.append(Candidate(group, counts, self.cost(counts), self._top1_val(model),
                                   model))
        return found

    @staticmethod
    def _rate(state: State, candidate: Candidate, final: bool = False
              ) -> tuple[float, float, int]:
        """Validation top-1 lost per unit of cost saved; at equal rates a step saves more,
        and the last step lands closer under the aim."""
        saved = state.cost.total - candidate.cost
        lost = state.top1_val - candidate.top1_val
        return (lost / saved if saved > 0 else math.inf, saved if final else -saved,
                candidate.group)

    def _landing(self, state: State, chosen: Candidate, groups: list[int]) -> Counts:
        """Closer under the aim: give back up to GIVE_BACK blocks to the chosen group, then
        take what that overspends from one other group, or from two (the first one or two
        blocks short of landing alone, the second landing), as a coarse layer and a fine
        one together land closer than either."""
        aim = self.settings.aim
        best = [chosen.cost, chosen.counts]

        def consider(counts: Counts, cost: float | None = None) -> float:
            cost = self.cost(counts) if cost is None else cost
            if best[0] < cost <= aim:
                best[:] = [cost, counts]
            return cost

        unit = state.graph.groups[chosen.group].blocks
        taken = (state.counts[chosen.group] - chosen.counts[chosen.group]) // unit
        others = [group for group in groups if group != chosen.group]
        for back in range(1, min(GIVE_BACK, taken - 1) + 1):
            if best[0] >= LANDED * aim:
                break
            start = {**chosen.counts,
                     chosen.group: chosen.counts[chosen.group] + back * unit}
            start_cost = consider(start)
            if start_cost <= aim:
                continue
            for first in others:
                removed = self._size(start, start_cost, first, aim, True, state.graph)
                if removed is None:
                    continue
                alone = consider({**start, first: start[first] - removed})
                step = state.graph.groups[first].blocks
                shorts = (removed,) if alone > aim else (removed - step, removed - 2 * step)
                for short in (r for r in shorts if r >= step):
                    middle = {**start, first: start[first] - short}
                    middle_cost = consider(middle)
                    if middle_cost <= aim:
                        continue
                    for second in others:
                        if second == first:
                            continue
                        more = self._size(middle, middle_cost, second, aim, True, state.graph)
                        if more is not None:
                            consider({**middle, second: middle[second] - more})
        return best[1]

    def _accept(self, state: State, counts: Counts, model: Any, top1_val: float) -> State:
        """The chosen model as the next state: converted for real, the shape model rebased
        on it (probed again where its prediction was wrong), its cost from the real ops."""
        real = self.convert(model)
        graph = analyse(model)
        for group in counts:  # surgery keeps the architecture: the groups are the same
            if graph.groups[group].producers != state.graph.groups[group].producers:
                raise PruningError(f"prune.budget: channel group {group} changed producers "
                                   f"after surgery ({group_name(state.graph, group)} -> "
                                   f"{group_name(graph, group)})")
        try:
            self.shapes.rebase(counts, real)
        except ShapeMismatch:
            self.echo("  budget: the shape model missed this model's shapes; probing again")
            self.shapes = probe(model, graph, list(counts), counts, self.convert, real)
        cost = self.cost_model.predict(real.signatures, real.io)
        return State(model, graph, dict(counts), cost, top1_val)

    # -- the search -----------------------------------------------------------------------
    def run(self, model: Any, base: Int8Graph) -> SearchOutcome:
        """Search from `model`, whose int8 conversion is `base`."""
        graph = analyse(model)
        groups = sorted(self._scores(model, graph))
        if not groups:
            raise PruningError("prune.budget: no layer of this model can be pruned by "
                               f"criterion {self.settings.criterion!r} (hint: prune.criterion "
                               "= \"l1\", or prune.layers = \"all\")")
        counts = {group: graph.groups[group].channels for group in groups}
        self.shapes = probe(model, graph, groups, counts, self.convert, base)
        floor = {group: self._floor(graph, group) for group in counts}
        # the two ends in one batch: timed in the same interleaved rounds, comparable
        self.cost_model.measure_missing([*base.signatures, *self.shapes.signatures(floor)])
        unpruned = self.cost_model.predict(base.signatures, base.io)
        self._refuse_unreachable(floor)
        state = State(model, graph, counts, unpruned, self._top1_val(model))
        names = {group: group_name(graph, group) for group in groups}
        self.echo(f"  budget: {self._describe(unpruned.total)} unpruned, aim "
                  f"{self._describe(self.settings.aim)} (limit "
                  f"{self._describe(self.settings.limit)}); val top-1 {state.top1_val:.4f}")
        steps: list[dict[str, Any]] = []
        cut = (unpruned.total - self.settings.aim) / self.settings.steps
        while state.cost.total > self.settings.aim:
            step = len(steps) + 1
            final = state.cost.total - cut <= self.settings.aim * (1 + 1e-9)
            target = self.settings.aim if final else state.cost.total - cut
            candidates = self._candidates(state, step, target, final, groups)
            if not candidates:
                raise PruningError(f"prune.budget: no layer can lose a channel at step {step} "
                                   "(hint: lower prune.min_channels)")
            chosen = min(candidates, key=lambda c: self._rate(state, c, final))
            counts, model_next = chosen.counts, chosen.model
            if final and chosen.cost <= self.settings.aim:
                landed = self._landing(state, chosen, groups)
                if landed != chosen.counts:
                    scores = self._scores(state.model, state.graph)
                    counts = landed
                    model_next = self._calibrated(self._pruned(state, landed, scores))
            model_next = self._fine_tuned(model_next, step)
            before = state
            state = self._accept(state, counts, model_next, self._top1_val(model_next))
            steps.append(self._step_record(step, before, state, chosen, candidates, names))
            self.echo(self._step_line(steps[-1]))
        return SearchOutcome(state.model, state.counts, state.cost, state.top1_val,
                             tuple(steps), self.shapes, unpruned, names, counts_of(graph,
                                                                                   groups))

    def _refuse_unreachable(self, floor: Counts) -> None:
        lowest = self.cost(floor)
        if lowest > self.settings.aim:
            raise PruningError(
                f"prune.budget {self._describe(self.settings.limit)} cannot be reached: with "
                f"every prunable layer at prune.min_channels = {self.settings.rule.min_channels} "
                f"the model costs {self._describe(lowest)} (hint: raise the budget, lower "
                "prune.min_channels, or start from a narrower model)")

    def _describe(self, value: float) -> str:
        return self.cost_model.measurer.describe(value)

    def _step_record(self, step: int, before: State, after: State, chosen: Candidate,
                     candidates: list[Candidate], names: dict[int, str]) -> dict[str, Any]:
        changed = [group for group in after.counts if after.counts[group] != before.counts[group]]
        return {
            "step": step,
            "groups": {names[g]: [before.counts[g], after.counts[g]] for g in changed},
            "chosen": names[chosen.group],
            "cost": after.cost.total, "top1_val": after.top1_val,
            "candidates": [{"group": names[c.group],
                            "channels": [before.counts[c.group], c.counts[c.group]],
                            "cost": c.cost, "top1_val": c.top1_val,
                            "top1_lost_per_cost": _finite(self._rate(before, c)[0])}
                           for c in candidates],
        }

    def _step_line(self, record: dict[str, Any]) -> str:
        moves = ", ".join(f"{name} {a}->{b}" for name, (a, b) in record["groups"].items())
        return (f"  budget step {record['step']}: {moves} channels, "
                f"{self._describe(record['cost'])}, val top-1 {record['top1_val']:.4f} "
                f"({len(record['candidates'])} candidates)")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def counts_of(graph: DependencyGraph, groups: list[int]) -> Counts:
    return {group: graph.groups[group].channels for group in groups}
