"""A model's cost on a target from its op signatures: the sum of each op's cost in the
table plus the invoke's own cost (its input and output copies: a constant for fixed input
and output shapes). Signatures the table lacks are measured on the target, in one batch,
and written to it, so the next search over the same shapes measures nothing.

`used` keeps every value a prediction read, by signature: the prune record stores them, so
a search on a target whose timings vary can be read back as the table stood.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from devices.op_signature import IoSignature, OpSignature
from pipeline.hardware_cost.measurers import CostMeasurer, Measured
from pipeline.hardware_cost.table import CostTable

OP, INVOKE = "op", "invoke"


@dataclass(frozen=True)
class Prediction:
    total: float
    per_op: tuple[float, ...]
    invoke: float


@dataclass
class CostModel:
    measurer: CostMeasurer
    table: CostTable
    echo: Callable[[str], None] = print
    used: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _entry(self, signature: OpSignature, measured: Measured) -> dict[str, Any]:
        return {"signature": signature.to_dict(), "label": signature.label,
                "value": measured.value, "spread": measured.spread,
                "how": "one-op model", "unit": self.measurer.unit}

    def measure_missing(self, signatures: Iterable[OpSignature]) -> int:
        """Measure, in one batch, the signatures the table lacks; returns how many."""
        missing = list({s.digest: s for s in signatures
                        if self.table.get(OP, s.digest) is None}.values())
        if missing:
            self.echo(f"  cost table: measuring {len(missing)} op signature(s) on "
                      f"{self.measurer.profile.name}")
            for signature, measured in zip(missing, self.measurer.measure_ops(missing),
                                           strict=True):
                self.table.put(OP, signature.digest, self._entry(signature, measured))
        return len(missing)

    def op_values(self, signatures: Sequence[OpSignature]) -> list[float]:
        self.measure_missing(signatures)
        values = []
        for signature in signatures:
            entry = self.table.get(OP, signature.digest)
            assert entry is not None  # measured just above
            self.used[signature.digest] = {"label": signature.label, "value": entry["value"]}
            values.append(float(entry["value"]))
        return values

    def invoke(self, io: IoSignature) -> float:
        entry = self.table.get(INVOKE, io.digest)
        if entry is None:
            measured = self.measurer.measure_invoke(io)
            entry = {"io": io.to_dict(), "value": measured.value, "spread": measured.spread,
                     "unit": self.measurer.unit}
            self.table.put(INVOKE, io.digest, entry)
        self.used[f"invoke:{io.digest}"] = {"label": "invoke (input and output copies)",
                                            "value": entry["value"]}
        return float(entry["value"])

    def predict(self, signatures: Sequence[OpSignature], io: IoSignature) -> Prediction:
        per_op = self.op_values(signatures)
        invoke = self.invoke(io)
        return Prediction(sum(per_op) + invoke, tuple(per_op), invoke)
