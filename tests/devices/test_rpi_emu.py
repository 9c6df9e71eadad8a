"""rpi-emu: the Raspberry Pi's runtime (aarch64 python3 + LiteRT wheel) under qemu-aarch64-static.

The sysroot is built by devices/emu/build_sysroot.py (cached under build/emu/). The int8
artifact's outputs there must equal the x86 outputs exactly.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from devices import bench_runner
from devices.base import BenchmarkSettings
from devices.profiles import load_profile
from devices.profiling import profile_target
from tests.contracts import assert_one_report_shape
from tests.system_tools import require

SETTINGS = BenchmarkSettings(warmup=0, runs=2, threads=1)


@pytest.fixture(scope="session")
def emu_python() -> Path:
    require("qemu-aarch64-static")
    from devices.emu import build_sysroot

    return build_sysroot.build()  # cached: a second run only checks the stamp


def test_int8_outputs_under_qemu_equal_x86_exactly(emu_python: Path, tiny_bundle: Path,
                                                   reference_outputs):
    result = subprocess.run(
        [str(emu_python), bench_runner.__file__, "--model",
         str(tiny_bundle / "model_int8.tflite"), "--inputs", str(tiny_bundle / "inputs.npz"),
         "--warmup", "0", "--runs", "1", "--threads", "1"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["cpu"]["machine"] == "aarch64"
    assert document["cpu"]["cpu_part"] == "0xd08"  # Cortex-A72, from the sysroot's cpuinfo
    with np.load(tiny_bundle / "inputs.npz") as archive:
        x86 = reference_outputs(tiny_bundle / "model_int8.tflite", archive["x"])
    aarch64 = np.asarray(document["outputs"]["values"], dtype=np.int8)
    assert document["outputs"]["dtype"] == "int8"
    assert aarch64.shape == x86.shape
    assert np.array_equal(aarch64, x86)


def test_rpi_emu_profile_through_sshd(emu_python: Path, sshd, bundle_copy: Path):
    profile = load_profile("rpi-emu", sshd.overrides(), environ={})
    document = profile_target(profile, bundle_copy, SETTINGS)
    assert document["target"]["emulated"] is True
    assert document["target"]["device"]["transport"] == "ssh"
    assert document["target"]["device"]["machine"] == "aarch64"
    assert document["extra"]["bit_identical_to_host"] is True
    assert document["extra"]["outputs_sha256"] == document["extra"]["host_outputs_sha256"]
    assert "not a Raspberry Pi" in document["extra"]["note"]
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    assert document["accuracy"]["top1"] == manifest["metrics"]["artifacts"][
        "model_int8.tflite"]["top1"]
    assert document["budget"]["passed"] is True
    assert "latency_ms" not in document["budget"]["limits"]  # emulated timings are no budget
    assert_one_report_shape(document)


def test_rpi_emu_local_transport_by_default(emu_python: Path, bundle_copy: Path):
    profile = load_profile("rpi-emu", environ={})
    assert profile.connection.transport == "local"
    document = profile_target(profile, bundle_copy, SETTINGS)
    assert document["target"]["device"]["transport"] == "local"
    assert document["extra"]["bit_identical_to_host"] is True


def test_sysroot_build_is_cached(emu_python: Path):
    from devices.emu import build_sysroot

    assert build_sysroot.is_built()
    assert build_sysroot.build() == emu_python  # no rebuild, same wrapper


def test_missing_sysroot_says_how_to_build_it(tmp_path: Path):
    from devices.base import DeviceError
    from devices.registry import create_adapter

    missing = json.dumps([str(tmp_path / "emu" / "bin" / "python3-aarch64")])
    adapter = create_adapter(load_profile("rpi-emu", {"extra.python": missing}, environ={}))
    with pytest.raises(DeviceError, match=r"no working python3 on the device.*exited 127.*"
                                          r"python3 devices/emu/build_sysroot.py"):
        adapter.check()
