"""The prune record's `budget` section, and the part of it a bundle's manifest carries
(metrics.pruned.budget): what was asked, what the target measured, where the cost went;
the search log and the table values it used stay in the stage record."""

from __future__ import annotations

from typing import Any

SUMMARY_KEYS = ("target", "quantity", "limit", "unit", "limit_in_unit", "predicted",
                "measured", "spread", "met", "of_limit", "prediction_error", "layers")


def budget_summary(budget: dict[str, Any]) -> dict[str, Any]:
    return {key: budget[key] for key in SUMMARY_KEYS if key in budget}
