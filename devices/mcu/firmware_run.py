"""Bundle -> generated C -> firmware: the build steps both MCU adapters share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devices.base import Bundle, DeviceError, TargetProfile
from devices.errors import DataError
from devices.fsutil import sha256_file
from devices.mcu.codegen import GeneratedSources, generate_sources
from devices.mcu.qemu_runner import run_firmware
from devices.mcu.readiness import ReadinessReport, analyse, require_ready
from devices.mcu.toolchain import HERE, Firmware, build_firmware, compile_elf
from devices.runtimes import quantize_input

INT8_ARTIFACT = "model_int8.tflite"


@dataclass
class PreparedFirmware:
    tflite: Path
    readiness: ReadinessReport
    generated: GeneratedSources
    firmware: Firmware
    samples_x: np.ndarray
    samples_y: np.ndarray
    quantized: np.ndarray  # int8 [samples, input bytes], exactly what the firmware runs


def bundle_model(bundle: Bundle) -> Path:
    candidate = bundle.artifact_path
    if candidate.suffix != ".tflite":
        candidate = bundle.root / INT8_ARTIFACT
    if not candidate.is_file():
        raise DeviceError(
            f"{candidate} does not exist; the microcontroller target needs the full-int8 "
            f"TFLite model (hint: run `make artifacts TARGETS=mcu` first)"
        )
    return candidate


def load_samples(bundle: Bundle, limit: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(bundle.inputs_path) as data:
            x = np.asarray(data["x"], dtype=np.float32)
            # no labels (a user's file profiled on random inputs): no top-1
            y = np.asarray(data["y"]) if "y" in data else np.zeros(0, np.int64)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(
            f"cannot read samples x/y from {bundle.inputs_path}: {exc} (hint: rebuild the "
            "bundle with `make artifacts`)"
        ) from exc
    if limit > 0:
        x, y = x[:limit], y[:limit]
    return x, y


def prepare(profile: TargetProfile, bundle: Bundle, work_dir: Path, *,
            wait_for_start: bool = False, semihosting_exit: bool = True) -> PreparedFirmware:
    tflite = bundle_model(bundle)
    readiness = analyse(tflite, profile.budget.flash_kb, profile.budget.ram_kb)
    require_ready_ops(readiness)
    x, y = load_samples(bundle, profile.extra.max_samples)
    generated = generate_sources(tflite, work_dir / "model", inputs=x,
                                 referee=profile.extra.referee)
    firmware = build_firmware(
        generated, work_dir / "build", cpu=profile.extra.cpu,
        simd=profile.extra.simd, wait_for_start=wait_for_start,
        semihosting_exit=semihosting_exit,
    )
    quantized = quantize_input(x, generated.input_scale, generated.input_zero_point, np.int8)
    return PreparedFirmware(tflite, readiness, generated, firmware, x, y,
                            quantized.reshape(len(x), -1))


def require_ready_ops(readiness: ReadinessReport) -> None:
    """Unsupported ops stop the deploy; budget violations are reported, not raised here."""
    if readiness.unsupported:
        require_ready(readiness)


def calibrate(machine: str, cpu: str, work_dir: Path, timeout_s: float = 60.0) -> float:
    """Instructions per SysTick tick under -icount shift=0, measured on the same board."""
    elf = compile_elf([HERE / "calibrate.c"], work_dir / f"calibrate-{cpu}.elf", cpu=cpu)
    output = run_firmware(elf, machine, timeout_s)
    match = re.search(r"CALIBRATE instructions=(\d+) ticks=(\d+)", output)
    if not match or int(match.group(2)) == 0:
        raise DeviceError(f"calibration firmware printed {output!r}; expected CALIBRATE "
                          "instructions=<n> ticks=<t> (hint: check the qemu machine)")
    return int(match.group(1)) / int(match.group(2))


def artifact_record(tflite: Path) -> dict[str, Any]:
    return {"file": tflite.name, "sha256": sha256_file(tflite),
            "bytes": tflite.stat().st_size, "format": "tflite", "precision": "int8"}


def top1(outputs: np.ndarray, labels: np.ndarray) -> float | None:
    if len(labels) == 0:
        return None
    return float(np.mean(np.argmax(outputs, axis=1) == labels))
