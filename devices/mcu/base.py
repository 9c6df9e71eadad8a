"""What both microcontroller adapters (`mcu-qemu`, `mcu-serial`) tell the pipeline: their
bundles carry the generated C sources, their accuracy reference is LiteRT's reference
kernels (which the C kernels match bit for bit), a readiness report precedes profiling,
each bundled sample runs once (instruction counts are exact, so warm-up and repetition do
not apply), and the latency line adds the instruction count, its time estimate and the
per-layer table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.base import BenchmarkSettings, DeviceAdapter, TargetProfile
from devices.sections import bounded, choice


@dataclass(frozen=True)
class McuExtra:
    """[extra] keys both microcontroller adapters read."""

    cpu: str = "cortex-m4"  # -mcpu for the firmware
    clock_mhz: float = bounded(80.0, 0.001)
    cpi: float = bounded(1.0, 0.01)  # cycles per instruction, for the time estimate
    simd: bool = True  # SMLAD dual 16-bit MAC inner loops (-DMCU_USE_SIMD)
    timeout_s: float = bounded(300.0, 1.0)
    max_samples: int = bounded(0, 0)  # 0 = every bundled sample
    # whose outputs the firmware must equal bit for bit (devices/mcu/referees.py)
    referee: str = choice("litert", "litert", "tflm")


class McuAdapter(DeviceAdapter):
    Extra = McuExtra
    accuracy_kernels = "reference"
    op_profile = True  # every run times each layer (devices/mcu/layer_profile.py)

    @classmethod
    def bundle_extras(cls, artifact: Path, samples: Any, scratch: Path) -> list[Path]:
        from devices.mcu.codegen import generate_sources  # deferred: only when bundling

        folder = scratch / "model"
        generate_sources(artifact, folder, inputs=samples)
        return [folder]

    @classmethod
    def check_artifact(cls, profile: TargetProfile, artifact: Path, label: str) -> None:
        from devices.mcu.firmware_run import require_ready_ops  # deferred: only when asked
        from devices.mcu.readiness import analyse, refuse_tflm_crash

        refuse_tflm_crash(artifact, label)  # a model may crash the referee's wheel (MobileNetV2)
        require_ready_ops(analyse(artifact, profile.budget.flash_kb, profile.budget.ram_kb,
                                  name=label))

    @classmethod
    def pre_profile_note(cls, profile: TargetProfile, artifact: Path) -> str | None:
        from devices.mcu.readiness import analyse  # deferred: only when profiling

        return analyse(artifact, profile.budget.flash_kb, profile.budget.ram_kb).to_text()

    @classmethod
    def describe_runs(cls, settings: BenchmarkSettings) -> str:
        return "every bundled sample once"

    @classmethod
    def latency_notes(cls, report: dict[str, Any]) -> list[str]:
        instructions = report.get("instructions")
        if not instructions:
            return super().latency_notes(report)
        from devices.mcu.layer_profile import layer_table  # deferred: only when profiling

        layers = report.get("ops") or []
        return [f"instr.     {instructions['count']:,} per inference, "
                f"{instructions['per_mac']:.2f} per MAC, est. {instructions['est_ms']:.2f} ms "
                f"at {instructions['clock_mhz']} MHz (estimate: instruction-accurate emulator)",
                *(["layers     instructions per op (one inference):", *layer_table(layers)]
                  if layers else [])]
