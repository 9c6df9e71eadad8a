"""TensorFlow Lite Micro as referee: its outputs against LiteRT's reference kernels, the op
it lacks named in readiness, and its arena against the greedy plan."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tflite

from devices.base import DeviceError
from devices.mcu import tflite_builder as fb
from devices.mcu.graph import Graph, load_graph
from devices.mcu.quantization import fully_connected_multipliers
from devices.mcu.readiness import (
    OpCheck,
    UnsupportedOperatorError,
    analyse,
    ready_or_raise,
    with_tflm_refusal,
)
from devices.mcu.reference import reference_outputs
from devices.mcu.tflm import TflmVerdict, tflm_outputs, tflm_verdict
from devices.runtimes import quantize_input

OP = tflite.BuiltinOperator
OPTIONS = tflite.BuiltinOptions
CONVERTED = ["resnet8_int8", "ds_student_int8", "small_cnn_int8"]


def _quantized(path: Path, samples: np.ndarray) -> np.ndarray:
    graph = load_graph(path)
    source = graph.tensor(graph.inputs[0])
    return quantize_input(samples, source.scale, source.zero_point, np.int8).reshape(
        len(samples), -1)


# --- the one place the two runtimes round differently -------------------------------------
# LiteRT's int8 FULLY_CONNECTED requantises in one 64-bit rounding step (the C kernels copy
# it, devices/mcu/emitters.py); TFLite Micro's rounds twice, as gemmlowp does: a rounding
# doubling high multiply, then a rounding right shift. They differ by one where the product
# lands near a half, so the logits are checked against both rules exactly.


def _single_rounding(accumulator: int, multiplier: int, shift: int) -> int:
    total_shift = 31 - shift
    return (accumulator * multiplier + (1 << (total_shift - 1))) >> total_shift


def _double_rounding(accumulator: int, multiplier: int, shift: int) -> int:
    product = accumulator * (1 << max(shift, 0)) * multiplier
    nudge = (1 << 30) if product >= 0 else 1 - (1 << 30)
    high = abs(product + nudge) >> 31
    high = high if product + nudge >= 0 else -high  # C division truncates toward zero
    exponent = max(-shift, 0)
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> exponent) + (1 if (high & mask) > threshold else 0)


def _fully_connected_inputs(path: Path, quantized: np.ndarray, tensor: int) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    rows = []
    for sample in quantized:
        interpreter.set_tensor(source["index"], sample.reshape(source["shape"]))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(tensor).reshape(-1).copy())
    return np.stack(rows)


def _requantised_logits(graph: Graph, inputs: np.ndarray, rounding) -> np.ndarray:
    op = graph.operators[-1]
    source, weights, output = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]),
                               graph.tensor(op.outputs[0]))
    bias = graph.tensor(op.inputs[2]).data if len(op.inputs) > 2 and op.inputs[2] >= 0 else 0
    multipliers, shifts = fully_connected_multipliers(source, weights, output, len(weights.data))
    accumulators = (inputs.astype(np.int64) - source.zero_point) @ weights.data.astype(
        np.int64).T + bias
    logits = [[rounding(int(value), multipliers[unit], shifts[unit]) + output.zero_point
               for unit, value in enumerate(row)] for row in accumulators]
    return np.clip(np.asarray(logits), -128, 127).astype(np.int8)


@pytest.mark.parametrize("fixture", CONVERTED)
def test_outputs_equal_litert_but_for_fully_connected_rounding(fixture, request) -> None:
    model = request.getfixturevalue(fixture)
    quantized = _quantized(model.path, model.samples)
    micro = tflm_outputs(model.path, quantized)
    litert = reference_outputs(model.path, quantized)
    assert micro.dtype == np.int8 and micro.shape == litert.shape == (len(quantized), 4)
    graph = load_graph(model.path)
    logits = graph.operators[-1]
    assert logits.name == "FULLY_CONNECTED" and logits.outputs[0] == graph.outputs[0]
    # Every op before the logits agrees bit for bit: both runtimes' logits follow exactly
    # from LiteRT's input to them, each by its own rounding rule.
    inputs = _fully_connected_inputs(model.path, quantized, logits.inputs[0])
    assert np.array_equal(litert, _requantised_logits(graph, inputs, _single_rounding))
    assert np.array_equal(micro, _requantised_logits(graph, inputs, _double_rounding))
    assert np.abs(micro.astype(np.int16) - litert).max() <= 1


def test_outputs_equal_litert_bit_for_bit_without_fully_connected(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    tensors = [
        fb.TensorSpec("in", (1, 7, 7, 3), scales=(0.043,), zero_points=(-5,)),
        fb.TensorSpec("w", (5, 3, 3, 3), scales=(0.011, 0.02, 0.007, 0.031, 0.015),
                      zero_points=(0,) * 5,
                      data=rng.integers(-127, 128, (5, 3, 3, 3)).astype(np.int8)),
        fb.TensorSpec("bias", (5,), np.int32, scales=(4.7e-4,) * 5, zero_points=(0,) * 5,
                      data=rng.integers(-900, 900, 5).astype(np.int32)),
        fb.TensorSpec("conv", (1, 7, 7, 5), scales=(0.09,), zero_points=(7,)),
        fb.TensorSpec("pool", (1, 3, 3, 5), scales=(0.09,), zero_points=(7,)),
    ]
    ops = [fb.OpSpec(OP.CONV_2D, (0, 1, 2), (3,), OPTIONS.Conv2DOptions,
                     fb.conv_options(0, (1, 1), activation=1)),
           fb.OpSpec(OP.AVERAGE_POOL_2D, (3,), (4,), OPTIONS.Pool2DOptions,
                     fb.pool_options(1, (2, 2), (2, 2)))]
    model = fb.build_model(tensors, ops, [0], [4])
    samples = rng.integers(-128, 128, (30, 7 * 7 * 3)).astype(np.int8)
    micro = tflm_outputs(model, samples)
    assert micro.shape == (30, 45)
    assert np.array_equal(micro, reference_outputs(model, samples))


@pytest.mark.parametrize("fixture", CONVERTED)
def test_tflm_arena_is_the_plan_plus_its_runtime_structures(fixture, request) -> None:
    model = request.getfixturevalue(fixture)
    verdict = tflm_verdict(model.path)
    assert verdict.runs and verdict.missing_op is None and verdict.error is None
    assert isinstance(verdict.arena_bytes, int) and verdict.arena_bytes > 0
    assert "print_allocations()" in verdict.note and "arena_used_bytes()" in verdict.note
    report = analyse(model.path, flash_kb=1024, ram_kb=256)
    # Its head (the planned tensor buffers) is the greedy plan to the byte; the tail is
    # TFLite Micro's own structures, so its arena is the larger.
    assert verdict.arena_head_bytes == report.ram_bytes > 0
    assert verdict.arena_bytes == verdict.arena_head_bytes + verdict.arena_tail_bytes
    assert verdict.arena_bytes > report.ram_bytes
    assert report.ready and report.tflm == verdict.to_dict()
    assert (f"arena: planner {report.ram_bytes:,} bytes, TFLite Micro "
            f"{verdict.arena_bytes:,} bytes") in report.to_text()
    assert "runtime structures" in report.to_text()


@pytest.fixture(scope="module")
def gelu_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conv -> GELU -> dense, converted full-int8: GELU is a LiteRT builtin TFLite Micro's
    op resolver does not register."""
    from devices.tf_env import keras, tf
    from pipeline.conversion.tflite_converter import convert_tflite

    tf.keras.utils.set_random_seed(4)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Activation("gelu")(x)
    outputs = keras.layers.Dense(4)(keras.layers.Flatten()(x))
    samples = np.random.default_rng(4).uniform(0, 1, (32, 12, 12, 1)).astype(np.float32)
    path = tmp_path_factory.mktemp("gelu") / "gelu_int8.tflite"
    path.write_bytes(convert_tflite(keras.Model(inputs, outputs), "int8", samples))
    return path


def test_op_tflm_lacks_is_named_and_refused(gelu_int8: Path, capfd) -> None:
    graph = load_graph(gelu_int8)
    assert [op.name for op in graph.operators][1] == "GELU"
    samples = np.zeros((2, 12 * 12), dtype=np.int8)
    assert reference_outputs(gelu_int8, samples).shape == (2, 4)  # LiteRT runs it
    capfd.readouterr()
    verdict = tflm_verdict(gelu_int8)
    assert not verdict.runs and verdict.missing_op == "GELU" and verdict.arena_bytes is None
    assert "Didn't find op for builtin opcode 'GELU'" in verdict.error
    assert "GELU" not in "".join(capfd.readouterr())  # captured, not printed
    report = analyse(gelu_int8, None, None)
    assert report.tflm["missing_op"] == "GELU" and not report.ready
    refused = [op for op in report.unsupported if op.name == "GELU"]
    assert [op.index for op in refused] == [1]
    assert "TFLite Micro's op resolver lacks it (Didn't find op for builtin opcode 'GELU')" \
        in refused[0].reason
    assert "TFLite Micro unknown" in report.to_text()
    with pytest.raises(UnsupportedOperatorError, match=r"op #1 GELU: .*op resolver lacks it") \
            as caught:
        ready_or_raise(gelu_int8, None, None)
    assert caught.value.exit_code == 2
    with pytest.raises(DeviceError, match=r"cannot run .*gelu_int8\.tflite: Didn't find op for "
                                          r"builtin opcode 'GELU'"):
        tflm_outputs(gelu_int8, samples)


def test_tflm_refusal_overrides_the_registry() -> None:
    checks = [OpCheck(0, "CONV_2D", True, "", 10), OpCheck(1, "RELU", True, "", 0)]
    verdict = TflmVerdict(False, "RELU", None, None, None,
                          "Didn't find op for builtin opcode 'RELU'; TFLM failed", "no arena")
    marked = with_tflm_refusal(checks, verdict)
    assert marked[0] == checks[0]
    assert (marked[1].supported, marked[1].reason) == (
        False, "TFLite Micro's op resolver lacks it (Didn't find op for builtin opcode 'RELU')")
    other = TflmVerdict(False, None, None, None, None, "Failed starting model allocation.", "")
    assert with_tflm_refusal(checks, other)[-1].name == "TFLITE_MICRO"


def test_missing_package_is_a_device_error_with_the_fix(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tflite_micro.python.tflite_micro", None)
    with pytest.raises(DeviceError, match=r"pip install tflite-micro") as caught:
        tflm_verdict(b"")
    assert caught.value.exit_code == 3
