"""Instruction counts of int8 TFLite models on the emulated Cortex-M4/M7, without a bundle:
the benchmark firmware of the deploy (generated C, the SIMD kernels, the layer marks) built
and run under `qemu -icount shift=0`, so every count is exact and repeatable.

`model_instructions` counts whole models, with the per-op rows of their layer profile (what
`make deploy TARGET=mcu` reports). `single_op_instructions` counts many one-op models
(devices/op_models.py) for a cost table: the kernels and board files are compiled once per
process and settings, each model only compiles its own few lines and links, about ten times
faster than a full firmware build, with the same code and therefore the same counts.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from devices.base import DeviceError
from devices.mcu.codegen import KERNEL_FILES, generate_sources
from devices.mcu.firmware_run import calibrate
from devices.mcu.graph import load_graph
from devices.mcu.layer_profile import layer_rows
from devices.mcu.protocol import parse_output
from devices.mcu.qemu_runner import run_firmware
from devices.mcu.report import instructions_from_ticks
from devices.mcu.toolchain import (
    COMMON_FLAGS,
    HERE,
    LINK_FLAGS,
    LINKER_SCRIPT,
    build_firmware,
    require_tool,
)

# the files compiled once: what does not depend on the model (firmware_main.c reads model.h)
FIXED_SOURCES = ("mcu_kernels.c", "startup.c", "board_mps2.c")
RUN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class ModelCount:
    instructions: int  # per inference (the median over the samples run)
    rows: list[dict[str, Any]] = field(default_factory=list)  # per op (layer_profile.py)


@dataclass(frozen=True)
class Core:
    cpu: str = "cortex-m4"
    machine: str = "mps2-an386"
    simd: bool = True


def _defines(core: Core) -> list[str]:
    # the benchmark firmware's own defines (toolchain.build_firmware)
    return ["-DMCU_LAYER_PROFILE", "-DMCU_SEMIHOSTING_EXIT",
            *(["-DMCU_USE_SIMD"] if core.simd else [])]


def _count(model_path: Path, elf: Path, core: Core, per_tick: float) -> ModelCount:
    output = parse_output(run_firmware(elf, core.machine, RUN_TIMEOUT_S))
    ticks = instructions_from_ticks(output.ticks, output.overhead_ticks, per_tick)
    return ModelCount(int(np.median(ticks)), layer_rows(model_path, output.layer_ticks, per_tick))


def model_instructions(contents: list[bytes], samples: np.ndarray, core: Core = Core()
                       ) -> list[ModelCount]:
    """Each int8 model's instructions per inference and per-op rows, on `samples` (float,
    quantised with each model's input scale; counts do not depend on them)."""
    counts = []
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        per_tick = calibrate(core.machine, core.cpu, folder)
        for index, content in enumerate(contents):
            model_path = folder / f"model{index}.tflite"
            model_path.write_bytes(content)
            generated = generate_sources(model_path, folder / f"model{index}", inputs=samples)
            firmware = build_firmware(generated, folder / f"build{index}", cpu=core.cpu,
                                      simd=core.simd)
            counts.append(_count(model_path, firmware.elf, core, per_tick))
    return counts


class _FixedObjects:
    """The model-independent object files of one core's benchmark firmware, compiled once."""

    def __init__(self, core: Core, folder: Path) -> None:
        self.core = core
        self.folder = folder
        self.objects: list[Path] = []
        for name in FIXED_SOURCES:
            target = folder / f"{Path(name).stem}.o"
            _compile([f"-mcpu={core.cpu}", *COMMON_FLAGS, *_defines(core), "-I", str(HERE),
                      "-c", str(HERE / name), "-o", str(target)])
            self.objects.append(target)

    def link(self, generated_dir: Path, elf: Path) -> Path:
        sources = [generated_dir / "model.c", generated_dir / "model_samples.c",
                   HERE / "firmware_main.c"]
        _compile([f"-mcpu={self.core.cpu}", *COMMON_FLAGS, *_defines(self.core),
                  "-I", str(generated_dir), "-I", str(HERE), *(str(s) for s in sources),
                  *(str(o) for o in self.objects), "-T", str(HERE / LINKER_SCRIPT),
                  *LINK_FLAGS, "-o", str(elf)])
        return elf


def _compile(arguments: list[str]) -> None:
    command = [require_tool("arm-none-eabi-gcc"), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DeviceError(f"firmware build failed (exit {result.returncode}):\n"
                          f"{result.stderr[-4000:]}\n(hint: check the generated sources)")


def single_op_instructions(models: list[bytes], core: Core = Core(), workers: int = 2
                           ) -> list[ModelCount]:
    """Each one-op model's count (its row is rows[0]), `workers` firmware at a time."""
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        per_tick = calibrate(core.machine, core.cpu, folder)
        fixed = _FixedObjects(core, folder)
        lock = threading.Lock()

        def measure(index: int) -> ModelCount:
            model_path = folder / f"op{index}.tflite"
            model_path.write_bytes(models[index])
            with lock:  # generate_sources reads the kernels' files; one at a time is cheap
                generated = generate_sources(model_path, folder / f"op{index}",
                                             inputs=_zero_sample(model_path))
            elf = fixed.link(generated.directory, folder / f"op{index}.elf")
            return _count(model_path, elf, core, per_tick)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(measure, range(len(models))))


def _zero_sample(model_path: Path) -> np.ndarray:
    graph = load_graph(model_path)
    source = graph.tensor(graph.inputs[0])
    return np.zeros((1, source.elements), np.int8)


def kernel_sources() -> tuple[Path, ...]:
    """The files whose code decides a count: the kernels, the firmware, the generator."""
    names = (*KERNEL_FILES, *FIXED_SOURCES[1:], "firmware_main.c", "board.h", "codegen.py",
             "emitters.py", "layout.py", "memory_plan.py", "toolchain.py")
    return tuple(sorted({HERE / name for name in names}))
