"""Build the benchmark firmware with arm-none-eabi-gcc and measure it with arm-none-eabi-size."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devices.base import DeviceError
from devices.mcu.codegen import GeneratedSources

HERE = Path(__file__).resolve().parent
FIRMWARE_FILES = ("startup.c", "board_mps2.c", "firmware_main.c")
LINKER_SCRIPT = "mps2.ld"
TOOLCHAIN_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi"

# -ffp-contract=off keeps float expressions unfused, as on the host reference.
COMMON_FLAGS = (
    "-std=c99", "-O2", "-mthumb", "-mfloat-abi=soft", "-ffunction-sections",
    "-fdata-sections", "-ffp-contract=off", "-Wall", "-Wextra",
)
LINK_FLAGS = ("-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
              "-Wl,--gc-sections")


@dataclass(frozen=True)
class Firmware:
    elf: Path
    text_bytes: int
    data_bytes: int
    bss_bytes: int
    simd: bool
    cpu: str

    @property
    def flash_bytes(self) -> int:
        return self.text_bytes + self.data_bytes

    @property
    def ram_bytes(self) -> int:
        return self.data_bytes + self.bss_bytes

    def sizes(self) -> dict[str, int]:
        return {"text": self.text_bytes, "data": self.data_bytes, "bss": self.bss_bytes}


def require_tool(name: str, packages: str = TOOLCHAIN_PACKAGES) -> str:
    path = shutil.which(name)
    if path is None:
        raise DeviceError(
            f"{name} is not on PATH; the microcontroller target needs it (hint: "
            f"apt-get install {packages})"
        )
    return path


def build_firmware(generated: GeneratedSources, build_dir: Path, *, cpu: str = "cortex-m4",
                   simd: bool = False, wait_for_start: bool = False,
                   semihosting_exit: bool = True, extra_sources: tuple[Path, ...] = ()
                   ) -> Firmware:
    compiler = require_tool("arm-none-eabi-gcc")
    build_dir.mkdir(parents=True, exist_ok=True)
    elf = build_dir / f"firmware-{cpu}{'-simd' if simd else ''}.elf"
    defines = ["-DMCU_LAYER_PROFILE"]  # a handful of instructions per layer
    if simd:
        defines.append("-DMCU_USE_SIMD")
    if wait_for_start:
        defines.append("-DMCU_WAIT_FOR_START")
    if semihosting_exit:
        defines.append("-DMCU_SEMIHOSTING_EXIT")
    sources = [str(p) for p in generated.sources()]
    sources += [str(HERE / name) for name in FIRMWARE_FILES]
    sources += [str(p) for p in extra_sources]
    command = [
        compiler, f"-mcpu={cpu}", *COMMON_FLAGS, *defines, "-I", str(generated.directory),
        "-I", str(HERE),
        *sources, "-T", str(HERE / LINKER_SCRIPT), *LINK_FLAGS, "-o", str(elf),
    ]
    _run(command, "firmware build")
    return measure(elf, simd=simd, cpu=cpu)


def compile_elf(sources: list[Path], elf: Path, *, cpu: str = "cortex-m4") -> Path:
    """Link `sources` (one holding main) with the startup and board files."""
    compiler = require_tool("arm-none-eabi-gcc")
    elf.parent.mkdir(parents=True, exist_ok=True)
    command = [compiler, f"-mcpu={cpu}", *COMMON_FLAGS, "-DMCU_SEMIHOSTING_EXIT",
               "-I", str(HERE), *(str(p) for p in sources), str(HERE / "startup.c"),
               str(HERE / "board_mps2.c"), "-T", str(HERE / LINKER_SCRIPT), *LINK_FLAGS,
               "-o", str(elf)]
    _run(command, "firmware build")
    return elf


def measure(elf: Path, *, simd: bool, cpu: str) -> Firmware:
    size_tool = require_tool("arm-none-eabi-size")
    output = _run([size_tool, "-A", "-d", str(elf)], "arm-none-eabi-size")
    sections: dict[str, int] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    text = sections.get(".text", 0) + sections.get(".ARM.exidx", 0)
    return Firmware(elf, text, sections.get(".data", 0), sections.get(".bss", 0), simd, cpu)


def _run(command: list[str], what: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DeviceError(
            f"{what} failed (exit {result.returncode}):\n{result.stderr[-4000:]}\n(hint: the "
            f"command was {' '.join(command[:3])} ...; check the generated sources)"
        )
    return result.stdout
