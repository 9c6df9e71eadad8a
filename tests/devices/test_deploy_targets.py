"""`deploy` end to end for the device targets, on the session's tiny trained flow:
the Raspberry Pi through a real sshd, the Pi's runtime under qemu-aarch64 (rpi-emu), and
the phone through the real adb client and server with a device double (see conftest)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.deploy import deploy
from tests.contracts import assert_follows_schemas
from tests.system_tools import NEEDS_ADB, NEEDS_QEMU_AARCH64, NEEDS_QEMU_X86, NEEDS_SSHD


def _with_target_overrides(config, overrides: dict[str, str]):
    return replace(config, target_overrides=tuple(overrides.items()))


def _artifact_record(outcome) -> dict:
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    return manifest["metrics"]["artifacts"]["model_int8.tflite"]


@pytest.mark.slow
@NEEDS_SSHD
def test_deploy_rpi_through_a_real_sshd(tiny_build: dict, sshd, tmp_path: Path) -> None:
    overrides = sshd.overrides(**{"extra.python": json.dumps([sys.executable]),
                                  "budget.min_accuracy": "0.0"})
    config = _with_target_overrides(tiny_build["config"], overrides)
    outcome = deploy(config, "rpi", build_dir=tiny_build["build_dir"], dist_dir=tmp_path,
                     echo=lambda _: None)
    report = outcome.report
    assert_follows_schemas(outcome.bundle)
    assert report["schema"] == "edge-latency-report/2"
    assert report["target"]["name"] == "rpi" and report["target"]["adapter"] == "ssh"
    assert report["runtime"]["threads"] == 4 and report["runs"]["measured"] == 5
    assert report["accuracy"]["top1"] == _artifact_record(outcome)["bundle_top1"]
    assert report["accuracy"]["samples"] == 40
    assert outcome.passed == report["budget"]["passed"]


@pytest.mark.slow
@NEEDS_QEMU_AARCH64
def test_deploy_rpi_emu_is_bit_identical_to_x86(tiny_build: dict, tmp_path: Path) -> None:
    from devices.emu import build_sysroot

    build_sysroot.build()  # cached under build/emu after the first time
    config = _with_target_overrides(tiny_build["config"], {"budget.min_accuracy": "0.0"})
    outcome = deploy(config, "rpi-emu", build_dir=tiny_build["build_dir"], dist_dir=tmp_path,
                     echo=lambda _: None)
    report = outcome.report
    assert_follows_schemas(outcome.bundle)
    assert report["target"]["emulated"] is True
    assert report["extra"]["bit_identical_to_host"] is True
    assert report["accuracy"]["top1"] == _artifact_record(outcome)["bundle_top1"]
    assert report["extra"]["cpu"]["machine"] == "aarch64"


@pytest.mark.slow
@NEEDS_ADB
def test_deploy_phone_through_real_adb(tiny_build: dict, fake_phone, fake_benchmark_model,
                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    phone = fake_phone()
    monkeypatch.setenv("ADB_SERIAL", phone.serial)
    binary, _ = fake_benchmark_model
    monkeypatch.setenv("BENCHMARK_MODEL", str(binary))
    config = _with_target_overrides(tiny_build["config"], {"connection.taskset_mask": "1"})
    outcome = deploy(config, "phone", build_dir=tiny_build["build_dir"], dist_dir=tmp_path,
                     echo=lambda _: None)
    report = outcome.report
    assert_follows_schemas(outcome.bundle)
    assert report["target"]["adapter"] == "adb"
    assert report["latency_ms"]["median"] is not None and report["latency_ms"]["median"] > 0
    assert report["accuracy"]["reference_top1"] == _artifact_record(outcome)["bundle_top1"]


@pytest.mark.slow
@NEEDS_QEMU_X86
def test_deploy_host_avx2_runs_the_int8_onnx_file_on_emulated_avx2(
    tiny_build: dict, tmp_path: Path
) -> None:
    """The x86-emu adapter (docs/architecture.md, "Where new things go"), added without a
    line of pipeline/: deploy runs it like any other, and the portable int8 ONNX file gives
    on the AVX2 kernel path the top-1 it was validated with (within one of the 40 bundled
    images, for a near-tie that another CPU's float requantization may round the other way)."""
    config = _with_target_overrides(tiny_build["config"], {"budget.min_accuracy": "0.0"})
    outcome = deploy(config, "host-avx2", build_dir=tiny_build["build_dir"], dist_dir=tmp_path,
                     echo=lambda _: None)
    report = outcome.report
    assert_follows_schemas(outcome.bundle)
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    shipped = manifest["metrics"]["artifacts"]["model_int8.onnx"]
    assert report["target"] == {"name": "host-avx2", "adapter": "x86-emu", "emulated": True,
                                "device": {"emulated_cpu": "qemu Haswell",
                                           "host_cpu": report["target"]["device"]["host_cpu"]}}
    assert report["artifact"]["file"] == "model_int8.onnx"
    assert report["runtime"]["name"] == "onnxruntime"
    assert report["accuracy"]["samples"] == shipped["bundle_samples"] == 40
    assert abs(report["accuracy"]["top1"] - shipped["bundle_top1"]) <= 1 / 40
    assert shipped["quantization_scheme"]["name"] == "portable"
