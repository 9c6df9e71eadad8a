"""A top-1 measured on n samples is an estimate: its 95% interval, and the verdict of an
accuracy line that only the interval may give.

A deploy's accuracy line (`[budget] min_accuracy`) must neither fail nor pass on sampling
noise: 0.795 on 200 samples has a 95% interval of about ±5.6 points, so it says nothing
about a 0.80 line. The line is met when the whole interval is at or above it, broken when
the whole interval is below it, and undecided otherwise, with the sample count that would
decide it (README, "Budgets judged on enough samples").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class AccuracyEstimate:
    top1: float
    samples: int
    source: str  # where the figure was measured, e.g. "the device, on the bundled samples"

    def interval(self) -> tuple[float, float]:
        """Wilson's score interval: sound at 0 and 1 and on small counts, unlike p ± z·se."""
        n, p, z2 = self.samples, self.top1, Z_95 * Z_95
        centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        half = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    def verdict(self, line: float) -> bool | None:
        """True: met; False: broken; None: the interval holds the line (undecided)."""
        low, high = self.interval()
        if low >= line:
            return True
        if high < line:
            return False
        return None

    def samples_to_decide(self, line: float) -> int | None:
        """About how many samples at this top-1 would put the interval clear of the line;
        None when the top-1 is the line itself (no count decides it)."""
        gap = abs(self.top1 - line)
        if gap == 0:
            return None
        variance = max(self.top1 * (1 - self.top1), 1e-4)
        return math.ceil(Z_95 * Z_95 * variance / (gap * gap))

    def describe(self) -> str:
        low, high = self.interval()
        return f"{self.top1:.4f} on {self.samples:,} samples (95% CI {low:.3f}-{high:.3f})"

    def to_dict(self) -> dict[str, Any]:
        low, high = self.interval()
        return {"top1": self.top1, "samples": self.samples, "source": self.source,
                "interval_95": [round(low, 6), round(high, 6)]}


def judged_accuracy(report: dict[str, Any]) -> AccuracyEstimate | None:
    """The report's top-1 on the most samples: the whole test split where the adapter
    measured it (`extra.test_split_accuracy`, the host), else the device's bundled run."""
    candidates = []
    accuracy = report["accuracy"]
    if accuracy["top1"] is not None and accuracy["samples"]:
        candidates.append(AccuracyEstimate(accuracy["top1"], accuracy["samples"],
                                           "the device, on the bundled samples"))
    split = (report.get("extra") or {}).get("test_split_accuracy")
    if split:
        candidates.append(AccuracyEstimate(split["top1"], split["samples"], split["source"]))
    return max(candidates, key=lambda estimate: estimate.samples, default=None)
