"""The per-layer profile of an MCU run: each op's instructions from the firmware's layer marks.

The benchmark firmware reads the timer before the first op and after each op (the layer
marks of the generated model.c, built with MCU_LAYER_PROFILE). Under `-icount shift=0` a
tick is a known number of instructions, so each row is exact. Rows take the report's `ops`
shape (name, type, ms or instructions, share; the phone's fills ms) with the MCU's own
measures beside it. Each row includes one timer read (a few instructions); the rows'
sum is the inference minus the input and output copies of model_invoke.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devices.base import DeviceError
from devices.mcu.graph import load_graph
from devices.mcu.ops import SUPPORTED_OPS
from devices.mcu.report import instructions_from_ticks


def layer_rows(tflite: Path, layer_ticks: list[int], instructions_per_tick: float
               ) -> list[dict[str, Any]]:
    """One row per op of the model, in graph order; [] when the firmware printed no layers."""
    if not layer_ticks:
        return []
    graph = load_graph(tflite)
    if len(layer_ticks) != len(graph.operators):
        raise DeviceError(f"the firmware timed {len(layer_ticks)} layers, the model has "
                          f"{len(graph.operators)} ops (hint: rebuild the firmware)")
    instructions = instructions_from_ticks(layer_ticks, 0, instructions_per_tick)
    total = sum(instructions) or 1
    rows = []
    for op, count in zip(graph.operators, instructions, strict=True):
        spec = SUPPORTED_OPS.get(op.name)
        macs = spec.macs(graph, op) if spec else 0
        rows.append({
            "name": f"#{op.index} {op.name}", "type": op.name, "ms": None,
            "instructions": count, "share": round(count / total, 4),
            "output_shape": list(graph.tensor(op.outputs[0]).shape) if op.outputs else [],
            "macs": macs, "instructions_per_mac": round(count / macs, 3) if macs else None,
        })
    return rows


def layer_table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as aligned text, for the deploy log."""
    lines = [f"  {'op':<24}{'output':<16}{'MACs':>11}{'instructions':>14}{'instr/MAC':>11}"
             f"{'share':>8}"]
    for row in rows:
        per_mac = f"{row['instructions_per_mac']:.2f}" if row["instructions_per_mac"] else "-"
        shape = "x".join(str(size) for size in row["output_shape"][1:])
        lines.append(f"  {row['name']:<24}{shape:<16}{row['macs']:>11,}"
                     f"{row['instructions']:>14,}{per_mac:>11}{100 * row['share']:>7.1f}%")
    return lines
