"""Per-operator C emitters: a registry from TFLite op name to the code that calls its kernel.

Each emitter reads the op's tensors and options, derives the kernel parameters exactly as
TFLite's Prepare() does, and returns the declarations and the one kernel call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from devices.errors import ArtifactError
from devices.mcu.c_source import const_array, struct_initialiser
from devices.mcu.graph import Graph, Operator, Tensor
from devices.mcu.layout import padded_taps, pair_interleaved
from devices.mcu.ops import fused_activation
from devices.mcu.quantization import (
    activation_range,
    add_parameters,
    fully_connected_multipliers,
    mean_multiplier,
    per_channel_multipliers,
    quantize_multiplier,
)

PADDING_SAME, PADDING_VALID = 0, 1


@dataclass
class EmitContext:
    graph: Graph
    tensor_ref: Callable[[int], str]  # tensor index -> C pointer expression into the arena
    # LiteRT requantises int8 FULLY_CONNECTED with one 64-bit rounding step, TFLite Micro
    # with two (devices/mcu/referees.py)
    fully_connected_single_rounding: bool = True


@dataclass
class EmittedOp:
    declarations: list[str]
    call: str
    scratch_int16: int = 0  # int16 elements of shared scratch the kernel needs
    notes: list[str] = field(default_factory=list)


Emitter = Callable[[EmitContext, Operator], EmittedOp]
EMITTERS: dict[str, Emitter] = {}


def emitter(name: str) -> Callable[[Emitter], Emitter]:
    def register(function: Emitter) -> Emitter:
        EMITTERS[name] = function
        return function
    return register


def _unsupported(op: Operator, what: str) -> ArtifactError:
    return ArtifactError(
        f"op #{op.index} {op.name}: {what}; the C generator cannot emit it (hint: keep to "
        "NHWC int8 CNN layers with batch 1, as the export stage produces)"
    )


def _nhwc(tensor: Tensor, op: Operator) -> tuple[int, int, int, int]:
    if len(tensor.shape) != 4:
        raise _unsupported(op, f"tensor {tensor.name!r} has shape {tensor.shape}, expected NHWC")
    batches, height, width, channels = tensor.shape
    return batches, height, width, channels


def _padding(padding: int, in_size: int, out_size: int, kernel: int, stride: int,
             dilation: int) -> int:
    """ComputePaddingHeightWidth: the leading pad; VALID pads nothing."""
    if padding == PADDING_VALID:
        return 0
    effective = (kernel - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2


def _bias_array(ctx: EmitContext, op: Operator, name: str, channels: int | None = None
                ) -> tuple[list[str], str]:
    """The bias array; zeros for `channels` when the op has none and the kernel needs one
    (LiteRT itself refuses an int8 CONV_2D without bias, so this is a safeguard)."""
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        if channels is None:
            return [], "0"
        return [const_array(f"{name}_bias", np.zeros(channels), np.int32)], f"{name}_bias"
    bias = ctx.graph.tensor(op.inputs[2])
    if bias.data is None:
        raise _unsupported(op, "bias is not constant")
    return [const_array(f"{name}_bias", bias.data, np.int32)], f"{name}_bias"


def _conv_like(ctx: EmitContext, op: Operator, depthwise: bool) -> EmittedOp:
    graph = ctx.graph
    source, weights, output = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]),
                               graph.tensor(op.outputs[0]))
    batches, in_h, in_w, in_c = _nhwc(source, op)
    _, out_h, out_w, out_c = _nhwc(output, op)
    options = op.options
    _, k_h, k_w, weight_depth = weights.shape
    stride_h, stride_w = options.StrideH(), options.StrideW()
    dilation_h, dilation_w = options.DilationHFactor(), options.DilationWFactor()
    if not depthwise and weight_depth != in_c:
        raise _unsupported(op, "grouped convolution")
    multiplier = out_c // in_c if depthwise else 1
    name = f"op{op.index}"
    multipliers, shifts = per_channel_multipliers(source, weights, output, out_c)
    act_min, act_max = activation_range(fused_activation(op), output)
    params = {
        "batches": batches, "in_h": in_h, "in_w": in_w, "in_c": in_c,
        "out_h": out_h, "out_w": out_w, "out_c": out_c, "k_h": k_h, "k_w": k_w,
        "stride_h": stride_h, "stride_w": stride_w,
        "dilation_h": dilation_h, "dilation_w": dilation_w,
        "pad_top": _padding(options.Padding(), in_h, out_h, k_h, stride_h, dilation_h),
        "pad_left": _padding(options.Padding(), in_w, out_w, k_w, stride_w, dilation_w),
        "depth_multiplier": multiplier,
        "input_offset": -source.zero_point, "output_offset": output.zero_point,
        "act_min": act_min, "act_max": act_max,
    }
    bias_decls, bias_ref = _bias_array(ctx, op, name, out_c)
    filter_values = weights.data if depthwise else pair_interleaved(weights.data)
    declarations = [
        const_array(f"{name}_filter", filter_values, np.int8),
        *bias_decls,
        const_array(f"{name}_multiplier", multipliers, np.int32),
        const_array(f"{name}_shift", shifts, np.int32),
        struct_initialiser("mcu_conv_params", f"{name}_params", params),
    ]
    arguments = (f"&{name}_params, {ctx.tensor_ref(op.inputs[0])}, {name}_filter, {bias_ref}, "
                 f"{name}_multiplier, {name}_shift, {ctx.tensor_ref(op.outputs[0])}")
    if depthwise:
        return EmittedOp(declarations, f"mcu_depthwise_conv2d_s8({arguments});")
    patch = k_h * k_w * in_c
    # two int16 patches (two output pixels), then the raw int8 patch, each padded to whole
    # groups of four taps, then a row of out_c bytes an odd last pixel's twin is written to
    return EmittedOp(declarations, f"mcu_conv2d_s8({arguments}, mcu_scratch);",
                     scratch_int16=2 * padded_taps(patch) + padded_taps(patch) // 2
                     + (out_c + 1) // 2)


@emitter("CONV_2D")
def emit_conv(ctx: EmitContext, op: Operator) -> EmittedOp:
    return _conv_like(ctx, op, depthwise=False)


@emitter("DEPTHWISE_CONV_2D")
def emit_depthwise(ctx: EmitContext, op: Operator) -> EmittedOp:
    return _conv_like(ctx, op, depthwise=True)


@emitter("FULLY_CONNECTED")
def emit_fully_connected(ctx: EmitContext, op: Operator) -> EmittedOp:
    graph = ctx.graph
    source, weights, output = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]),
                               graph.tensor(op.outputs[0]))
    units, depth = weights.shape
    batches = source.elements // depth
    name = f"op{op.index}"
    multipliers, shifts = fully_connected_multipliers(source, weights, output, units)
    act_min, act_max = activation_range(fused_activation(op), output)
    params = {
        "batches": batches, "depth": depth, "units": units,
        "input_offset": -source.zero_point, "filter_offset": -weights.zero_point,
        "output_offset": output.zero_point, "act_min": act_min, "act_max": act_max,
        "single_rounding": int(ctx.fully_connected_single_rounding),
    }
    bias_decls, bias_ref = _bias_array(ctx, op, name)
    declarations = [
        const_array(f"{name}_filter", weights.data, np.int8),
        *bias_decls,
        const_array(f"{name}_multiplier", multipliers, np.int32),
        const_array(f"{name}_shift", shifts, np.int32),
        struct_initialiser("mcu_fc_params", f"{name}_params", params),
    ]
    call = (f"mcu_fully_connected_s8(&{name}_params, {ctx.tensor_ref(op.inputs[0])}, "
            f"{name}_filter, {bias_ref}, {name}_multiplier, {name}_shift, "
            f"{ctx.tensor_ref(op.outputs[0])}, mcu_scratch);")
    return EmittedOp(declarations, call, scratch_int16=depth)


def _pool(ctx: EmitContext, op: Operator, kernel: str) -> EmittedOp:
    graph = ctx.graph
    source, output = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    batches, in_h, in_w, channels = _nhwc(source, op)
    _, out_h, out_w, _ = _nhwc(output, op)
    options = op.options
    k_h, k_w = options.FilterHeight(), options.FilterWidth()
    stride_h, stride_w = options.StrideH(), options.StrideW()
    act_min, act_max = activation_range(fused_activation(op), output)
    params = {
        "batches": batches, "in_h": in_h, "in_w": in_w, "channels": channels,
        "out_h": out_h, "out_w": out_w, "k_h": k_h, "k_w": k_w,
        "stride_h": stride_h, "stride_w": stride_w,
        "pad_top": _padding(options.Padding(), in_h, out_h, k_h, stride_h, 1),
        "pad_left": _padding(options.Padding(), in_w, out_w, k_w, stride_w, 1),
        "act_min": act_min, "act_max": act_max,
    }
    name = f"op{op.index}"
    return EmittedOp(
        [struct_initialiser("mcu_pool_params", f"{name}_params", params)],
        f"{kernel}(&{name}_params, {ctx.tensor_ref(op.inputs[0])}, "
        f"{ctx.tensor_ref(op.outputs[0])});",
    )


@emitter("MAX_POOL_2D")
def emit_max_pool(ctx: EmitContext, op: Operator) -> EmittedOp:
    return _pool(ctx, op, "mcu_max_pool_s8")


@emitter("AVERAGE_POOL_2D")
def emit_average_pool(ctx: EmitContext, op: Operator) -> EmittedOp:
    return _pool(ctx, op, "mcu_average_pool_s8")


ADD_TABLE_ENTRIES = 512  # int32: each input's 256 rescaled values (mcu_add_s8)
ADD_TABLE_MIN_ELEMENTS = 1024


@emitter("ADD")
def emit_add(ctx: EmitContext, op: Operator) -> EmittedOp:
    graph = ctx.graph
    first, second, output = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]),
                             graph.tensor(op.outputs[0]))
    if first.shape != second.shape or first.is_constant or second.is_constant:
        raise _unsupported(op, f"broadcasting add {first.shape} + {second.shape}")
    act_min, act_max = activation_range(fused_activation(op), output)
    params = {"size": output.elements, **add_parameters(first, second, output),
              "act_min": act_min, "act_max": act_max}
    name = f"op{op.index}"
    tables = output.elements >= ADD_TABLE_MIN_ELEMENTS  # 512 table entries pay off
    return EmittedOp(
        [struct_initialiser("mcu_add_params", f"{name}_params", params)],
        f"mcu_add_s8(&{name}_params, {ctx.tensor_ref(op.inputs[0])}, "
        f"{ctx.tensor_ref(op.inputs[1])}, {ctx.tensor_ref(op.outputs[0])}, "
        f"{'(int32_t *)(void *)mcu_scratch' if tables else '0'});",
        scratch_int16=2 * ADD_TABLE_ENTRIES if tables else 0,
    )


@emitter("MEAN")
def emit_mean(ctx: EmitContext, op: Operator) -> EmittedOp:
    graph = ctx.graph
    source, axis_tensor, output = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]),
                                   graph.tensor(op.outputs[0]))
    batches, in_h, in_w, channels = _nhwc(source, op)
    axes = sorted(int(a) % 4 for a in np.asarray(axis_tensor.data).reshape(-1))
    if axes != [1, 2]:
        raise _unsupported(op, f"mean over axes {axes}; expected the spatial axes [1, 2]")
    multiplier, shift = mean_multiplier(source.scale, output.scale, in_h * in_w)
    params = {
        "batches": batches, "in_h": in_h, "in_w": in_w, "channels": channels,
        "input_zero_point": source.zero_point, "output_zero_point": output.zero_point,
        "multiplier": multiplier, "shift": shift,
    }
    name = f"op{op.index}"
    return EmittedOp(
        [struct_initialiser("mcu_mean_params", f"{name}_params", params)],
        f"mcu_mean_s8(&{name}_params, {ctx.tensor_ref(op.inputs[0])}, "
        f"{ctx.tensor_ref(op.outputs[0])});",
    )


@emitter("PAD")
def emit_pad(ctx: EmitContext, op: Operator) -> EmittedOp:
    graph = ctx.graph
    source, paddings, output = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]),
                                graph.tensor(op.outputs[0]))
    rank = len(source.shape)
    if rank > 4 or paddings.data is None:
        raise _unsupported(op, "pad needs constant paddings on a tensor of rank <= 4")
    lead = 4 - rank
    in_shape = [1] * lead + list(source.shape)
    out_shape = [1] * lead + list(output.shape)
    before = [0] * lead + [int(p[0]) for p in np.asarray(paddings.data).reshape(rank, 2)]
    params = {"in_shape": in_shape, "before": before, "out_shape": out_shape,
              "pad_value": output.zero_point}
    name = f"op{op.index}"
    return EmittedOp(
        [struct_initialiser("mcu_pad_params", f"{name}_params", params)],
        f"mcu_pad_s8(&{name}_params, {ctx.tensor_ref(op.inputs[0])}, "
        f"{ctx.tensor_ref(op.outputs[0])});",
    )


@emitter("RESHAPE")
def emit_reshape(ctx: EmitContext, op: Operator) -> EmittedOp:
    output = ctx.graph.tensor(op.outputs[0])
    return EmittedOp([], f"mcu_copy_s8({output.elements}, {ctx.tensor_ref(op.inputs[0])}, "
                         f"{ctx.tensor_ref(op.outputs[0])});")


@emitter("QUANTIZE")
def emit_requantize(ctx: EmitContext, op: Operator) -> EmittedOp:
    graph = ctx.graph
    source, output = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    if source.type_name != "INT8" or output.type_name != "INT8":
        raise _unsupported(op, f"{source.type_name} -> {output.type_name} quantize; the "
                               "generated model takes and returns int8")
    multiplier, shift = quantize_multiplier(source.scale / output.scale)
    params = {"size": output.elements, "input_zero_point": source.zero_point,
              "output_zero_point": output.zero_point, "multiplier": multiplier,
              "shift": shift}
    name = f"op{op.index}"
    return EmittedOp(
        [struct_initialiser("mcu_requantize_params", f"{name}_params", params)],
        f"mcu_requantize_s8(&{name}_params, {ctx.tensor_ref(op.inputs[0])}, "
        f"{ctx.tensor_ref(op.outputs[0])});",
    )


def _standalone_activation(ctx: EmitContext, op: Operator, activation: int) -> EmittedOp:
    graph = ctx.graph
    source, output = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    if (source.scale, source.zero_point) != (output.scale, output.zero_point):
        raise _unsupported(op, "activation that changes the quantisation")
    act_min, act_max = activation_range(activation, output)
    return EmittedOp([], f"mcu_clamp_s8({output.elements}, {act_min}, {act_max}, "
                         f"{ctx.tensor_ref(op.inputs[0])}, {ctx.tensor_ref(op.outputs[0])});")


@emitter("RELU")
def emit_relu(ctx: EmitContext, op: Operator) -> EmittedOp:
    return _standalone_activation(ctx, op, 1)


@emitter("RELU6")
def emit_relu6(ctx: EmitContext, op: Operator) -> EmittedOp:
    return _standalone_activation(ctx, op, 3)
