"""Each C kernel against LiteRT's reference kernels (BUILTIN_REF) on random int8 tensors.

Every case is a single-op .tflite written with random scales and zero points, turned into
C by the code generator, compiled for the host with gcc (the portable C) and compared bit
for bit; the convolution cases also run as Cortex-M4 firmware on qemu (the SIMD kernels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tflite

from devices.mcu import tflite_builder as fb
from devices.mcu.codegen import generate_sources
from devices.mcu.host_runner import HostModel
from devices.mcu.reference import reference_outputs
from tests.system_tools import NEEDS_MCU

pytestmark = pytest.mark.needs("gcc")  # every case compiles the generated C for the host

OP = tflite.BuiltinOperator
OPTIONS = tflite.BuiltinOptions
SAME, VALID = 0, 1
NONE, RELU, RELU6 = 0, 1, 3


def _activation_tensor(rng: np.random.Generator, name: str, shape: tuple[int, ...]
                       ) -> fb.TensorSpec:
    return fb.TensorSpec(name, shape, scales=(float(rng.uniform(0.01, 0.2)),),
                         zero_points=(int(rng.integers(-20, 21)),))


def _weights(rng: np.random.Generator, name: str, shape: tuple[int, ...], channels: int,
             axis: int, input_scale: float) -> tuple[fb.TensorSpec, fb.TensorSpec]:
    scales = tuple(float(s) for s in rng.uniform(0.002, 0.03, channels))
    weights = fb.TensorSpec(name, shape, scales=scales, zero_points=(0,) * channels,
                            quantized_dimension=axis,
                            data=rng.integers(-127, 128, shape).astype(np.int8))
    bias_scales = tuple(input_scale * s for s in scales)
    bias = fb.TensorSpec(f"{name}_bias", (channels,), np.int32, scales=bias_scales,
                         zero_points=(0,) * channels,
                         data=rng.integers(-30000, 30000, (channels,)).astype(np.int32))
    return weights, bias


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    effective = (kernel - 1) * dilation + 1
    if padding == SAME:
        return (size + stride - 1) // stride
    return (size - effective + stride) // stride


def _check(tmp_path: Path, model: bytes, input_shape: tuple[int, ...], seed: int,
           samples: int = 3) -> None:
    path = tmp_path / "op.tflite"
    path.write_bytes(model)
    generated = generate_sources(path, tmp_path / "src")
    host = HostModel(generated, tmp_path / "build")
    rng = np.random.default_rng(seed)
    inputs = rng.integers(-128, 128, (samples, int(np.prod(input_shape)))).astype(np.int8)
    expected = reference_outputs(model, inputs)
    actual = host.invoke(inputs)
    mismatches = np.argwhere(actual != expected)
    assert mismatches.size == 0, (
        f"{len(mismatches)} of {actual.size} outputs differ; first at {mismatches[0]}: "
        f"C {actual[tuple(mismatches[0])]} vs LiteRT {expected[tuple(mismatches[0])]}"
    )


CONV_CASES = [
    # (height, width, in_c, out_c, kernel, stride, padding, dilation, activation)
    (8, 8, 3, 5, (3, 3), (1, 1), SAME, (1, 1), NONE),
    (9, 7, 1, 8, (3, 3), (2, 2), SAME, (1, 1), RELU),
    (8, 8, 6, 7, (5, 5), (2, 2), VALID, (1, 1), RELU6),
    (10, 6, 5, 3, (1, 1), (1, 1), VALID, (1, 1), NONE),
    (8, 8, 4, 4, (3, 3), (1, 1), SAME, (2, 2), RELU),
    (7, 9, 13, 9, (3, 2), (1, 2), SAME, (1, 1), NONE),
    (6, 6, 16, 16, (3, 3), (3, 3), VALID, (1, 1), RELU),
    (5, 5, 2, 1, (5, 5), (1, 1), SAME, (1, 1), NONE),
    # one input channel at stride 1 (the grey first layer's path), odd pixels and channels
    (7, 9, 1, 5, (3, 3), (1, 1), SAME, (1, 1), RELU),
    (12, 10, 1, 8, (3, 3), (1, 1), VALID, (1, 1), NONE),
    (6, 7, 1, 3, (2, 4), (2, 1), VALID, (1, 1), RELU6),
]


def _conv_model(case: tuple) -> tuple[bytes, tuple[int, ...]]:
    height, width, in_c, out_c, kernel, stride, padding, dilation, activation = case
    rng = np.random.default_rng(hash(case) % 2**32)
    source = _activation_tensor(rng, "in", (1, height, width, in_c))
    weights, bias = _weights(rng, "w", (out_c, *kernel, in_c), out_c, 0, source.scales[0])
    out_h = _out_size(height, kernel[0], stride[0], padding, dilation[0])
    out_w = _out_size(width, kernel[1], stride[1], padding, dilation[1])
    output = _activation_tensor(rng, "out", (1, out_h, out_w, out_c))
    options = fb.conv_options(padding, stride, activation, dilation)
    op = fb.OpSpec(OP.CONV_2D, (0, 1, 2), (3,), OPTIONS.Conv2DOptions, options)
    return fb.build_model([source, weights, bias, output], [op], [0], [3]), source.shape


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[:5])))
def test_conv2d_per_channel_matches_litert(tmp_path: Path, case: tuple) -> None:
    model, shape = _conv_model(case)
    _check(tmp_path, model, shape, seed=len(CONV_CASES))


DEPTHWISE_CASES = [
    # (height, width, in_c, multiplier, kernel, stride, padding, dilation, activation)
    (8, 8, 3, 1, (3, 3), (1, 1), SAME, (1, 1), RELU),
    (9, 9, 5, 2, (3, 3), (2, 2), SAME, (1, 1), NONE),
    (8, 7, 7, 1, (5, 5), (1, 1), VALID, (1, 1), RELU6),
    (8, 8, 4, 3, (3, 3), (1, 1), SAME, (2, 2), NONE),
    (6, 10, 9, 1, (2, 3), (2, 1), VALID, (1, 1), RELU),
    (7, 7, 12, 1, (3, 3), (2, 2), SAME, (1, 1), NONE),  # four-channel groups, borders
]


def _depthwise_model(case: tuple) -> tuple[bytes, tuple[int, ...]]:
    height, width, in_c, multiplier, kernel, stride, padding, dilation, activation = case
    rng = np.random.default_rng(hash(case) % 2**32)
    out_c = in_c * multiplier
    source = _activation_tensor(rng, "in", (1, height, width, in_c))
    weights, bias = _weights(rng, "w", (1, *kernel, out_c), out_c, 3, source.scales[0])
    out_h = _out_size(height, kernel[0], stride[0], padding, dilation[0])
    out_w = _out_size(width, kernel[1], stride[1], padding, dilation[1])
    output = _activation_tensor(rng, "out", (1, out_h, out_w, out_c))
    op = fb.OpSpec(OP.DEPTHWISE_CONV_2D, (0, 1, 2), (3,), OPTIONS.DepthwiseConv2DOptions,
                   fb.depthwise_options(padding, stride, multiplier, activation, dilation))
    return fb.build_model([source, weights, bias, output], [op], [0], [3]), source.shape


@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=lambda c: "x".join(map(str, c[:5])))
def test_depthwise_conv2d_matches_litert(tmp_path: Path, case: tuple) -> None:
    model, shape = _depthwise_model(case)
    _check(tmp_path, model, shape, seed=7)


@NEEDS_MCU
def test_simd_kernels_on_cortex_m4_match_litert(tmp_path: Path) -> None:
    """Every convolution and depthwise case as one SIMD firmware per case."""
    from devices.mcu.protocol import parse_output
    from devices.mcu.qemu_runner import run_firmware
    from devices.mcu.toolchain import build_firmware

    models = [*(_conv_model(case) for case in CONV_CASES),
              *(_depthwise_model(case) for case in DEPTHWISE_CASES)]
    for index, (model, shape) in enumerate(models):
        path = tmp_path / f"op{index}.tflite"
        path.write_bytes(model)
        inputs = np.random.default_rng(index).integers(
            -128, 128, (2, int(np.prod(shape)))).astype(np.int8)
        generated = generate_sources(path, tmp_path / f"src{index}", inputs=inputs)
        firmware = build_firmware(generated, tmp_path / f"build{index}", simd=True)
        board = parse_output(run_firmware(firmware.elf, "mps2-an386", 60)).output_matrix()
        assert np.array_equal(board, reference_outputs(model, inputs)), f"case {index}"


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
@pytest.mark.parametrize("depth,units,activation", [(16, 10, NONE), (37, 5, RELU),
                                                    (3, 1, RELU6), (64, 33, NONE)])
def test_fully_connected_matches_litert(tmp_path: Path, depth: int, units: int,
                                        activation: int, per_channel: bool) -> None:
    rng = np.random.default_rng(depth * 100 + units)
    source = _activation_tensor(rng, "in", (1, depth))
    channels = units if per_channel else 1
    scales = tuple(float(s) for s in rng.uniform(0.002, 0.03, channels))
    weights = fb.TensorSpec("w", (units, depth), scales=scales, zero_points=(0,) * channels,
                            data=rng.integers(-127, 128, (units, depth)).astype(np.int8))
    bias = fb.TensorSpec("b", (units,), np.int32,
                         scales=tuple(s * source.scales[0] for s in scales),
                         zero_points=(0,) * channels,
                         data=rng.integers(-30000, 30000, (units,)).astype(np.int32))
    output = _activation_tensor(rng, "out", (1, units))
    op = fb.OpSpec(OP.FULLY_CONNECTED, (0, 1, 2), (3,), OPTIONS.FullyConnectedOptions,
                   fb.fully_connected_options(activation))
    model = fb.build_model([source, weights, bias, output], [op], [0], [3])
    _check(tmp_path, model, source.shape, seed=3)


POOL_CASES = [
    # (height, width, channels, size, stride, padding, activation)
    (8, 8, 3, (2, 2), (2, 2), VALID, NONE),
    (9, 7, 5, (3, 3), (2, 2), SAME, NONE),
    (8, 8, 1, (3, 3), (1, 1), SAME, RELU),
    (7, 7, 6, (7, 7), (1, 1), VALID, NONE),
    (10, 9, 7, (2, 3), (3, 2), SAME, RELU6),
]


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "x".join(map(str, c[:4])))
def test_pooling_matches_litert(tmp_path: Path, kind: str, case: tuple) -> None:
    height, width, channels, size, stride, padding, activation = case
    rng = np.random.default_rng(hash((kind, case)) % 2**32)
    source = _activation_tensor(rng, "in", (1, height, width, channels))
    out_h = _out_size(height, size[0], stride[0], padding)
    out_w = _out_size(width, size[1], stride[1], padding)
    # TFLite requires pooling to keep the quantisation of its input
    output = fb.TensorSpec("out", (1, out_h, out_w, channels), scales=source.scales,
                           zero_points=source.zero_points)
    code = OP.MAX_POOL_2D if kind == "max" else OP.AVERAGE_POOL_2D
    op = fb.OpSpec(code, (0,), (1,), OPTIONS.Pool2DOptions,
                   fb.pool_options(padding, stride, size, activation))
    model = fb.build_model([source, output], [op], [0], [1])
    _check(tmp_path, model, source.shape, seed=5)


@pytest.mark.parametrize("activation", [NONE, RELU, RELU6])
# (1, 16, 16, 8): 2,048 elements, past the size from which ADD uses its lookup tables
@pytest.mark.parametrize("shape", [(1, 5, 5, 3), (1, 17), (1, 4, 4, 8), (1, 16, 16, 8)])
def test_add_matches_litert(tmp_path: Path, shape: tuple[int, ...], activation: int) -> None:
    """Two graph inputs cannot be fed separately to model_invoke, so the second operand is
    the first one after a 1x1 depthwise conv (a residual branch)."""
    rng = np.random.default_rng(hash((shape, activation)) % 2**32)
    source = _activation_tensor(rng, "in", shape)
    channels = shape[-1]
    four_d = (1, 1, 1, channels) if len(shape) == 2 else shape
    tensors = [fb.TensorSpec("in", four_d, scales=source.scales,
                             zero_points=source.zero_points)]
    weights, bias = _weights(rng, "w", (1, 1, 1, channels), channels, 3, source.scales[0])
    branch = _activation_tensor(rng, "branch", four_d)
    output = _activation_tensor(rng, "out", four_d)
    tensors += [weights, bias, branch, output]
    ops = [
        fb.OpSpec(OP.DEPTHWISE_CONV_2D, (0, 1, 2), (3,), OPTIONS.DepthwiseConv2DOptions,
                  fb.depthwise_options(VALID, (1, 1), 1)),
        fb.OpSpec(OP.ADD, (0, 3), (4,), OPTIONS.AddOptions, fb.add_options(activation)),
    ]
    model = fb.build_model(tensors, ops, [0], [4])
    _check(tmp_path, model, four_d, seed=11)


@pytest.mark.parametrize("keep_dims", [True, False])
@pytest.mark.parametrize("same_quantization", [True, False])
@pytest.mark.parametrize("shape", [(1, 4, 4, 8), (1, 7, 5, 3)])
def test_mean_matches_litert(tmp_path: Path, keep_dims: bool, same_quantization: bool,
                             shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(hash((keep_dims, same_quantization, shape)) % 2**32)
    source = _activation_tensor(rng, "in", shape)
    out_shape = (1, 1, 1, shape[-1]) if keep_dims else (1, shape[-1])
    if same_quantization:
        output = fb.TensorSpec("out", out_shape, scales=source.scales,
                               zero_points=source.zero_points)
    else:
        output = _activation_tensor(rng, "out", out_shape)
    axis = fb.TensorSpec("axis", (2,), np.int32, data=np.array([1, 2], dtype=np.int32))
    op = fb.OpSpec(OP.MEAN, (0, 1), (2,), OPTIONS.ReducerOptions,
                   fb.reducer_options(keep_dims))
    model = fb.build_model([source, axis, output], [op], [0], [2])
    _check(tmp_path, model, shape, seed=13, samples=5)


def test_pad_reshape_and_requantize_match_litert(tmp_path: Path) -> None:
    rng = np.random.default_rng(17)
    source = _activation_tensor(rng, "in", (1, 5, 4, 3))
    paddings = fb.TensorSpec("paddings", (4, 2), np.int32,
                             data=np.array([[0, 0], [1, 2], [2, 0], [0, 1]], dtype=np.int32))
    padded = fb.TensorSpec("padded", (1, 8, 6, 4), scales=source.scales,
                           zero_points=source.zero_points)
    shape = fb.TensorSpec("shape", (2,), np.int32, data=np.array([1, 192], dtype=np.int32))
    flat = fb.TensorSpec("flat", (1, 192), scales=source.scales,
                         zero_points=source.zero_points)
    output = _activation_tensor(rng, "out", (1, 192))
    ops = [
        fb.OpSpec(OP.PAD, (0, 1), (2,)),
        fb.OpSpec(OP.RESHAPE, (2, 3), (4,), OPTIONS.ReshapeOptions, fb.reshape_options((1, 192))),
        fb.OpSpec(OP.QUANTIZE, (4,), (5,)),
    ]
    model = fb.build_model([source, paddings, padded, shape, flat, output], ops, [0], [5])
    _check(tmp_path, model, source.shape, seed=19)
