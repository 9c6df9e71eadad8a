"""The firmware on emulated Cortex-M boards (qemu-system-arm + arm-none-eabi-gcc): bundle in,
latency report out, bit-exact with LiteRT's reference kernels."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from devices.base import BenchmarkSettings, Bundle, DeviceError
from devices.mcu.bit_exact import BitExactnessError, compare_outputs
from devices.mcu.firmware_run import calibrate
from devices.mcu.qemu_runner import run_firmware
from devices.mcu.toolchain import compile_elf
from devices.profiles import load_profile
from devices.registry import create_adapter
from tests.contracts import assert_one_report_shape
from tests.system_tools import NEEDS_MCU

pytestmark = NEEDS_MCU


def _bundle(tmp_path: Path, converted, samples: int = 12) -> Bundle:
    root = tmp_path / "bundle"
    root.mkdir()
    shutil.copyfile(converted.path, root / "model_int8.tflite")
    np.savez(root / "inputs.npz", x=converted.samples[:samples], y=converted.labels[:samples])
    return Bundle(root=root, artifact="model_int8.tflite")


def _run(profile_name: str, bundle: Bundle, **overrides: str):
    profile = load_profile(profile_name, overrides=overrides)
    adapter = create_adapter(profile)
    adapter.check()
    try:
        adapter.deploy(bundle)
        return adapter.benchmark(BenchmarkSettings(warmup=0, runs=1))
    finally:
        adapter.cleanup()


def test_resnet8_on_cortex_m4_is_bit_exact_and_counts_instructions(tmp_path, resnet8_int8):
    report = _run("mcu", _bundle(tmp_path, resnet8_int8)).to_dict()
    assert report["target"]["emulated"] is True
    assert report["extra"]["bit_exactness"] == {
        "samples": 12, "outputs_per_sample": 4, "mismatches": 0, "bit_exact": True,
        "referee": "litert"}
    instructions = report["instructions"]
    macs = report["extra"]["readiness"]["macs"]
    assert instructions["count"] > macs  # at least one instruction per MAC
    assert instructions["per_mac"] == pytest.approx(instructions["count"] / macs, rel=1e-3)
    expected_ms = instructions["count"] * 1.25 / (80.0 * 1e3)
    assert instructions["est_ms"] == pytest.approx(expected_ms, rel=1e-3)
    assert report["latency_ms"]["median"] == pytest.approx(expected_ms, rel=1e-3)
    assert report["memory"]["arena_bytes"] == report["extra"]["readiness"]["ram_bytes"] > 0
    sections = report["extra"]["firmware_sections"]
    assert sections["text"] > sections["samples_in_text"] == 12 * 12 * 12
    assert report["accuracy"]["samples"] == 12
    assert report["accuracy"]["top1"] == report["accuracy"]["reference_top1"]
    assert "estimates" in report["extra"]
    assert_one_report_shape(report)
    assert report["runs_ms"] == pytest.approx(
        [count * 1.25 / 80e3 for count in report["extra"]["instructions_per_inference"]],
        abs=1e-4)


@pytest.mark.parametrize("referee", ["litert", "tflm"])
@pytest.mark.parametrize(("fixture", "profile"), [
    ("resnet8_int8", "mcu"), ("ds_student_int8", "mcu-m7"), ("seed_student_int8", "mcu")])
def test_every_model_is_bit_exact_with_the_referee_it_is_built_for(
        tmp_path, request, fixture: str, profile: str, referee: str):
    report = _run(profile, _bundle(tmp_path, request.getfixturevalue(fixture), samples=8),
                  **{"extra.referee": referee}).to_dict()
    exactness = report["extra"]["bit_exactness"]
    assert exactness["referee"] == referee and exactness["mismatches"] == 0
    other = "tflm" if referee == "litert" else "litert"
    agreement = report["extra"]["agreement"][other]
    assert agreement["outputs"] == 8 * exactness["outputs_per_sample"]
    assert agreement["max_difference"] <= 1  # only FULLY_CONNECTED's rounding differs
    assert (agreement["mismatches"] == 0) == (agreement["why"] == "")


def test_the_layer_profile_adds_up_to_the_inference(tmp_path, resnet8_int8):
    from devices.mcu.graph import load_graph

    report = _run("mcu", _bundle(tmp_path, resnet8_int8, samples=3)).to_dict()
    rows = report["ops"]
    graph = load_graph(resnet8_int8.path)
    assert [row["type"] for row in rows] == [op.name for op in graph.operators]
    assert sum(row["macs"] for row in rows) == report["extra"]["readiness"]["macs"]
    layers = sum(row["instructions"] for row in rows)
    total = report["instructions"]["count"]
    # the rows miss only model_invoke's input and output copies and one timer read
    assert 0 < total - layers < 0.01 * total
    assert sum(row["share"] for row in rows) == pytest.approx(1.0, abs=0.001)
    assert all(row["ms"] is None for row in rows)  # the MCU counts, it does not time
    convolution = next(row for row in rows if row["type"] == "CONV_2D")
    assert convolution["instructions_per_mac"] == pytest.approx(
        convolution["instructions"] / convolution["macs"], rel=1e-2)


def test_ds_student_on_cortex_m7_simd_matches_plain_with_fewer_instructions(
        tmp_path, ds_student_int8):
    bundle = _bundle(tmp_path, ds_student_int8, samples=6)
    plain = _run("mcu-m7", bundle, **{"extra.simd": "false"}).to_dict()
    simd = _run("mcu-m7", bundle, **{"extra.simd": "true"}).to_dict()
    assert plain["extra"]["bit_exactness"]["mismatches"] == 0
    assert simd["extra"]["bit_exactness"]["mismatches"] == 0
    assert simd["runtime"]["delegate"] == "simd" and plain["runtime"]["delegate"] is None
    assert simd["instructions"]["count"] < plain["instructions"]["count"]


def test_small_cnn_with_pooling_runs_bit_exact(tmp_path, small_cnn_int8):
    report = _run("mcu", _bundle(tmp_path, small_cnn_int8, samples=5)).to_dict()
    assert report["extra"]["bit_exactness"]["bit_exact"] is True
    ops = {op["name"] for op in report["extra"]["readiness"]["ops"]}
    assert {"MAX_POOL_2D", "AVERAGE_POOL_2D", "DEPTHWISE_CONV_2D"} <= ops


def test_calibration_counts_forty_instructions_per_tick(tmp_path):
    """QEMU's MPS2 SysTick runs at 25 MHz; with -icount shift=0 one instruction is 1 ns."""
    assert calibrate("mps2-an386", "cortex-m4", tmp_path) == 40.0


def test_hanging_firmware_is_stopped_by_the_timeout(tmp_path):
    source = tmp_path / "hang.c"
    source.write_text("int main(void) { for (;;) {} }\n")
    elf = compile_elf([source], tmp_path / "hang.elf")
    with pytest.raises(DeviceError, match=r"did not finish within 2 s and was stopped"):
        run_firmware(elf, "mps2-an386", timeout_s=2.0)


def test_a_differing_output_fails_the_gate_naming_sample_and_output():
    reference = np.arange(12, dtype=np.int8).reshape(3, 4)
    board = reference.copy()
    board[2, 1] += 1
    with pytest.raises(BitExactnessError, match=r"first at sample 2, output 1: board 10, "
                                                r"reference 9"):
        compare_outputs(board, reference, "mcu")


def test_check_names_the_debian_packages_when_tools_are_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    adapter = create_adapter(load_profile("mcu"))
    with pytest.raises(DeviceError, match=r"apt-get install gcc-arm-none-eabi "
                                          r"libnewlib-arm-none-eabi"):
        adapter.check()
