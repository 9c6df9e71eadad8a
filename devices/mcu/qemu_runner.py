"""Run a firmware ELF on an emulated MPS2 board with exact instruction counting.

`-icount shift=0` makes the emulator's virtual clock advance exactly 1 ns per guest
instruction, so a timer read by the firmware counts instructions (in units of the timer's
tick): deterministic and repeatable, but not cycle-accurate.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from devices.base import DeviceError
from devices.mcu.toolchain import require_tool

QEMU_PACKAGES = "qemu-system-arm"


def qemu_command(elf: Path, machine: str, serial: str = "stdio") -> list[str]:
    return [
        require_tool("qemu-system-arm", QEMU_PACKAGES),
        "-M", machine,
        "-display", "none",
        "-monitor", "none",
        "-serial", serial,
        "-semihosting-config", "enable=on,target=native",
        "-icount", "shift=0",
        "-kernel", str(elf),
    ]


def run_firmware(elf: Path, machine: str, timeout_s: float) -> str:
    """Run until the firmware exits; a firmware that hangs is killed after `timeout_s`."""
    command = qemu_command(elf, machine)
    try:
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=timeout_s, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode("utf-8", "replace") if isinstance(exc.stdout, bytes) else (
            exc.stdout or "")
        raise DeviceError(
            f"firmware {elf.name} on {machine} did not finish within {timeout_s:g} s and was "
            f"stopped; last output: {partial[-300:]!r} (hint: it hangs, or the model needs "
            "more time: raise extra.timeout_s in the target profile or use fewer samples)"
        ) from exc
    if result.returncode < 0:  # a signal from outside: the OOM killer, a user, a CI cancel
        raise DeviceError(
            f"qemu-system-arm -M {machine} was killed by "
            f"{signal.Signals(-result.returncode).name} before firmware {elf.name} finished "
            "(hint: something outside the pipeline stopped the emulator; run again)"
        )
    if result.returncode != 0:
        raise DeviceError(
            f"qemu-system-arm -M {machine} exited with {result.returncode}: "
            f"{result.stderr[-1000:]} (hint: check the machine name and the firmware)"
        )
    return result.stdout
