"""`mcu-serial`: the same benchmark firmware on a real board, read over a serial port.

deploy() builds the firmware (it waits for one byte on the UART before starting) and,
when `extra.flash_command` is set, flashes it (an argument list; "{elf}" is replaced by
the firmware path, no shell). benchmark() sends the start byte, reads the line protocol
until DONE and applies the same bit-exactness gate as the emulator.

On hardware SysTick counts core cycles, so the report's instruction numbers are cycles
unless `extra.instructions_per_tick` says otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.base import BenchmarkSettings, Bundle, DeviceError, LatencyReport
from devices.mcu.adapter import build_report
from devices.mcu.base import McuAdapter, McuExtra
from devices.mcu.firmware_run import PreparedFirmware, prepare
from devices.mcu.protocol import BenchOutput, ProtocolParser
from devices.mcu.toolchain import TOOLCHAIN_PACKAGES, require_tool
from devices.sections import bounded

START_BYTE = b"g"


@dataclass(frozen=True)
class McuSerialConnection:
    port: str = ""  # e.g. /dev/ttyACM0, or a pyserial URL
    baudrate: int = bounded(115_200, 1)


@dataclass(frozen=True)
class McuSerialExtra(McuExtra):
    # An argument list that flashes the board; "{elf}" becomes the firmware's path.
    flash_command: tuple[str, ...] = ()
    instructions_per_tick: float = bounded(1.0, 0.0)  # SysTick ticks are cycles on hardware
    emulated: bool = False  # true when the "board" is an emulator behind the serial port


class McuSerialAdapter(McuAdapter):
    name = "mcu-serial"
    Connection = McuSerialConnection
    Extra = McuSerialExtra

    def __init__(self, profile: Any) -> None:
        super().__init__(profile)
        self._work_dir: Path | None = None
        self._prepared: PreparedFirmware | None = None

    @property
    def port(self) -> str:
        return self.profile.connection.port

    @property
    def firmware_path(self) -> Path | None:
        return self._prepared.firmware.elf if self._prepared else None

    def check(self) -> None:
        require_tool("arm-none-eabi-gcc", TOOLCHAIN_PACKAGES)
        _serial_module()
        if not self.port:
            raise DeviceError(
                f"{self.profile.name}: no serial port configured; expected connection.port "
                "(hint: export MCU_SERIAL_PORT=/dev/ttyACM0)"
            )
        if not self.port.startswith(("socket://", "rfc2217://", "loop://")) and not Path(
                self.port).exists():
            raise DeviceError(
                f"{self.profile.name}: serial port {self.port} does not exist (hint: is the "
                "board plugged in? `ls /dev/ttyACM* /dev/ttyUSB*`)"
            )

    def supports(self, artifact_format: str, precision: str) -> bool:
        return (artifact_format, precision) in {("tflite", "int8"), ("c", "int8")}

    def deploy(self, bundle: Bundle) -> None:
        self.cleanup()
        self._work_dir = Path(tempfile.mkdtemp(prefix=f"{self.profile.name}-"))
        self._prepared = prepare(self.profile, bundle, self._work_dir, wait_for_start=True,
                                 semihosting_exit=False)
        command = self.profile.extra.flash_command
        if command:
            self._flash([str(part).replace("{elf}", str(self._prepared.firmware.elf))
                         for part in command])

    def benchmark(self, settings: BenchmarkSettings) -> LatencyReport:
        if self._prepared is None:
            raise DeviceError(f"{self.profile.name}: benchmark() before deploy() (hint: call "
                              "deploy(bundle) first)")
        timeout = self.profile.extra.timeout_s
        output = read_protocol(self.port, self.profile.connection.baudrate,
                               timeout)
        per_tick = self.profile.extra.instructions_per_tick
        return build_report(self.profile, self._prepared, output, per_tick,
                            device={"port": self.port, "cpu": self.profile.extra.cpu},
                            emulated=self.profile.extra.emulated)

    def cleanup(self) -> None:
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        self._work_dir = None
        self._prepared = None

    def _flash(self, command: list[str]) -> None:
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False,
                                    timeout=FLASH_TIMEOUT_S)
        except FileNotFoundError as exc:
            raise DeviceError(f"{self.profile.name}: the flash tool {command[0]!r} is not "
                              "installed or not on PATH (hint: install it, or give its full "
                              "path in extra.flash_command)") from exc
        except subprocess.TimeoutExpired as exc:
            raise DeviceError(f"{self.profile.name}: flashing did not finish within "
                              f"{FLASH_TIMEOUT_S:g} s (hint: check the board connection)") from exc
        if result.returncode != 0:
            raise DeviceError(f"{self.profile.name}: flashing failed ({command[0]} exited "
                              f"{result.returncode}): {result.stderr[-800:]} (hint: check "
                              "extra.flash_command and the board connection)")


FLASH_TIMEOUT_S = 300.0


def _serial_module() -> Any:
    try:
        import serial  # deferred: pyserial only for a real board
    except ImportError as exc:
        raise DeviceError("pyserial is not installed; mcu-serial reads the board with it "
                          "(hint: pip install pyserial)") from exc
    return serial


def read_protocol(port: str, baudrate: int, timeout_s: float) -> BenchOutput:
    """Send the start byte and parse lines until DONE, at most `timeout_s` seconds."""
    serial = _serial_module()
    parser = ProtocolParser()
    deadline = time.monotonic() + timeout_s
    try:
        with serial.serial_for_url(port, baudrate=baudrate, timeout=0.5) as connection:
            connection.reset_input_buffer()
            connection.write(START_BYTE)
            connection.flush()
            while not parser.result.done:
                if time.monotonic() > deadline:
                    raise DeviceError(
                        f"no DONE from {port} within {timeout_s:g} s ({len(parser.result.ticks)}"
                        f" samples read) (hint: reset the board, check the baud rate, or raise "
                        "extra.timeout_s)"
                    )
                line = connection.readline()
                if line:
                    parser.feed(line.decode("ascii", "replace"))
    except serial.SerialException as exc:
        raise DeviceError(f"serial port {port} failed: {exc} (hint: is another program "
                          "holding it?)") from exc
    return parser.result


ADAPTER = McuSerialAdapter
