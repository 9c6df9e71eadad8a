"""What an int8 TFLite op costs on a device is decided by its signature: the op type, every
input's and the output's shape, its options (strides, padding, dilation, fused activation,
…), the small constants that steer the kernel (a MEAN's axes, a PAD's widths, a RESHAPE's
shape) and two facts of its quantisation that pick a kernel path on the Cortex-M4 (an
activation range that is all of int8 clamps with one SSAT; a channel whose requantisation
shift is outside 1..23 takes the general rounding). Weights and other values are not part of
it: the kernels are data-independent (devices/mcu/firmware_main.c), so two ops with one
signature cost the same, which is what makes a lookup table of measured costs exact
(pipeline/hardware_cost/). `IoSignature` is the model's input and output: what the invoke's
own copies cost.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devices.mcu.graph import Graph, Operator
from devices.mcu.ops import fused_activation
from devices.mcu.quantization import activation_range, per_channel_multipliers

OMITTED = (-1,)  # the shape of an optional input the op leaves out
ACTIVATIONS = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh", 6: "sign_bit"}
FAST_SHIFTS = range(1, 24)  # right shifts the SIMD requantisation takes (mcu_kernels.c)

Number = int | bool | str
Options = tuple[tuple[str, Any], ...]


class CanonicalKey:
    """`key`: one line of canonical JSON of `to_dict()` (equal signatures, equal keys), and
    `digest`, its short sha256: a measurement's file name in the cost table."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class OpSignature(CanonicalKey):
    op: str
    inputs: tuple[tuple[int, ...], ...]  # every input's shape, constants included
    output: tuple[int, ...]
    options: Options = ()
    values: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (input position, its values)
    full_range: bool | None = None  # the fused activation clamps nothing (None: no activation)
    slow_channels: int = 0  # channels whose requantisation takes the general path

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "inputs": [list(shape) for shape in self.inputs],
                "output": list(self.output), "options": [list(item) for item in self.options],
                "values": [[position, list(values)] for position, values in self.values],
                "full_range": self.full_range, "slow_channels": self.slow_channels}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> OpSignature:
        return cls(
            op=document["op"], inputs=tuple(tuple(shape) for shape in document["inputs"]),
            output=tuple(document["output"]),
            options=tuple((name, _tupled(value)) for name, value in document["options"]),
            values=tuple((position, tuple(values)) for position, values in document["values"]),
            full_range=document["full_range"], slow_channels=document["slow_channels"])

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    @property
    def label(self) -> str:
        """Short text for tables: `CONV_2D 13x13x16 -> 11x11x32 3x3/1 relu`."""
        shapes = f"{_dims(self.inputs[0])} -> {_dims(self.output)}" if self.inputs else ""
        kernel = self.inputs[1] if self.op in ("CONV_2D", "DEPTHWISE_CONV_2D") else None
        parts = [self.op, shapes]
        if kernel:
            parts.append(f"{kernel[1]}x{kernel[2]}/{self.option('stride_h', 1)}")
        if self.option("filter_h"):
            parts.append(f"{self.option('filter_h')}x{self.option('filter_w')}/"
                         f"{self.option('stride_h')}")
        activation = self.option("activation")
        if activation:
            parts.append(ACTIVATIONS.get(activation, str(activation)))
        return " ".join(part for part in parts if part)


@dataclass(frozen=True)
class IoSignature(CanonicalKey):
    """The model's one input and one output (shape, type): the invoke's copies."""

    input: tuple[int, ...]
    input_type: str
    output: tuple[int, ...]
    output_type: str

    def to_dict(self) -> dict[str, Any]:
        return {"input": list(self.input), "input_type": self.input_type,
                "output": list(self.output), "output_type": self.output_type}


def _tupled(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(size) for size in (shape[1:] if len(shape) > 1 else shape))


OptionReader = Callable[[Any], Options]


def _conv(options: Any) -> Options:
    return (("padding", options.Padding()), ("stride_h", options.StrideH()),
            ("stride_w", options.StrideW()), ("dilation_h", options.DilationHFactor()),
            ("dilation_w", options.DilationWFactor()),
            ("activation", options.FusedActivationFunction()))


def _depthwise(options: Any) -> Options:
    return (*_conv(options), ("depth_multiplier", options.DepthMultiplier()))


def _fully_connected(options: Any) -> Options:
    return (("activation", options.FusedActivationFunction()),
            ("keep_num_dims", bool(options.KeepNumDims())))


def _pool(options: Any) -> Options:
    return (("padding", options.Padding()), ("stride_h", options.StrideH()),
            ("stride_w", options.StrideW()), ("filter_h", options.FilterHeight()),
            ("filter_w", options.FilterWidth()),
            ("activation", options.FusedActivationFunction()))


def _activation_only(options: Any) -> Options:
    return (("activation", options.FusedActivationFunction()),)


def _reducer(options: Any) -> Options:
    return (("keep_dims", bool(options.KeepDims())),)


def _reshape(options: Any) -> Options:
    shape = options.NewShapeAsNumpy() if options.NewShapeLength() else []
    return (("new_shape", tuple(int(size) for size in shape)),)


def _softmax(options: Any) -> Options:
    return (("beta", float(options.Beta())),)


# op name -> what of its parsed options steers its kernel (devices/mcu/graph.py parses them)
OPTION_READERS: dict[str, OptionReader] = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _depthwise, "FULLY_CONNECTED": _fully_connected,
    "MAX_POOL_2D": _pool, "AVERAGE_POOL_2D": _pool, "ADD": _activation_only,
    "MEAN": _reducer, "RESHAPE": _reshape, "SOFTMAX": _softmax,
}
# op name -> the positions of the constant inputs whose values steer the kernel
VALUE_INPUTS: dict[str, tuple[int, ...]] = {"MEAN": (1,), "PAD": (1,), "RESHAPE": (1,)}
PER_CHANNEL_REQUANTISATION = ("CONV_2D", "DEPTHWISE_CONV_2D")


def _shape(graph: Graph, index: int) -> tuple[int, ...]:
    return OMITTED if index < 0 else tuple(int(size) for size in graph.tensor(index).shape)


def _values(graph: Graph, op: Operator) -> tuple[tuple[int, tuple[int, ...]], ...]:
    found = []
    for position in VALUE_INPUTS.get(op.name, ()):
        if position < len(op.inputs) and op.inputs[position] >= 0:
            data = graph.tensor(op.inputs[position]).data
            if data is not None:
                found.append((position, tuple(int(v) for v in data.reshape(-1))))
    return tuple(found)


def _full_range(graph: Graph, op: Operator, options: Options) -> bool | None:
    if "activation" not in dict(options) or not op.outputs:
        return None
    output = graph.tensor(op.outputs[0])
    if not output.scales:
        return None
    return activation_range(fused_activation(op), output) == (-128, 127)


def _slow_channels(graph: Graph, op: Operator) -> int:
    if op.name not in PER_CHANNEL_REQUANTISATION:
        return 0
    source, weights, output = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]),
                               graph.tensor(op.outputs[0]))
    if not (source.scales and weights.scales and output.scales):
        return 0
    _, shifts = per_channel_multipliers(source, weights, output, int(output.shape[-1]))
    return sum(1 for shift in shifts if -shift not in FAST_SHIFTS)


def op_signature(graph: Graph, op: Operator) -> OpSignature:
    reader = OPTION_READERS.get(op.name)
    options = reader(op.options) if reader is not None and op.options is not None else ()
    return OpSignature(
        op=op.name, inputs=tuple(_shape(graph, index) for index in op.inputs),
        output=_shape(graph, op.outputs[0]) if op.outputs else (),
        options=options, values=_values(graph, op),
        full_range=_full_range(graph, op, options), slow_channels=_slow_channels(graph, op),
    )


def op_signatures(graph: Graph) -> tuple[OpSignature, ...]:
    """One signature per op, in graph order."""
    return tuple(op_signature(graph, op) for op in graph.operators)


def io_signature(graph: Graph) -> IoSignature:
    source, result = graph.tensor(graph.inputs[0]), graph.tensor(graph.outputs[0])
    return IoSignature(tuple(int(d) for d in source.shape), source.type_name,
                       tuple(int(d) for d in result.shape), result.type_name)
