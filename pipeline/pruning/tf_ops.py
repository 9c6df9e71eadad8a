"""Channel rules for TFOpLambda, the layer tf_keras makes of a TensorFlow op applied to a
Keras tensor (`x + 3.0`, `tf.nn.relu6(x)`, `x * tf.sigmoid(y)`: MobileNetV3's hard-swish).
Decided from the op and its arguments: element-wise ops with scalar constants carry channels,
element-wise ops over several tensors join them (with broadcasting, as Multiply does),
reductions over positions carry them, softmax over channels fixes them, ops that reorder
channels fix what they read; any other op is refused by name, since nothing says what it
does to channels."""

from __future__ import annotations

from typing import Any

import numpy as np

from devices.tf_env import tf
from pipeline.pruning.channel_mappings import (
    ChannelMapping,
    channel_axis_in,
    join_all,
    rearrange,
    single_input,
)
from pipeline.pruning.layer_call import LayerCall
from pipeline.pruning.layouts import Layout
from pipeline.pruning.refusal import refuse
from pipeline.pruning.spaces import ChannelSpaces


def _constants(call: LayerCall) -> list[np.ndarray]:
    """The numeric arguments that are not Keras tensors (3.0 in `x + 3.0`)."""
    values = [*call.call_args, *(call.call_kwargs or {}).values()]
    constants = []
    for value in values:
        if isinstance(value, bool | str | bytes) or value is None \
                or any(hasattr(leaf, "_keras_history") for leaf in tf.nest.flatten(value)):
            continue
        try:
            array = np.asarray(value)
        except (TypeError, ValueError):  # a dtype, a function: not a constant operand
            continue
        if array.dtype != object and array.dtype.kind in "biuf":
            constants.append(array)
    return constants


def elementwise(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    layout = join_all(call, inputs, spaces)
    if any(c.ndim >= 1 and c.shape[-1] == layout.width > 1 for c in _constants(call)):
        spaces.fix(layout, f"{call.name} holds a constant per channel in its call")
    return layout


def _axis_argument(call: LayerCall, default: Any) -> Any:
    kwargs = call.call_kwargs or {}
    if "axis" in kwargs:
        return kwargs["axis"]
    return call.call_args[1] if len(call.call_args) > 1 else default


def reduction(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    layout = single_input(call, inputs)
    axes = _axis_argument(call, None)
    if layout.flattened or channel_axis_in(axes, len(call.input_shapes[0])):
        return rearrange(call, inputs, spaces, f"reduces over channels (axis={axes})")
    return layout


def softmax(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    layout = single_input(call, inputs)
    if channel_axis_in(_axis_argument(call, -1), len(call.input_shapes[0])):
        spaces.fix(layout, f"{call.name} applies softmax across channels")
    return layout


def reorders(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    return rearrange(call, inputs, spaces, f"(tf.{call.layer.symbol}) reorders elements")


_ELEMENTWISE = (
    "__operators__.add", "math.add", "math.add_n", "math.subtract", "math.multiply",
    "math.multiply_no_nan", "math.scalar_mul", "math.truediv", "math.divide",
    "math.divide_no_nan", "math.floordiv", "math.maximum", "math.minimum", "math.pow",
    "math.squared_difference", "math.negative", "math.abs", "math.square", "math.sqrt",
    "math.rsqrt", "math.exp", "math.log", "math.log1p", "math.sigmoid", "nn.sigmoid",
    "math.tanh", "nn.tanh", "nn.relu", "nn.relu6", "nn.elu", "nn.selu", "nn.gelu",
    "nn.silu", "nn.swish", "nn.leaky_relu", "math.softplus", "nn.softplus", "math.softsign",
    "nn.softsign", "math.erf", "math.reciprocal", "math.sign", "math.round", "math.floor",
    "math.ceil", "math.sin", "math.cos", "clip_by_value", "identity", "stop_gradient",
    "cast", "nn.bias_add",
)
_REDUCTIONS = (
    "math.reduce_mean", "math.reduce_max", "math.reduce_min", "math.reduce_sum",
    "math.reduce_prod", "math.reduce_std", "math.reduce_variance", "math.reduce_logsumexp",
)
_SOFTMAX = ("nn.softmax", "math.softmax", "nn.log_softmax", "math.log_softmax")
_REORDERING = ("reshape", "transpose", "__operators__.getitem", "concat", "split",
               "nn.depth_to_space", "nn.space_to_depth", "linalg.matmul")

# TFOpLambda.symbol (the op's TensorFlow name without "tf.") -> its channel mapping
TF_OP_RULES: dict[str, ChannelMapping] = {
    **dict.fromkeys(_ELEMENTWISE, elementwise),
    **dict.fromkeys(_REDUCTIONS, reduction),
    **dict.fromkeys(_SOFTMAX, softmax),
    **dict.fromkeys(_REORDERING, reorders),
}


def register_tf_op(symbol: str, mapping: ChannelMapping) -> None:
    """Teach the pruner another op, e.g. `register_tf_op("math.atan", elementwise)`."""
    TF_OP_RULES[symbol] = mapping


def maps_tf_op(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    symbol = str(call.layer.symbol)
    mapping = TF_OP_RULES.get(symbol)
    if mapping is None:
        raise refuse(
            call.layer, f"op tf.{symbol} has no channel rule (not known to be element-wise, "
            "a reduction over positions or a softmax)",
            "use Keras layers for it, or teach the pruner: pipeline.pruning.tf_ops."
            "register_tf_op(symbol, elementwise)",
        )
    return mapping(call, inputs, spaces)
