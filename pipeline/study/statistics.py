"""Paired tests on the same test images, and spreads over seeds."""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

SIGNIFICANCE = 0.05  # two arms differ when the paired test rejects "same accuracy" at 5%


def mcnemar_exact(first_correct: np.ndarray, second_correct: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: of the images exactly one of two models gets right,
    how surprising is the split if both were equally accurate (a fair coin per image)."""
    first, second = np.asarray(first_correct, bool), np.asarray(second_correct, bool)
    if first.shape != second.shape:
        raise ValueError(f"paired predictions differ in shape: {first.shape} vs {second.shape}")
    only_first = int(np.sum(first & ~second))
    only_second = int(np.sum(~first & second))
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    tail = sum(comb(discordant, k) for k in range(min(only_first, only_second) + 1))
    return min(1.0, 2 * tail / 2**discordant)


@dataclass(frozen=True)
class Spread:
    mean: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(float(np.mean(values)), float(min(values)), float(max(values)), len(values))

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "min": self.low, "max": self.high, "seeds": self.count}


@dataclass(frozen=True)
class PairedComparison:
    """The worst case over seeds: seed s of one arm against seed s of the other, on the
    same test images. The arms differ only if every seed's test rejects and agrees in sign."""

    p_value: float  # the largest over seeds
    first_better_in_every_seed: bool
    second_better_in_every_seed: bool
    discordant: tuple[int, ...]  # images exactly one of the pair got right, per seed

    @property
    def distinguishable(self) -> bool:
        """The first is better, beyond noise."""
        return self.p_value < SIGNIFICANCE and self.first_better_in_every_seed

    @property
    def reversed(self) -> bool:
        """The second is better, beyond noise."""
        return self.p_value < SIGNIFICANCE and self.second_better_in_every_seed


def compare_seeds(first: list[np.ndarray], second: list[np.ndarray]) -> PairedComparison:
    """`first[s]`, `second[s]`: per-image correctness of seed s of each arm."""
    pairs = list(zip(first, second))
    if not pairs:
        raise ValueError("no seeds to compare")
    p_values = [mcnemar_exact(a, b) for a, b in pairs]
    first_better = all(np.mean(a) > np.mean(b) for a, b in pairs)
    second_better = all(np.mean(a) < np.mean(b) for a, b in pairs)
    discordant = tuple(int(np.sum(np.asarray(a, bool) != np.asarray(b, bool))) for a, b in pairs)
    return PairedComparison(max(p_values), first_better, second_better, discordant)
