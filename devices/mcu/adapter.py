"""`mcu-qemu`: the int8 model as generated C on an emulated Cortex-M4/M7 (qemu MPS2 boards).

deploy() checks readiness, generates the C sources, builds the firmware (SIMD kernels when
`extra.simd`) and calibrates the timer; benchmark() runs every bundled sample, gates on
bit-exactness against LiteRT's reference kernels and reports exact instruction counts
with cycle and millisecond estimates.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devices.base import BenchmarkSettings, Bundle, DeviceError, LatencyReport
from devices.bundle import UNLABELLED
from devices.mcu.base import McuAdapter, McuExtra
from devices.mcu.bit_exact import compare_outputs
from devices.mcu.firmware_run import (
    PreparedFirmware,
    artifact_record,
    calibrate,
    prepare,
    top1,
)
from devices.mcu.layer_profile import layer_rows
from devices.mcu.protocol import BenchOutput, parse_output
from devices.mcu.qemu_runner import QEMU_PACKAGES, run_firmware
from devices.mcu.referees import REFEREES
from devices.mcu.report import ESTIMATE_NOTE, InstructionEstimate, instructions_from_ticks
from devices.mcu.toolchain import TOOLCHAIN_PACKAGES, require_tool
from devices.sections import choice


@dataclass(frozen=True)
class McuQemuExtra(McuExtra):
    machine: str = choice("mps2-an386", "mps2-an386", "mps2-an500")  # Cortex-M4 / M7 board


class McuQemuAdapter(McuAdapter):
    name = "mcu-qemu"
    Extra = McuQemuExtra
    # exact instruction counts, the same on any machine with qemu-system-arm and the Arm
    # toolchain: a cluster study profiles each point on a worker that advertises them
    cluster_resource = "mcu-qemu"

    def __init__(self, profile: Any) -> None:
        super().__init__(profile)
        self._work_dir: Path | None = None
        self._prepared: PreparedFirmware | None = None
        self._instructions_per_tick = 0.0

    @property
    def machine(self) -> str:
        return self.profile.extra.machine

    @property
    def cpu(self) -> str:
        return self.profile.extra.cpu

    def check(self) -> None:
        for tool in ("arm-none-eabi-gcc", "arm-none-eabi-size"):
            require_tool(tool, TOOLCHAIN_PACKAGES)
        require_tool("qemu-system-arm", QEMU_PACKAGES)

    def supports(self, artifact_format: str, precision: str) -> bool:
        return (artifact_format, precision) in {("tflite", "int8"), ("c", "int8")}

    def deploy(self, bundle: Bundle) -> None:
        self.cleanup()
        self._work_dir = Path(tempfile.mkdtemp(prefix=f"{self.profile.name}-"))
        self._prepared = prepare(self.profile, bundle, self._work_dir)
        self._instructions_per_tick = calibrate(self.machine, self.cpu, self._work_dir)

    def benchmark(self, settings: BenchmarkSettings) -> LatencyReport:
        prepared = self._require_prepared()
        timeout = self.profile.extra.timeout_s
        output = parse_output(run_firmware(prepared.firmware.elf, self.machine, timeout))
        return build_report(self.profile, prepared, output, self._instructions_per_tick,
                            device={"machine": self.machine, "cpu": self.cpu,
                                    "emulator": qemu_version()},
                            emulated=True)

    def cleanup(self) -> None:
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        self._work_dir = None
        self._prepared = None

    def _require_prepared(self) -> PreparedFirmware:
        if self._prepared is None:
            raise DeviceError(f"{self.profile.name}: benchmark() before deploy() (hint: call "
                              "deploy(bundle) first)")
        return self._prepared


# Why an MCU report leaves a value null.
MCU_MISSING = {
    "latency_ms.init": "firmware is flashed, not loaded: there is no interpreter to create",
    "latency_ms.warmup_mean": "no warm-up: instruction counts do not warm up, so each bundled "
                              "sample runs once",
    "memory": "no operating system: the RAM a model needs is arena_bytes",
    "ops": "the firmware printed no layer marks (built without MCU_LAYER_PROFILE)",
    "runtime.delegate": "the generated C runs without SIMD kernels on this core",
    "accuracy": UNLABELLED,
}


def build_report(profile: Any, prepared: PreparedFirmware, output: BenchOutput,
                 instructions_per_tick: float, device: dict[str, Any], emulated: bool
                 ) -> LatencyReport:
    board = output.output_matrix()
    if board.shape[0] != len(prepared.quantized):
        raise DeviceError(f"the firmware ran {board.shape[0]} samples, expected "
                          f"{len(prepared.quantized)} (hint: rebuild the firmware)")
    referee = REFEREES[profile.extra.referee]
    reference = referee.outputs(prepared.tflite, prepared.quantized)
    exactness = compare_outputs(board, reference, f"{profile.name} ({device.get('cpu')})",
                                referee.label)
    clock_mhz = profile.extra.clock_mhz
    cpi = profile.extra.cpi
    estimate = InstructionEstimate(
        instructions_from_ticks(output.ticks, output.overhead_ticks, instructions_per_tick),
        prepared.readiness.macs, clock_mhz, cpi,
    )
    firmware = prepared.firmware
    samples_bytes = prepared.quantized.size
    return LatencyReport(
        target={"name": profile.name, "adapter": profile.adapter,
                "device": {**device, "clock_mhz": clock_mhz, "cpi": cpi}, "emulated": emulated},
        artifact=artifact_record(prepared.tflite),
        runtime={"name": "c", "version": f"devices.mcu codegen, {gcc_version()}",
                 "threads": 1, "delegate": "simd" if firmware.simd else None},
        runs={"warmup": 0, "measured": len(output.ticks)},
        latency_ms=estimate.latency_ms(),
        runs_ms=estimate.runs_ms(),
        memory={"init_rss_mb": None, "peak_rss_mb": None,
                "arena_bytes": prepared.readiness.ram_bytes,
                "flash_bytes": prepared.readiness.flash_bytes},
        instructions=estimate.to_dict(),
        ops=layer_rows(prepared.tflite, output.layer_ticks, instructions_per_tick) or None,
        accuracy={"top1": top1(board, prepared.samples_y),
                  "reference_top1": top1(reference, prepared.samples_y),
                  "samples": int(board.shape[0])},
        extra={
            "estimates": ESTIMATE_NOTE,
            "firmware_sections": {**firmware.sizes(), "samples_in_text": samples_bytes},
            "firmware_simd": firmware.simd,
            "scratch_bytes": prepared.generated.scratch_bytes,
            "instructions_per_tick": instructions_per_tick,
            "instructions_per_inference": estimate.per_inference,
            "readiness": prepared.readiness.to_dict(),
            "bit_exactness": {**exactness.to_dict(), "referee": profile.extra.referee},
            "agreement": other_referees(profile.extra.referee, prepared, board),
        },
        missing=MCU_MISSING,
    )


def other_referees(chosen: str, prepared: PreparedFirmware, board: np.ndarray
                   ) -> dict[str, dict[str, Any]]:
    """How the firmware's outputs compare with the referees not gating this run."""
    agreement = {}
    for name, referee in REFEREES.items():
        if name == chosen or not referee.available():
            continue
        outputs = referee.outputs(prepared.tflite, prepared.quantized)
        differing = board.astype(np.int32) != outputs.astype(np.int32)
        agreement[name] = {
            "mismatches": int(differing.sum()), "outputs": int(differing.size),
            "max_difference": int(np.abs(board.astype(np.int32) - outputs).max(initial=0)),
            "why": ("" if not differing.any() else "FULLY_CONNECTED rounds once in LiteRT and "
                    "twice in TensorFlow Lite Micro (devices/mcu/referees.py)"),
        }
    return agreement


def _first_line(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (result.stdout.splitlines() or ["unknown"])[0].strip()


def qemu_version() -> str:
    return _first_line(["qemu-system-arm", "--version"])


def gcc_version() -> str:
    return _first_line(["arm-none-eabi-gcc", "--version"])


ADAPTER = McuQemuAdapter
