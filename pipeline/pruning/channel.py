"""Structured channel pruning in one call: analyse -> score -> select -> surgery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.pruning.criteria import get_criterion
from pipeline.pruning.graph import DependencyGraph, analyse, leaf_layers
from pipeline.pruning.layer_rules import rule_for
from pipeline.pruning.selection import SelectionRule, select_channels
from pipeline.pruning.surgery import apply_keep


@dataclass(frozen=True)
class GroupDecision:
    index: int
    producers: tuple[str, ...]
    channels_before: int
    kept: tuple[int, ...]

    @property
    def channels_after(self) -> int:
        return len(self.kept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "producers": list(self.producers),
            "channels_before": self.channels_before,
            "channels_after": self.channels_after,
            "kept": list(self.kept),
        }


@dataclass(frozen=True)
class PrunePlan:
    criterion: str
    rule: SelectionRule
    decisions: tuple[GroupDecision, ...]
    skipped: tuple[str, ...] = ()  # producers of prunable groups the criterion cannot judge
    fixed: tuple[str, ...] = ()  # "producers: why" for each group that must stay whole

    def layer_channels(self) -> dict[str, tuple[int, int]]:
        """Producer layer -> (channels before, channels after)."""
        return {
            producer: (decision.channels_before, decision.channels_after)
            for decision in self.decisions for producer in decision.producers
        }

    @property
    def channels_before(self) -> int:
        return sum(decision.channels_before for decision in self.decisions)

    @property
    def channels_after(self) -> int:
        return sum(decision.channels_after for decision in self.decisions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "ratio": self.rule.ratio,
            "threshold": self.rule.threshold,
            "activation_threshold": self.rule.activation_threshold,
            "layers": self.rule.layers,
            "scope": self.rule.scope,
            "min_channels": self.rule.min_channels,
            "round_to": self.rule.round_to,
            "channels_before": self.channels_before,
            "channels_after": self.channels_after,
            "groups": [decision.to_dict() for decision in self.decisions],
            "skipped": list(self.skipped),
            "fixed": list(self.fixed),
        }


def _is_conv(layer: Any) -> bool:
    return rule_for(layer).convolution


def plan_pruning(
    model: Any, graph: DependencyGraph, criterion: str, rule: SelectionRule,
    sample_inputs: np.ndarray | None = None,
) -> PrunePlan:
    chosen = get_criterion(criterion)
    rule = SelectionRule(
        ratio=rule.ratio, threshold=rule.threshold,
        activation_threshold=rule.activation_threshold, layers=rule.layers, scope=rule.scope,
        min_channels=rule.min_channels, round_to=rule.round_to,
        threshold_relative_to_max=chosen.threshold_relative_to_max,
        comparable_across_layers=chosen.comparable_across_layers,
    )
    rule.check()
    scores = chosen.score(model, graph, sample_inputs, rule)
    if rule.layers == "conv":
        layers = leaf_layers(model)
        scores = {index: values for index, values in scores.items()
                  if all(_is_conv(layers[name]) for name in graph.groups[index].producers)}
    keep = select_channels(scores, rule, {index: graph.groups[index].blocks for index in scores})
    decisions = tuple(
        GroupDecision(index, graph.groups[index].producers, graph.groups[index].channels,
                      tuple(int(c) for c in kept))
        for index, kept in sorted(keep.items())
    )
    skipped = tuple(
        name for group in graph.prunable_groups() if group.index not in keep
        for name in group.producers
    )
    fixed = tuple(f"{', '.join(group.producers)}: {group.reason}" for group in graph.fixed_groups())
    return PrunePlan(criterion, rule, decisions, skipped, fixed)


def prune_channels(
    model: Any, criterion: str, *, ratio: float | None = None, threshold: float | None = None,
    activation_threshold: float | None = None, layers: str = "all", scope: str = "layer",
    min_channels: int = 2, round_to: int = 1, sample_inputs: np.ndarray | None = None,
) -> tuple[Any, PrunePlan]:
    """A narrower copy of `model` without its least important channels, and the plan.

    Give `ratio` (fraction of channels to remove) or `threshold` (the criterion's rule).
    Raises PruningError naming any layer the dependency analysis cannot handle.
    """
    graph = analyse(model)
    rule = SelectionRule(ratio=ratio, threshold=threshold,
                         activation_threshold=activation_threshold, layers=layers,
                         scope=scope, min_channels=min_channels, round_to=round_to)
    plan = plan_pruning(model, graph, criterion, rule, sample_inputs)
    keep = {decision.index: np.asarray(decision.kept) for decision in plan.decisions}
    return apply_keep(model, graph, keep), plan
