"""`x86-emu`: the host's runtime on an emulated older x86 CPU (`qemu-x86_64-static -cpu`).

Kernels differ by CPU: onnxruntime's int8 GEMM, for one, saturates on AVX2 without VNNI
(pipeline/conversion/onnx_int8_schemes.py). This adapter runs bench_runner.py with this
machine's Python under qemu's model of another CPU (Haswell by default: AVX2, no AVX-512,
no VNNI), so an artifact's accuracy on that kernel path is measured before users meet it.
Timings are the emulator's, not a CPU's.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from typing import Any

from devices.base import DeviceError
from devices.host import HostAdapter


@dataclass(frozen=True)
class X86EmuExtra:
    cpu_model: str = "Haswell"  # a `qemu-x86_64 -cpu help` model
    qemu: str = "qemu-x86_64-static"


class X86EmuAdapter(HostAdapter):
    name = "x86-emu"
    Extra = X86EmuExtra
    emulated = True

    def check(self) -> None:
        super().check()
        if shutil.which(self.profile.extra.qemu) is None:
            raise DeviceError(f"{self.profile.name}: {self.profile.extra.qemu} is not on PATH "
                              "(hint: apt-get install qemu-user-static)")

    def runner_command(self) -> list[str]:
        return [self.profile.extra.qemu, "-cpu", self.profile.extra.cpu_model, sys.executable]

    def device_facts(self, document: dict[str, Any]) -> dict[str, Any]:
        # qemu-user shows the host's /proc/cpuinfo: name the emulated model instead.
        return {"emulated_cpu": f"qemu {self.profile.extra.cpu_model}",
                "host_cpu": (document.get("cpu") or {}).get("model")}


ADAPTER = X86EmuAdapter
