"""The emulated Cortex-M4/M7 (`mcu-qemu`): cost = instructions per inference, exact.

An op's count comes from its one-op model's firmware (devices/mcu/instruction_counts.py),
which agrees with the same op's row inside a whole model to one timer tick (40 instructions
on mps2-an386); the invoke's own cost (the input and output copies) from a one-op model of
the model's input and output sizes, its total less its row. A whole model is counted by the
deploy's firmware. The table is keyed by the core, SIMD, board, the compiler's and the
emulator's versions and the sha256 of the kernels and the code generator, so a kernel change
measures again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from devices.fsutil import sha256_file
from devices.mcu.adapter import gcc_version, qemu_version
from devices.mcu.instruction_counts import (
    Core,
    kernel_sources,
    model_instructions,
    single_op_instructions,
)
from devices.op_models import single_op_model
from devices.op_signature import IoSignature, OpSignature
from pipeline.config import BudgetConfig
from pipeline.hardware_cost.measurers import CostMeasurer, Measured, ModelMeasurement

TICK_INSTRUCTIONS = 40  # one SysTick tick under -icount shift=0 on the MPS2 boards


def invoke_signature(io: IoSignature) -> OpSignature:
    """A one-op model with the model's input and output: a fully connected layer reading
    the whole input (its row is the op, the rest of its total is the invoke's copies)."""
    inputs = int(np.prod(io.input))
    outputs = int(np.prod(io.output))
    return OpSignature("FULLY_CONNECTED", (io.input, (outputs, inputs), (outputs,)), io.output,
                       (("activation", 0), ("keep_num_dims", False)), full_range=True)


class McuMeasurer(CostMeasurer):
    unit = "instructions"
    exact = True
    quantities = ("instructions", "latency_ms")

    @property
    def core(self) -> Core:
        extra = self.profile.extra
        return Core(cpu=extra.cpu, machine=extra.machine, simd=extra.simd)

    def settings(self) -> dict[str, Any]:
        extra = self.profile.extra
        return {"adapter": self.profile.adapter, "cpu": extra.cpu, "machine": extra.machine,
                "simd": extra.simd, "compiler": gcc_version(), "emulator": qemu_version(),
                "sources": {path.name: sha256_file(path)[:16] for path in kernel_sources()}}

    def native_limit(self, budget: BudgetConfig) -> float:
        if budget.instructions:
            return float(budget.instructions)
        # the report's own estimate: instructions x CPI at the profile's clock
        extra = self.profile.extra
        return float(budget.latency_ms or 0.0) * extra.clock_mhz * 1e3 / extra.cpi

    def measure_ops(self, signatures: list[OpSignature]) -> list[Measured]:
        counts = single_op_instructions([single_op_model(s) for s in signatures], self.core)
        return [Measured(float(count.rows[0]["instructions"])) for count in counts]

    def measure_invoke(self, io: IoSignature) -> Measured:
        count = single_op_instructions([single_op_model(invoke_signature(io))], self.core)[0]
        return Measured(float(count.instructions - count.rows[0]["instructions"]))

    def measure_model(self, tflite: bytes, samples: np.ndarray) -> ModelMeasurement:
        count = model_instructions([tflite], samples[:1], self.core)[0]
        return ModelMeasurement(float(count.instructions),
                                per_op=tuple(float(row["instructions"]) for row in count.rows))

    def margin(self, op_count: int) -> float:
        # each op's count is exact to one tick of its own timer reads
        return float(TICK_INSTRUCTIONS * (op_count + 1))


MEASURER = McuMeasurer
