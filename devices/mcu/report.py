"""Turn a firmware run (ticks per inference) into the latency report's numbers.

Under `-icount shift=0` one guest instruction is one nanosecond of virtual time; the
calibration firmware measures how many instructions one timer tick is. Cycles and
milliseconds are estimates: instruction count x CPI at the profile's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.base import empty_latency

ESTIMATE_NOTE = (
    "latency_ms and instructions.est_* are estimates: instructions counted exactly by an "
    "instruction-accurate (not cycle-accurate) emulator (qemu -icount shift=0), times the "
    "profile's cycles-per-instruction factor, at the profile's clock"
)


@dataclass(frozen=True)
class InstructionEstimate:
    per_inference: list[int]
    macs: int
    clock_mhz: float
    cpi: float

    @property
    def count(self) -> int:
        return int(np.median(self.per_inference)) if self.per_inference else 0

    def to_dict(self) -> dict[str, Any]:
        cycles = self.count * self.cpi
        return {
            "count": self.count,
            "per_mac": round(self.count / self.macs, 3) if self.macs else None,
            "est_cycles": int(round(cycles)),
            "est_ms": round(cycles / (self.clock_mhz * 1e3), 4),
            "clock_mhz": self.clock_mhz,
            "cpi": self.cpi,
        }

    def latency_ms(self) -> dict[str, float | None]:
        latency = empty_latency()
        if not self.per_inference:
            return latency
        millis = np.asarray(self.per_inference, dtype=np.float64) * self.cpi / (
            self.clock_mhz * 1e3)
        latency.update(
            first=float(millis[0]), mean=float(millis.mean()), median=float(np.median(millis)),
            p90=float(np.percentile(millis, 90)), p99=float(np.percentile(millis, 99)),
            min=float(millis.min()), max=float(millis.max()), std=float(millis.std()),
        )
        return {key: (round(value, 4) if value is not None else None)
                for key, value in latency.items()}


def instructions_from_ticks(ticks: list[int], overhead_ticks: int,
                            instructions_per_tick: float) -> list[int]:
    return [int(round(max(t - overhead_ticks, 0) * instructions_per_tick)) for t in ticks]
