"""Where the cost went, per prunable layer: each op is charged to the group whose channels
decide its width (shape_model.ShapeModel.group_of_op: a conv to the channels it makes, the
pooling after it likewise, a layer that only reads a group, such as the logits after a
pruned Dense, to that group); ops no group changes, and the invoke's copies, are rows of
their own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from devices.op_signature import OpSignature

FIXED_ROW = "(ops no pruning changes)"
INVOKE_ROW = "(invoke: input and output copies)"


def layer_cost_rows(owners: Sequence[int | None], names: Mapping[int, str],
                    channels_before: Mapping[int, int], channels_after: Mapping[int, int],
                    before: Sequence[float], after: Sequence[float],
                    signatures_after: Sequence[OpSignature], invoke: tuple[float, float]
                    ) -> list[dict[str, Any]]:
    """One row per group (channels and cost before and after, the ops charged to it), then
    the fixed ops and the invoke; `before`/`after` are per-op costs in graph order."""
    total_after = sum(after) + invoke[1]
    rows = []
    for owner in [*names, None]:
        ops = [index for index, found in enumerate(owners) if found == owner]
        if owner is None and not ops:
            continue
        cost_before = sum(before[index] for index in ops)
        cost_after = sum(after[index] for index in ops)
        rows.append({
            "layer": names[owner] if owner is not None else FIXED_ROW,
            "channels_before": channels_before.get(owner) if owner is not None else None,
            "channels_after": channels_after.get(owner) if owner is not None else None,
            "cost_before": cost_before, "cost_after": cost_after,
            "cut": 1.0 - cost_after / cost_before if cost_before else 0.0,
            "share_after": cost_after / total_after if total_after else 0.0,
            "ops": [f"#{index} {signatures_after[index].label}" for index in ops],
        })
    rows.append({"layer": INVOKE_ROW, "channels_before": None, "channels_after": None,
                 "cost_before": invoke[0], "cost_after": invoke[1],
                 "cut": 1.0 - invoke[1] / invoke[0] if invoke[0] else 0.0,
                 "share_after": invoke[1] / total_after if total_after else 0.0, "ops": []})
    return rows


def layer_cost_table(rows: Sequence[dict[str, Any]], unit: str) -> list[str]:
    """The rows as aligned text (the prune stage's log, the study's report)."""
    lines = [f"  {'layer':<34}{'channels':>10}{'cost before':>15}{'after':>13}{'cut':>7}"
             f"{'share':>7}"]
    for row in rows:
        channels = ("" if row["channels_before"] is None
                    else f"{row['channels_before']}->{row['channels_after']}")
        lines.append(f"  {row['layer'][:33]:<34}{channels:>10}"
                     f"{_cost(row['cost_before'], unit):>15}{_cost(row['cost_after'], unit):>13}"
                     f"{100 * row['cut']:>6.0f}%{100 * row['share_after']:>6.1f}%")
    return lines


def _cost(value: float, unit: str) -> str:
    return f"{value:,.0f}" if unit == "instructions" else f"{value:.4f}"
