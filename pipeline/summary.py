"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def stage_summary(records: dict[str, dict[str, Any]]) -> str:
    """One row per trained model the run produced."""
    rows = []
    for stage, record in records.items():
        if "top1" in record and "macs" in record:
            rows.append((stage, record.get("model", ""), record["top1"], record["params"],
                         record["macs"], record.get("bytes")))
        scratch = record.get("scratch")
        if scratch:
            rows.append((f"{stage} (no teacher)", scratch["model"], scratch["top1"],
                         scratch["params"], scratch["macs"], scratch.get("bytes")))
    return format_table(("stage", "model", "top1", "params", "macs", "bytes"), rows)
