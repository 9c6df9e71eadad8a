"""Readiness: supported ops, flash and RAM numbers, and refusals with clear messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tflite

from devices.errors import BudgetError
from devices.mcu import tflite_builder as fb
from devices.mcu.readiness import UnsupportedOperatorError, analyse, ready_or_raise

OP = tflite.BuiltinOperator
OPTIONS = tflite.BuiltinOptions


def _write(tmp_path: Path, model: bytes) -> Path:
    path = tmp_path / "model.tflite"
    path.write_bytes(model)
    return path


def _conv_then(tmp_path: Path, second_op: int) -> Path:
    rng = np.random.default_rng(1)
    q = {"scales": (0.05,), "zero_points": (-3,)}
    tensors = [
        fb.TensorSpec("in", (1, 6, 6, 2), **q),
        fb.TensorSpec("w", (3, 3, 3, 2), scales=(0.01, 0.02, 0.03), zero_points=(0, 0, 0),
                      data=rng.integers(-127, 128, (3, 3, 3, 2)).astype(np.int8)),
        fb.TensorSpec("bias", (3,), np.int32, scales=(5e-4, 1e-3, 1.5e-3), zero_points=(0, 0, 0),
                      data=np.array([1, 2, 3], dtype=np.int32)),
        fb.TensorSpec("conv", (1, 6, 6, 3), **q),
        fb.TensorSpec("out", (1, 6, 6, 3), **q),
    ]
    ops = [fb.OpSpec(OP.CONV_2D, (0, 1, 2), (3,), OPTIONS.Conv2DOptions,
                     fb.conv_options(0, (1, 1))),
           fb.OpSpec(second_op, (3,), (4,))]
    return _write(tmp_path, fb.build_model(tensors, ops, [0], [4]))


def test_supported_graph_reports_flash_ram_and_macs(tmp_path: Path) -> None:
    report = analyse(_conv_then(tmp_path, OP.RELU), flash_kb=None, ram_kb=None)
    assert report.ready and report.unsupported == []
    assert report.flash_bytes == 3 * 3 * 3 * 2 + 3 * 4  # int8 weights + int32 bias
    # in (72 B) and conv (108 B) live at op 0; conv and out (108 B) at op 1
    assert report.ram_bytes == 112 + 112 and report.peak_live_bytes == 216
    assert report.peak_op == 1 and set(report.peak_tensors) == {"conv", "out"}
    assert report.macs == 6 * 6 * 3 * 3 * 3 * 2
    json.dumps(report.to_dict())
    assert "CONV_2D" in report.to_text() and "ready" in report.to_text()


def test_unsupported_op_is_named_with_its_index(tmp_path: Path) -> None:
    path = _conv_then(tmp_path, OP.TANH)
    report = analyse(path, None, None)
    assert [(op.index, op.name) for op in report.unsupported] == [(1, "TANH")]
    with pytest.raises(UnsupportedOperatorError, match=r"op #1 TANH") as caught:
        ready_or_raise(path, None, None)
    assert caught.value.exit_code == 2
    assert "NO  #1" in report.to_text()


def test_float_model_is_refused_as_not_int8(tmp_path: Path) -> None:
    tensors = [fb.TensorSpec("in", (1, 4), np.float32), fb.TensorSpec("out", (1, 4), np.float32)]
    path = _write(tmp_path, fb.build_model(tensors, [fb.OpSpec(OP.RELU, (0,), (1,))], [0], [1]))
    with pytest.raises(UnsupportedOperatorError, match=r"op #0 RELU: tensor 'in' is FLOAT32"):
        ready_or_raise(path, None, None)


def test_over_budget_model_is_refused_with_the_limits(tmp_path: Path) -> None:
    path = _conv_then(tmp_path, OP.RELU)
    report = analyse(path, flash_kb=0.05, ram_kb=0.1)
    assert len(report.violations) == 2
    with pytest.raises(BudgetError, match=r"flash 0\.1 KiB exceeds flash_kb = 0\.05.*"
                                          r"RAM 0\.2 KiB exceeds ram_kb = 0\.1") as caught:
        ready_or_raise(path, flash_kb=0.05, ram_kb=0.1)
    assert caught.value.exit_code == 1
    assert "peak RAM at op #1" in str(caught.value)


def test_converted_models_are_ready(resnet8_int8, ds_student_int8) -> None:
    resnet = analyse(resnet8_int8.path, flash_kb=1024, ram_kb=256)
    assert resnet.ready
    names = {op.name for op in resnet.ops}
    assert {"CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"} <= names
    student = analyse(ds_student_int8.path, flash_kb=1024, ram_kb=256)
    assert student.ready and "DEPTHWISE_CONV_2D" in {op.name for op in student.ops}
