"""The int8 CNN operators TFLite Micro supports, with their MAC count.

A registry keyed by the TFLite builtin operator name: readiness checks every op against
it, the MAC count (for instructions per MAC) comes from the same entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from devices.mcu.graph import Graph, Operator

MacCounter = Callable[[Graph, Operator], int]

# Fused activations TFLite Micro's int8 kernels apply by clamping (ActivationFunctionType).
FUSED_ACTIVATIONS: dict[int, str] = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


def _no_macs(graph: Graph, op: Operator) -> int:
    return 0


def _conv_macs(graph: Graph, op: Operator) -> int:
    output = graph.tensor(op.outputs[0])
    kernel = graph.tensor(op.inputs[1])  # [out_channels, kh, kw, in_channels]
    _, kernel_h, kernel_w, in_channels = kernel.shape
    return output.elements * kernel_h * kernel_w * in_channels


def _depthwise_macs(graph: Graph, op: Operator) -> int:
    output = graph.tensor(op.outputs[0])
    kernel = graph.tensor(op.inputs[1])  # [1, kh, kw, out_channels]
    return output.elements * kernel.shape[1] * kernel.shape[2]


def _fully_connected_macs(graph: Graph, op: Operator) -> int:
    output = graph.tensor(op.outputs[0])
    weights = graph.tensor(op.inputs[1])  # [units, depth]
    return output.elements * weights.shape[-1]


@dataclass(frozen=True)
class OpSpec:
    name: str
    macs: MacCounter
    has_fused_activation: bool = False


SUPPORTED_OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec("CONV_2D", _conv_macs, has_fused_activation=True),
        OpSpec("DEPTHWISE_CONV_2D", _depthwise_macs, has_fused_activation=True),
        OpSpec("FULLY_CONNECTED", _fully_connected_macs, has_fused_activation=True),
        OpSpec("MAX_POOL_2D", _no_macs, has_fused_activation=True),
        OpSpec("AVERAGE_POOL_2D", _no_macs, has_fused_activation=True),
        OpSpec("MEAN", _no_macs),
        OpSpec("ADD", _no_macs, has_fused_activation=True),
        OpSpec("RESHAPE", _no_macs),
        OpSpec("PAD", _no_macs),
        OpSpec("SOFTMAX", _no_macs),
        OpSpec("QUANTIZE", _no_macs),
        OpSpec("DEQUANTIZE", _no_macs),
        OpSpec("RELU", _no_macs),
        OpSpec("RELU6", _no_macs),
    )
}


def fused_activation(op: Operator) -> int:
    options = op.options
    if options is None or not hasattr(options, "FusedActivationFunction"):
        return 0
    return int(options.FusedActivationFunction())


def graph_macs(graph: Graph) -> int:
    """Multiply-accumulates of one inference (conv, depthwise, fully connected)."""
    return sum(
        SUPPORTED_OPS[op.name].macs(graph, op) for op in graph.operators if op.name in SUPPORTED_OPS
    )
