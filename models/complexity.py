"""Per-layer parameter and MAC counts for one inference (batch of 1).

MACs count multiply-accumulates of Conv2D, DepthwiseConv2D and Dense; pooling counts one
operation per input element read per window and Add one per output element per extra
input, so the table shows where the work is. BatchNorm is folded into the preceding conv
by every converter, so it counts no MACs (its parameters are still counted).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devices.tf_env import keras


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    params: int
    macs: int


def _spatial(shape: Any) -> int:
    return int(math.prod(int(d) for d in shape[1:-1]))


def _conv_macs(layer: Any) -> int:
    # The kernel's input axis is already per group, so grouped convs come out right.
    kernel_h, kernel_w, in_channels, out_channels = layer.kernel.shape
    per_output = int(kernel_h) * int(kernel_w) * int(in_channels)
    return _spatial(layer.output.shape) * int(out_channels) * per_output


def _depthwise_macs(layer: Any) -> int:
    kernel_h, kernel_w, _, _ = layer.depthwise_kernel.shape
    output_elements = _spatial(layer.output.shape) * int(layer.output.shape[-1])
    return output_elements * int(kernel_h) * int(kernel_w)


def _dense_macs(layer: Any) -> int:
    in_features, out_features = layer.kernel.shape
    rows = int(math.prod(int(d) for d in layer.output.shape[1:-1])) or 1
    return rows * int(in_features) * int(out_features)


def _pool_macs(layer: Any) -> int:
    pool_h, pool_w = layer.pool_size
    return int(math.prod(int(d) for d in layer.output.shape[1:])) * int(pool_h) * int(pool_w)


def _global_pool_macs(layer: Any) -> int:
    return int(math.prod(int(d) for d in layer.input.shape[1:]))


def _add_macs(layer: Any) -> int:
    inputs = layer.input if isinstance(layer.input, list) else [layer.input]
    return int(math.prod(int(d) for d in layer.output.shape[1:])) * (len(inputs) - 1)


MAC_COUNTERS: dict[type, Callable[[Any], int]] = {
    keras.layers.DepthwiseConv2D: _depthwise_macs,  # before Conv2D: it subclasses it
    keras.layers.Conv2D: _conv_macs,
    keras.layers.Dense: _dense_macs,
    keras.layers.MaxPooling2D: _pool_macs,
    keras.layers.AveragePooling2D: _pool_macs,
    keras.layers.GlobalAveragePooling2D: _global_pool_macs,
    keras.layers.GlobalMaxPooling2D: _global_pool_macs,
    keras.layers.Add: _add_macs,
}


def _layer_macs(layer: Any) -> int:
    for layer_type, counter in MAC_COUNTERS.items():
        if isinstance(layer, layer_type):
            return counter(layer)
    return 0


def layer_costs(model: Any) -> list[LayerCost]:
    return [
        LayerCost(layer.name, type(layer).__name__, int(layer.count_params()), _layer_macs(layer))
        for layer in model.layers
    ]


def count_params(model: Any) -> int:
    return int(model.count_params())


def count_macs(model: Any, *, compute_only: bool = True) -> int:
    """Total MACs; `compute_only` keeps Conv/Depthwise/Dense, the usual headline number."""
    compute_kinds = {"Conv2D", "DepthwiseConv2D", "Dense"}
    return sum(
        cost.macs for cost in layer_costs(model)
        if not compute_only or cost.kind in compute_kinds
    )
