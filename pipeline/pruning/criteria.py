"""Channel importance criteria, a registry: higher score = more important channel.

- `l1`: L1 norm of each filter (summed over a group's producers). Threshold rule of the
  seed article: prune if |w| < beta * w_max, beta = `prune.threshold`, max per group.
- `apoz`: activation rate = 1 - average percentage of zeros of the channel's ReLU output
  on sample inputs. Threshold rule: prune if activation rate < alpha.
- `bn_scale`: |gamma| of the BatchNorm after the conv (Network Slimming). Threshold rule:
  prune if |gamma| < threshold. Groups without BatchNorm get no score and stay whole.
- `seed`: both of the seed article's rules at once: prune a channel if |w| < beta * w_max
  (beta = `prune.threshold`) or its activation rate < alpha (`prune.activation_threshold`).
  Its score, min(|w| / w_max, rate * beta / alpha), falls under beta exactly when either
  rule holds, so the shared threshold selection applies unchanged.

A criterion returns scores only for the groups it can judge; the plan lists the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.errors import PruningError
from devices.tf_env import keras
from pipeline.pruning.graph import ChannelGroup, DependencyGraph, leaf_layers
from pipeline.pruning.layer_rules import rule_for
from pipeline.pruning.selection import SelectionRule, relative_to_max

Scores = dict[int, np.ndarray]
# (model, graph, sample inputs, rule): only `seed` reads the rule's two thresholds
ScoreFunction = Callable[[Any, DependencyGraph, "np.ndarray | None", SelectionRule], Scores]


@dataclass(frozen=True)
class Criterion:
    name: str
    score: ScoreFunction
    threshold_relative_to_max: bool  # threshold compares score / group max (l1) or raw score
    comparable_across_layers: bool  # False: normalise per group before a global ranking
    needs_samples: bool
    description: str


CRITERIA: dict[str, Criterion] = {}


def register_criterion(criterion: Criterion) -> Criterion:
    CRITERIA[criterion.name] = criterion
    return criterion


def get_criterion(name: str) -> Criterion:
    if name not in CRITERIA:
        raise PruningError(
            f"unknown pruning criterion {name!r}; expected one of {', '.join(sorted(CRITERIA))} "
            "(hint: set prune.criterion)"
        )
    return CRITERIA[name]


def _filter_l1(layer: Any) -> np.ndarray:
    return rule_for(layer).filter_norms(layer)


def _channel_slice(graph: DependencyGraph, layer_name: str, group: ChannelGroup) -> slice | None:
    """Where the group's channels sit on the layer's output axis (after a Concatenate, at
    their segment's offset); None after Flatten, where they repeat per position."""
    layout = graph.layer_outputs[layer_name]
    offsets = layout.offsets(group.index)
    if layout.flattened or not offsets:
        return None
    return slice(offsets[0], offsets[0] + group.channels)


def l1_scores(
    model: Any, graph: DependencyGraph, sample_inputs: np.ndarray | None,
    rule: SelectionRule | None = None,
) -> Scores:
    """Summed over the group's producers, each at the group's channels of its output (a
    producer joined to a concatenation is cut into parts, one per group)."""
    layers = leaf_layers(model)
    return {
        group.index: sum(_filter_l1(layers[name])[_channel_slice(graph, name, group)]
                         for name in group.producers)
        for group in graph.prunable_groups()
    }


def _batch_norm_gammas(model: Any, graph: DependencyGraph, group: ChannelGroup) -> list[Any]:
    """|gamma| of each scaled BatchNorm carrying the group, at the group's channels; None
    for a BatchNorm without a scale."""
    gammas, layers = [], leaf_layers(model)
    for name in group.members:
        layer = layers[name]
        where = _channel_slice(graph, name, group)
        if isinstance(layer, keras.layers.BatchNormalization) and where is not None:
            gammas.append(np.abs(layer.gamma.numpy()[where]) if layer.scale else None)
    return gammas


def bn_scale_scores(
    model: Any, graph: DependencyGraph, sample_inputs: np.ndarray | None,
    rule: SelectionRule | None = None,
) -> Scores:
    """Groups without a scaled BatchNorm (e.g. a Dense hidden layer) are left whole."""
    scores = {}
    for group in graph.prunable_groups():
        gammas = _batch_norm_gammas(model, graph, group)
        if gammas and all(gamma is not None for gamma in gammas):
            scores[group.index] = np.mean(gammas, axis=0)
    if not scores:
        producers = [name for group in graph.prunable_groups() for name in group.producers]
        raise PruningError(
            "criterion bn_scale needs a BatchNormalization with a scale (gamma) after a "
            f"prunable layer; none of {', '.join(producers)} has one (hint: build the student "
            "with batch_norm = true, or use prune.criterion = \"l1\")"
        )
    return scores


def _is_relu(layer: Any) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return True
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "relu"


def _relu_outputs(model: Any, graph: DependencyGraph,
                  group: ChannelGroup) -> list[tuple[Any, slice]]:
    """Each ReLU output carrying the group, with where its channels sit on that output
    (the model's own layers: a nested model's inner outputs cannot be probed from outside)."""
    found, layers = [], {layer.name: layer for layer in model.layers}
    for name in (*group.producers, *group.members):
        layer, where = layers.get(name), _channel_slice(graph, name, group)
        if layer is not None and _is_relu(layer) and where is not None:
            found.append((layer.output, where))
    return found


def apoz_scores(
    model: Any, graph: DependencyGraph, sample_inputs: np.ndarray | None,
    rule: SelectionRule | None = None,
) -> Scores:
    if sample_inputs is None or len(sample_inputs) == 0:
        raise PruningError(
            "criterion apoz needs sample inputs to measure activations "
            "(hint: pass sample_inputs, e.g. a few hundred training images)"
        )
    probes: list[tuple[int, Any, slice]] = []
    for group in graph.prunable_groups():
        outputs = _relu_outputs(model, graph, group)
        if not outputs:
            raise PruningError(
                f"criterion apoz needs a ReLU on the channels of {', '.join(group.producers)}; "
                "found none (hint: use prune.criterion = \"l1\" for this model)"
            )
        probes.extend((group.index, output, where) for output, where in outputs)
    probe = keras.Model(model.inputs, [output for _, output, _ in probes])
    totals = [np.zeros(int(output.shape[-1])) for _, output, _ in probes]
    for start in range(0, len(sample_inputs), 128):
        activations = probe(sample_inputs[start:start + 128], training=False)
        activations = activations if isinstance(activations, list) else [activations]
        for position, activation in enumerate(activations):
            values = activation.numpy()
            totals[position] += (values > 0).reshape(-1, values.shape[-1]).sum(axis=0)
    scores: dict[int, list[np.ndarray]] = {}
    for position, (group_index, output, where) in enumerate(probes):
        per_channel = len(sample_inputs) * int(np.prod(output.shape[1:-1]))
        scores.setdefault(group_index, []).append(totals[position][where] / per_channel)
    return {index: np.mean(rates, axis=0) for index, rates in scores.items()}


def seed_scores(
    model: Any, graph: DependencyGraph, sample_inputs: np.ndarray | None,
    rule: SelectionRule | None = None,
) -> Scores:
    if rule is None or not rule.threshold or not rule.activation_threshold:
        raise PruningError(
            "criterion seed needs both of the article's thresholds (hint: set "
            "prune.threshold = beta > 0 and prune.activation_threshold = alpha > 0)"
        )
    beta, alpha = rule.threshold, rule.activation_threshold
    weights = l1_scores(model, graph, sample_inputs)
    rates = apoz_scores(model, graph, sample_inputs)
    return {
        index: np.minimum(relative_to_max(values), rates[index] * beta / alpha)
        for index, values in weights.items() if index in rates
    }


register_criterion(Criterion(
    "l1", l1_scores, threshold_relative_to_max=True, comparable_across_layers=False,
    needs_samples=False, description="L1 norm of each filter; prune if |w| < beta * w_max",
))
register_criterion(Criterion(
    "apoz", apoz_scores, threshold_relative_to_max=False, comparable_across_layers=True,
    needs_samples=True,
    description="ReLU activation rate on sample data (1 - APoZ); prune if rate < alpha",
))
register_criterion(Criterion(
    "bn_scale", bn_scale_scores, threshold_relative_to_max=False,
    comparable_across_layers=True, needs_samples=False,
    description="|gamma| of the BatchNorm after the conv (Network Slimming)",
))
register_criterion(Criterion(
    "seed", seed_scores, threshold_relative_to_max=False, comparable_across_layers=True,
    needs_samples=True,
    description="the seed article's two rules: |w| < beta * w_max or activation rate < alpha",
))
