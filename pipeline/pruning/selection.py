"""Which channels to keep: by ratio (per group, or ranked globally with a per-group floor) or
by the criterion's threshold rule; kept counts optionally rounded up to a multiple
(`round_to`, for SIMD-friendly kernels) and never below `min_channels`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from devices.errors import PruningError

Scores = dict[int, np.ndarray]
LAYER_CHOICES = ("all", "conv")  # which layers' channels may go
RATIO_EPSILON = 1e-9  # 12 * (1 - 0.5 / 0.75) must count as 4 channels, not 3.999...


@dataclass(frozen=True)
class SelectionRule:
    ratio: float | None = None
    threshold: float | None = None
    activation_threshold: float | None = None  # the `seed` criterion's alpha
    layers: str = "all"  # "conv": hidden Dense layers stay whole
    scope: str = "layer"
    min_channels: int = 2
    round_to: int = 1
    threshold_relative_to_max: bool = True
    comparable_across_layers: bool = True

    def check(self) -> None:
        if (self.ratio is None) == (self.threshold is None):
            raise PruningError(
                f"give exactly one of ratio and threshold, got ratio={self.ratio}, "
                f"threshold={self.threshold} (hint: prune.threshold > 0 selects by threshold)"
            )
        if self.ratio is not None and not 0.0 <= self.ratio < 1.0:
            raise PruningError(f"prune ratio {self.ratio} must be in [0, 1) (hint: e.g. 0.5)")
        if self.layers not in LAYER_CHOICES:
            raise PruningError(
                f"unknown layer choice {self.layers!r}; expected one of {', '.join(LAYER_CHOICES)}"
            )
        if self.scope not in SCOPES:
            raise PruningError(
                f"unknown pruning scope {self.scope!r}; expected one of {', '.join(SCOPES)}"
            )
        if self.min_channels < 1 or self.round_to < 1:
            raise PruningError(
                f"min_channels ({self.min_channels}) and round_to ({self.round_to}) must be "
                ">= 1 (hint: round_to = 1 means no rounding)"
            )


def rounded_count(kept: int, channels: int, rule: SelectionRule) -> int:
    """At least `min_channels`, rounded up to a multiple of `round_to`, at most `channels`."""
    kept = max(kept, rule.min_channels)
    kept = math.ceil(kept / rule.round_to) * rule.round_to
    return min(kept, channels)


def _top(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` highest scores (ties: lower index first), sorted."""
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[:count])


def relative_to_max(scores: np.ndarray) -> np.ndarray:
    peak = float(np.max(scores))
    return scores / peak if peak > 0 else np.zeros_like(scores)


def _ratio_per_layer(scores: Scores, rule: SelectionRule) -> dict[int, int]:
    return {
        index: rounded_count(len(values) - math.floor(len(values) * rule.ratio + RATIO_EPSILON),
                             len(values), rule)
        for index, values in scores.items()
    }


def _ratio_global(scores: Scores, rule: SelectionRule) -> dict[int, int]:
    ranked = {
        index: values if rule.comparable_across_layers else relative_to_max(values)
        for index, values in scores.items()
    }
    entries = sorted(
        (float(value), index, channel)
        for index, values in ranked.items() for channel, value in enumerate(values)
    )
    kept = {index: len(values) for index, values in scores.items()}
    to_prune = math.floor(len(entries) * rule.ratio + RATIO_EPSILON)
    for _, index, _ in entries:
        if to_prune == 0:
            break
        if kept[index] > min(rule.min_channels, len(scores[index])):
            kept[index] -= 1
            to_prune -= 1
    return {index: rounded_count(count, len(scores[index]), rule) for index, count in kept.items()}


def _threshold(scores: Scores, rule: SelectionRule) -> dict[int, int]:
    counts = {}
    for index, values in scores.items():
        compared = relative_to_max(values) if rule.threshold_relative_to_max else values
        surviving = int(np.sum(compared >= rule.threshold))
        counts[index] = rounded_count(surviving, len(values), rule)
    return counts


SCOPES: dict[str, Callable[[Scores, SelectionRule], dict[int, int]]] = {
    "layer": _ratio_per_layer,
    "global": _ratio_global,
}


def top_per_block(scores: np.ndarray, count: int, blocks: int) -> np.ndarray:
    """The best `count` channels, as the same number from each of `blocks` equal runs
    (a grouped convolution's groups), rounded up to a multiple of `blocks`."""
    if blocks == 1:
        return _top(scores, count)
    size, per_block = len(scores) // blocks, max(1, math.ceil(count / blocks))
    return np.concatenate([start + _top(scores[start:start + size], per_block)
                           for start in range(0, len(scores), size)])


def select_channels(scores: Scores, rule: SelectionRule,
                    blocks: Mapping[int, int] | None = None) -> dict[int, np.ndarray]:
    """Group index -> sorted indices of the channels to keep (the highest-scoring ones);
    `blocks`: groups whose equal runs must keep equal counts (grouped convolutions).

    With a threshold the scope does not matter: the rule is per channel (l1's w_max is
    the group's own maximum, as in the seed article's per-layer rule).
    """
    rule.check()
    counts = _threshold(scores, rule) if rule.threshold is not None \
        else SCOPES[rule.scope](scores, rule)
    blocks = blocks or {}
    return {index: top_per_block(np.asarray(scores[index], dtype=np.float64), counts[index],
                                  blocks.get(index, 1))
            for index in scores}
