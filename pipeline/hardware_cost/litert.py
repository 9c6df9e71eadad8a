"""This machine (`host`): cost = LiteRT's invoke latency in milliseconds, at the profile's
threads, timed as devices/bench_runner.py times a deploy (devices/litert_timing.py).

LiteRT 2.3's Python Interpreter has no per-op profiler, so an op's cost is its one-op
model's latency less the latency of an empty model (one trivial op: what any invoke costs),
measured in the same interleaved rounds; the invoke's cost is that empty model's latency.
On one thread each is the median of its runs; on more, the fastest block's median
(devices/litert_timing.py), the least disturbed: an op alone wakes its thread pool for every
invoke, which inside a whole model it mostly does not, and on a busy machine that wake-up
dominates small ops (benchmarks/hardware_cost.py on 2 cores beside a training run, 2
threads: medians over-predicted whole models by 66% at the median, the fastest blocks by
19%; on one thread medians 2%; with the machine quiet, 3.3% and 1.8%).
Timings differ run to run: the table keeps the first measurement of each signature, so a
search decides from the table as it stood, and the prune record holds the values it used.
The prediction's error against a whole-model timing is in the record and in
benchmarks/hardware_cost.py.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np

from devices.bench_runner import cpu_facts
from devices.litert_timing import Timing, time_models
from devices.op_models import single_op_model
from devices.op_signature import IoSignature, OpSignature
from pipeline.config import BudgetConfig
from pipeline.hardware_cost.measurers import CostMeasurer, Measured, ModelMeasurement

EMPTY = OpSignature("RESHAPE", ((1, 1), (2,)), (1, 1), (("new_shape", (1, 1)),),
                    values=((1, (1, 1)),))
# what an op's timings are summarised by: see the module's docstring
STATISTICS: dict[str, Callable[[Timing], float]] = {
    "median": lambda timing: timing.median_ms,
    "fastest block median": lambda timing: timing.low_ms,
}
OP_ROUNDS = 10
MODEL_ROUNDS = 15


def _litert_version() -> str:
    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return "not installed"


def _spread(timing: Timing) -> dict[str, float]:
    return {"median": timing.median_ms, "low": timing.low_ms, "high": timing.high_ms,
            "runs": timing.runs}


class LiteRtMeasurer(CostMeasurer):
    unit = "ms"
    exact = False
    quantities = ("latency_ms",)

    def settings(self) -> dict[str, Any]:
        cpu = cpu_facts()
        return {"adapter": self.profile.adapter, "runtime": _litert_version(),
                "threads": self.profile.threads, "cpu": cpu.get("model"),
                "machine": cpu.get("machine"), "cores": cpu.get("cores"),
                "statistic": self.statistic_name}

    def native_limit(self, budget: BudgetConfig) -> float:
        return float(budget.latency_ms or 0.0)

    def measure_ops(self, signatures: list[OpSignature]) -> list[Measured]:
        models = [single_op_model(signature) for signature in (EMPTY, *signatures)]
        empty, *timings = time_models(models, self.profile.threads, rounds=OP_ROUNDS)
        statistic = self.statistic
        return [Measured(max(0.0, statistic(timing) - statistic(empty)), _spread(timing))
                for timing in timings]

    def measure_invoke(self, io: IoSignature) -> Measured:
        timing = time_models([single_op_model(EMPTY)], self.profile.threads,
                             rounds=OP_ROUNDS)[0]
        return Measured(self.statistic(timing), _spread(timing))

    @property
    def statistic(self) -> Callable[[Timing], float]:
        return STATISTICS[self.statistic_name]

    @property
    def statistic_name(self) -> str:
        return "median" if self.profile.threads == 1 else "fastest block median"

    def measure_model(self, tflite: bytes, samples: np.ndarray) -> ModelMeasurement:
        timing = time_models([tflite], self.profile.threads, rounds=MODEL_ROUNDS)[0]
        return ModelMeasurement(timing.median_ms, _spread(timing))


MEASURER = LiteRtMeasurer
