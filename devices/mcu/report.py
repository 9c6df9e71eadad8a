"""Turn a firmware run (ticks per inference) into the latency report's numbers.

Under `-icount shift=0` one guest instruction is one nanosecond of virtual time; the
calibration firmware measures how many instructions one timer tick is. Cycles and
milliseconds are estimates: instruction count x CPI at the profile's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.latency_stats import empty_latency, latency_section

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

    def runs_ms(self) -> list[float] | None:
        """Each inference's estimated milliseconds, in sample order."""
        if not self.per_inference:
            return None
        scale = self.cpi / (self.clock_mhz * 1e3)
        return [round(count * scale, 4) for count in self.per_inference]

    def latency_ms(self) -> dict[str, float | None]:
        runs = self.runs_ms()
        if runs is None:
            return empty_latency()
        latency = latency_section(runs, first=runs[0])
        return {key: (round(value, 4) if value is not None else None)
                for key, value in latency.items()}


def instructions_from_ticks(ticks: list[int], overhead_ticks: int,
                            instructions_per_tick: float) -> list[int]:
    return [int(round(max(t - overhead_ticks, 0) * instructions_per_tick)) for t in ticks]
