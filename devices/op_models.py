"""A one-op int8 TFLite model for an op signature (devices/op_signature.py), written with
devices/mcu/tflite_builder.py: the op alone, with random weights and quantisation chosen to
give the signature's kernel path (its fused activation clamping all of int8 or not, its slow
requantisation channels). Devices run it to measure what one op of that signature costs;
since the kernels are data-independent, the op inside a whole model costs the same (tested:
the emulated Cortex-M4's per-op rows agree with these models to one timer tick).

One synthesiser per op type, a registry: an op without one is named in the refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import flatbuffers
import numpy as np
import tflite

from devices.errors import ModelError
from devices.mcu import tflite_builder as builder
from devices.op_signature import OMITTED, OpSignature

INPUT_SCALE = 0.05
FAST_EFFECTIVE_SCALE = 2.0 ** -9  # input x weight / output scale: a right shift of 8
SLOW_EFFECTIVE_SCALE = 0.75  # a right shift of 0: the general rounding path

Tensors = list[builder.TensorSpec]


@dataclass(frozen=True)
class OutputQuantisation:
    scale: float
    zero_point: int


def _output_quantisation(signature: OpSignature) -> OutputQuantisation:
    """An output scale and zero point whose activation range is, or is not, all of int8."""
    activation, full = signature.option("activation", 0), signature.full_range is not False
    table = {
        (1, True): OutputQuantisation(0.1, -128), (1, False): OutputQuantisation(0.1, 0),
        (3, True): OutputQuantisation(6.0 / 255.0, -128),
        (3, False): OutputQuantisation(0.1, -128),
        (2, True): OutputQuantisation(2.0 / 255.0, 0), (2, False): OutputQuantisation(0.1, 0),
    }
    return table.get((activation, full), OutputQuantisation(0.1, 0))


def _rng(signature: OpSignature) -> np.random.Generator:
    return np.random.default_rng(int(signature.digest[:8], 16))


def _int8(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-127, 128, shape).astype(np.int8)


def _activation(name: str, shape: tuple[int, ...], scale: float = INPUT_SCALE,
                zero_point: int = 0) -> builder.TensorSpec:
    return builder.TensorSpec(name, shape, np.int8, (scale,), (zero_point,))


def _weight_scales(signature: OpSignature, channels: int, output_scale: float) -> list[float]:
    fast = FAST_EFFECTIVE_SCALE * output_scale / INPUT_SCALE
    slow = SLOW_EFFECTIVE_SCALE * output_scale / INPUT_SCALE
    return [slow if channel < signature.slow_channels else fast for channel in range(channels)]


def _conv_tensors(signature: OpSignature, depthwise: bool) -> Tensors:
    rng = _rng(signature)
    source, kernel, bias = (*signature.inputs, OMITTED)[:3]
    out = _output_quantisation(signature)
    channels = signature.output[-1]
    scales = _weight_scales(signature, channels, out.scale)
    tensors = [
        _activation("input", source),
        builder.TensorSpec("filter", kernel, np.int8, tuple(scales), (0,) * channels,
                           3 if depthwise else 0, _int8(rng, kernel)),
    ]
    if bias != OMITTED:
        tensors.append(builder.TensorSpec(
            "bias", bias, np.int32, tuple(INPUT_SCALE * s for s in scales), (0,) * channels, 0,
            rng.integers(-2000, 2000, bias).astype(np.int32)))
    tensors.append(_activation("output", signature.output, out.scale, out.zero_point))
    return tensors


def _fully_connected_tensors(signature: OpSignature) -> Tensors:
    rng = _rng(signature)
    source, weights, bias = (*signature.inputs, OMITTED)[:3]
    out = _output_quantisation(signature)
    scale = _weight_scales(signature, 1, out.scale)[0]
    tensors = [_activation("input", source),
               builder.TensorSpec("weights", weights, np.int8, (scale,), (0,), 0,
                                  _int8(rng, weights))]
    if bias != OMITTED:
        tensors.append(builder.TensorSpec("bias", bias, np.int32, (INPUT_SCALE * scale,), (0,),
                                          0, rng.integers(-2000, 2000, bias).astype(np.int32)))
    tensors.append(_activation("output", signature.output, out.scale, out.zero_point))
    return tensors


def _same_quantisation(signature: OpSignature) -> Tensors:
    """Input and output on one scale (pooling, reshape, pad, standalone activations)."""
    return [_activation("input", signature.inputs[0]), _activation("output", signature.output)]


def _constant_input(signature: OpSignature, position: int) -> builder.TensorSpec | None:
    values = dict(signature.values).get(position)
    if values is None:
        return None
    shape = signature.inputs[position]
    return builder.TensorSpec(f"constant{position}", shape, np.int32,
                              data=np.asarray(values, np.int32).reshape(shape))


@dataclass(frozen=True)
class Synthesised:
    tensors: Tensors
    inputs: tuple[int, ...]  # the op's input tensor positions (-1: omitted)
    options_type: int = 0
    options: builder.OptionsWriter | None = None


Synthesiser = Callable[[OpSignature], Synthesised]


def _conv(signature: OpSignature) -> Synthesised:
    tensors = _conv_tensors(signature, depthwise=False)
    return Synthesised(tensors, _positions(signature, len(tensors)),
                       tflite.BuiltinOptions.Conv2DOptions, builder.conv_options(
                           signature.option("padding"), _strides(signature),
                           signature.option("activation", 0), _dilations(signature)))


def _depthwise(signature: OpSignature) -> Synthesised:
    tensors = _conv_tensors(signature, depthwise=True)
    return Synthesised(tensors, _positions(signature, len(tensors)),
                       tflite.BuiltinOptions.DepthwiseConv2DOptions, builder.depthwise_options(
                           signature.option("padding"), _strides(signature),
                           signature.option("depth_multiplier", 1),
                           signature.option("activation", 0), _dilations(signature)))


def _fully_connected(signature: OpSignature) -> Synthesised:
    tensors = _fully_connected_tensors(signature)
    return Synthesised(tensors, _positions(signature, len(tensors)),
                       tflite.BuiltinOptions.FullyConnectedOptions,
                       builder.fully_connected_options(signature.option("activation", 0),
                                                       signature.option("keep_num_dims", False)))


def _pool(signature: OpSignature) -> Synthesised:
    return Synthesised(_same_quantisation(signature), (0,), tflite.BuiltinOptions.Pool2DOptions,
                       builder.pool_options(signature.option("padding"), _strides(signature),
                                            (signature.option("filter_h"),
                                             signature.option("filter_w")),
                                            signature.option("activation", 0)))


def _add(signature: OpSignature) -> Synthesised:
    # both operands are the one model input: the kernel's work is the shapes', and the C
    # generator takes a single input
    out = _output_quantisation(signature)
    tensors = [_activation("input", signature.inputs[0]),
               _activation("output", signature.output, out.scale, out.zero_point)]
    return Synthesised(tensors, (0, 0), tflite.BuiltinOptions.AddOptions,
                       builder.add_options(signature.option("activation", 0)))


def _with_constant(signature: OpSignature, options_type: int = 0,
                   options: builder.OptionsWriter | None = None) -> Synthesised:
    """Input, a steering constant (axes, paddings, shape) when the signature has one, output."""
    source, output = _same_quantisation(signature)
    constant = _constant_input(signature, 1)
    if constant is None:
        return Synthesised([source, output], (0,), options_type, options)
    return Synthesised([source, constant, output], (0, 1), options_type, options)


def _mean(signature: OpSignature) -> Synthesised:
    return _with_constant(signature, tflite.BuiltinOptions.ReducerOptions,
                          builder.reducer_options(signature.option("keep_dims", False)))


def _reshape(signature: OpSignature) -> Synthesised:
    shape = signature.option("new_shape")
    if shape:
        return _with_constant(signature, tflite.BuiltinOptions.ReshapeOptions,
                              builder.reshape_options(tuple(shape)))
    return _with_constant(signature)


def _softmax_options(beta: float) -> builder.OptionsWriter:
    def write(flat: flatbuffers.Builder) -> int:
        tflite.SoftmaxOptionsStart(flat)
        tflite.SoftmaxOptionsAddBeta(flat, beta)
        return tflite.SoftmaxOptionsEnd(flat)
    return write


def _softmax(signature: OpSignature) -> Synthesised:
    tensors = [_activation("input", signature.inputs[0]),
               _activation("output", signature.output, 1.0 / 256.0, -128)]
    return Synthesised(tensors, (0,), tflite.BuiltinOptions.SoftmaxOptions,
                       _softmax_options(signature.option("beta", 1.0)))


def _plain(signature: OpSignature) -> Synthesised:
    return Synthesised(_same_quantisation(signature), (0,))


def _requantise(signature: OpSignature) -> Synthesised:
    tensors = [_activation("input", signature.inputs[0]),
               _activation("output", signature.output, 2 * INPUT_SCALE, 3)]
    return Synthesised(tensors, (0,))


SYNTHESISERS: dict[str, Synthesiser] = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _depthwise, "FULLY_CONNECTED": _fully_connected,
    "MAX_POOL_2D": _pool, "AVERAGE_POOL_2D": _pool, "ADD": _add, "MEAN": _mean,
    "RESHAPE": _reshape, "PAD": _with_constant, "SOFTMAX": _softmax, "RELU": _plain,
    "RELU6": _plain, "QUANTIZE": _requantise,
}


def _positions(signature: OpSignature, tensor_count: int) -> tuple[int, ...]:
    """The op's inputs for tensors [input, weights, (bias), output]: -1 where omitted."""
    present = tensor_count - 1  # all but the output
    return tuple(position if position < present else -1
                 for position in range(len(signature.inputs)))


def _strides(signature: OpSignature) -> tuple[int, int]:
    return signature.option("stride_h", 1), signature.option("stride_w", 1)


def _dilations(signature: OpSignature) -> tuple[int, int]:
    return signature.option("dilation_h", 1), signature.option("dilation_w", 1)


def can_synthesise(op: str) -> bool:
    return op in SYNTHESISERS


def single_op_model(signature: OpSignature) -> bytes:
    """The int8 flatbuffer of one op of this signature (ModelError for an op type with no
    synthesiser)."""
    synthesise = SYNTHESISERS.get(signature.op)
    if synthesise is None:
        raise ModelError(
            f"no single-op model for {signature.op}, so its cost cannot be measured per op "
            f"(ops that have one: {', '.join(sorted(SYNTHESISERS))}) (hint: replace the layer, "
            "or add a synthesiser to devices/op_models.py SYNTHESISERS)")
    made = synthesise(signature)
    output = len(made.tensors) - 1
    op = builder.OpSpec(getattr(tflite.BuiltinOperator, signature.op), made.inputs, (output,),
                        made.options_type, made.options)
    return builder.build_model(made.tensors, [op], [0], [output])
