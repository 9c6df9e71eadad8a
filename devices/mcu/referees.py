"""Who the generated C must match bit for bit: LiteRT's reference kernels or TFLite Micro.

The two agree on every int8 op the generator emits but one: FULLY_CONNECTED, which LiteRT
requantizes with one 64-bit rounding step and TFLite Micro with two (the double-rounding
MultiplyByQuantizedMultiplier of its other ops), so near a half they differ by 1. The C
kernels do either (`single_rounding`): `extra.referee` picks the firmware's rounding and the
gate's reference; the other referee's agreement is reported beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devices.mcu.reference import reference_outputs
from devices.mcu.tflm import tflm_installed, tflm_outputs

Outputs = Callable[[Path, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Referee:
    label: str
    outputs: Outputs
    fully_connected_single_rounding: bool
    available: Callable[[], bool] = lambda: True


REFEREES: dict[str, Referee] = {
    "litert": Referee("LiteRT's reference kernels", reference_outputs, True),
    "tflm": Referee("TensorFlow Lite Micro", tflm_outputs, False, tflm_installed),
}
DEFAULT_REFEREE = "litert"  # the runtime whose top-1 the validate stage measured
