"""Selection rules: per-layer ratio, global ranking with a floor, threshold, rounding."""

from __future__ import annotations

import numpy as np
import pytest

from devices.errors import PruningError
from pipeline.pruning.selection import SelectionRule, rounded_count, select_channels

SCORES = {
    0: np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4]),
    1: np.array([0.05, 0.01, 0.02, 0.03]),
}


def test_layer_ratio_keeps_the_top_half_of_each_group() -> None:
    keep = select_channels(SCORES, SelectionRule(ratio=0.5, min_channels=1))
    assert keep[0].tolist() == [0, 2, 4, 6]
    assert keep[1].tolist() == [0, 3]


def test_global_ratio_ranks_across_groups_with_a_floor() -> None:
    # 12 channels, prune 6: group 1's scores are all lowest, but it stops at the floor of
    # 2, so the other 4 prunes come from group 0's weakest (0.1, 0.2, 0.3, 0.4).
    keep = select_channels(SCORES, SelectionRule(ratio=0.5, scope="global", min_channels=2))
    assert keep[1].tolist() == [0, 3]
    assert keep[0].tolist() == [0, 2, 4, 6]


def test_global_ratio_normalises_scores_that_are_not_comparable() -> None:
    rule = SelectionRule(ratio=0.5, scope="global", min_channels=1,
                         comparable_across_layers=False)
    keep = select_channels(SCORES, rule)
    # relative to each group's max, group 1 is 1.0, 0.2, 0.4, 0.6: it is pruned like group 0
    assert keep[1].tolist() == [0, 3]
    assert keep[0].tolist() == [0, 2, 4, 6]


def test_threshold_relative_to_max() -> None:
    rule = SelectionRule(threshold=0.5, min_channels=1, threshold_relative_to_max=True)
    keep = select_channels(SCORES, rule)
    assert keep[0].tolist() == [0, 2, 4, 6]  # >= 0.45
    assert keep[1].tolist() == [0, 3]  # >= 0.025


def test_threshold_never_goes_below_min_channels() -> None:
    rule = SelectionRule(threshold=0.5, min_channels=3, threshold_relative_to_max=False)
    keep = select_channels(SCORES, rule)
    assert keep[0].tolist() == [0, 2, 4, 6]
    assert keep[1].tolist() == [0, 2, 3]


@pytest.mark.parametrize(("kept", "channels", "round_to", "expected"), [
    (5, 32, 1, 5), (5, 32, 4, 8), (9, 32, 8, 16), (9, 32, 16, 16), (17, 20, 8, 20), (1, 32, 4, 4),
])
def test_rounding_goes_up_to_a_multiple(kept: int, channels: int, round_to: int,
                                        expected: int) -> None:
    rule = SelectionRule(ratio=0.5, min_channels=2, round_to=round_to)
    assert rounded_count(kept, channels, rule) == expected


def test_round_to_applies_to_ratio_selection() -> None:
    keep = select_channels(SCORES, SelectionRule(ratio=0.75, round_to=4, min_channels=1))
    assert keep[0].tolist() == [0, 2, 4, 6]  # 2 kept -> rounded up to 4
    assert keep[1].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("rule", [
    SelectionRule(), SelectionRule(ratio=0.5, threshold=0.1), SelectionRule(ratio=1.0),
    SelectionRule(ratio=0.5, scope="everywhere"), SelectionRule(ratio=0.5, round_to=0),
])
def test_bad_rules_are_refused(rule: SelectionRule) -> None:
    with pytest.raises(PruningError):
        select_channels(SCORES, rule)
