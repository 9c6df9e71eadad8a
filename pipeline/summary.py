"""The stage summary table printed after a run."""

from __future__ import annotations

from typing import Any

from devices.text import format_table


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
