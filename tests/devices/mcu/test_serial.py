"""mcu-serial against the real firmware: the emulated board's UART is a pseudo-terminal
(`qemu -serial pty`), so pyserial, the start handshake and the line protocol are exercised
end to end. The pty stands in for a USB serial adapter, which nothing here can provide."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from devices.base import BenchmarkSettings, Bundle, DeviceError
from devices.mcu.firmware_run import prepare
from devices.mcu.qemu_runner import qemu_command
from devices.mcu.serial_adapter import read_protocol
from devices.profiles import load_profile
from devices.registry import create_adapter
from tests.system_tools import NEEDS_MCU

pytestmark = NEEDS_MCU

PTY_LINE = re.compile(r"char device redirected to (/dev/pts/\d+)")


def _start_board(elf: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(qemu_command(elf, "mps2-an386", serial="pty"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        match = PTY_LINE.search(line)
        if match:
            return process, match.group(1)
    process.kill()
    raise AssertionError("qemu did not report its pty")


@pytest.fixture
def bundle(tmp_path: Path, small_cnn_int8) -> Bundle:
    root = tmp_path / "bundle"
    root.mkdir()
    shutil.copyfile(small_cnn_int8.path, root / "model_int8.tflite")
    np.savez(root / "inputs.npz", x=small_cnn_int8.samples[:6], y=small_cnn_int8.labels[:6])
    return Bundle(root=root, artifact="model_int8.tflite")


def test_serial_adapter_reads_the_firmware_over_a_pty(tmp_path: Path, bundle: Bundle) -> None:
    prepared = prepare(load_profile("mcu-serial"), bundle, tmp_path / "board",
                       wait_for_start=True, semihosting_exit=False)
    process, pty = _start_board(prepared.firmware.elf)
    try:
        profile = load_profile("mcu-serial", overrides={
            "connection.port": pty, "extra.instructions_per_tick": "40.0",
            "extra.timeout_s": "60"})
        adapter = create_adapter(profile)
        adapter.check()
        adapter.deploy(bundle)
        report = adapter.benchmark(BenchmarkSettings(warmup=0, runs=1)).to_dict()
        adapter.cleanup()
    finally:
        process.kill()
        process.wait(timeout=10)
    assert report["target"]["device"]["port"] == pty
    assert report["extra"]["bit_exactness"]["mismatches"] == 0
    assert report["accuracy"]["samples"] == 6
    assert report["instructions"]["count"] > report["extra"]["readiness"]["macs"]


def test_silent_port_times_out_with_a_clear_message(tmp_path: Path) -> None:
    """`loop://` is pyserial's loopback: it echoes the start byte and never says DONE."""
    with pytest.raises(DeviceError, match=r"no DONE from loop:// within 1 s"):
        read_protocol("loop://", 115200, timeout_s=1.0)


def test_check_requires_a_port() -> None:
    adapter = create_adapter(load_profile("mcu-serial", environ={}))
    with pytest.raises(DeviceError, match=r"no serial port configured.*MCU_SERIAL_PORT"):
        adapter.check()


def test_a_missing_flash_tool_is_a_device_error(tmp_path: Path, bundle: Bundle) -> None:
    profile = load_profile("mcu-serial", overrides={
        "connection.port": "loop://", "extra.flash_command": '["no-such-flasher", "{elf}"]'},
        environ={})
    adapter = create_adapter(profile)
    try:
        with pytest.raises(DeviceError, match="the flash tool 'no-such-flasher' is not installed"):
            adapter.deploy(bundle)
    finally:
        adapter.cleanup()
