"""Per-layer parameter and MAC counts for one inference (batch of 1).

MACs count multiply-accumulates of convolutions (plain, grouped, depthwise, separable,
transposed; 1-D to 3-D) and Dense; pooling counts one operation per input element read per
window and Add one per output element per extra input, so the table shows where the work
is. A nested model's layers are counted one by one ('outer/inner'). BatchNorm is folded
into the preceding conv by every converter, so it counts no MACs (its parameters are still
counted).
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
    kernel = [int(d) for d in layer.kernel.shape]  # (..., in / groups, out)
    return _spatial(layer.output.shape) * kernel[-1] * math.prod(kernel[:-1])


def _transposed_conv_macs(layer: Any) -> int:
    # Every input position scatters its channels through the whole kernel (..., out, in).
    kernel = [int(d) for d in layer.kernel.shape]
    return _spatial(layer.input.shape) * math.prod(kernel)


def _depthwise_macs(layer: Any) -> int:
    window = math.prod(int(d) for d in layer.depthwise_kernel.shape[:-2])
    output_elements = _spatial(layer.output.shape) * int(layer.output.shape[-1])
    return output_elements * window


def _separable_macs(layer: Any) -> int:
    """The depthwise step (in x multiplier channels) at the output's positions (its strides
    are the layer's), then the pointwise 1x1."""
    depthwise = [int(d) for d in layer.depthwise_kernel.shape]  # (..., in, multiplier)
    pointwise_rows, outputs = (int(d) for d in layer.pointwise_kernel.shape[-2:])
    positions = _spatial(layer.output.shape)
    return positions * math.prod(depthwise) + positions * pointwise_rows * outputs


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


L = keras.layers
# The layers whose multiply-accumulates are the headline number (count_macs' compute_only).
COMPUTE_COUNTERS: dict[type, Callable[[Any], int]] = {
    **dict.fromkeys((L.Conv1D, L.Conv2D, L.Conv3D), _conv_macs),
    **dict.fromkeys((L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose),
                    _transposed_conv_macs),
    **dict.fromkeys((L.DepthwiseConv1D, L.DepthwiseConv2D), _depthwise_macs),
    **dict.fromkeys((L.SeparableConv1D, L.SeparableConv2D), _separable_macs),
    L.Dense: _dense_macs,
}
# Looked up by exact type: Conv2DTranspose subclasses Conv2D but costs otherwise.
MAC_COUNTERS: dict[type, Callable[[Any], int]] = {
    **COMPUTE_COUNTERS,
    L.MaxPooling2D: _pool_macs,
    L.AveragePooling2D: _pool_macs,
    L.GlobalAveragePooling2D: _global_pool_macs,
    L.GlobalMaxPooling2D: _global_pool_macs,
    L.Add: _add_macs,
}
COMPUTE_KINDS = frozenset(layer_type.__name__ for layer_type in COMPUTE_COUNTERS)


def _layer_macs(layer: Any) -> int:
    counter = MAC_COUNTERS.get(type(layer))
    return counter(layer) if counter is not None else 0


def layer_costs(model: Any, prefix: str = "") -> list[LayerCost]:
    costs = []
    for layer in model.layers:
        if getattr(layer, "_is_graph_network", False):  # a nested model: its own layers
            costs.extend(layer_costs(layer, f"{prefix}{layer.name}/"))
        else:
            costs.append(LayerCost(f"{prefix}{layer.name}", type(layer).__name__,
                                   int(layer.count_params()), _layer_macs(layer)))
    return costs


def count_params(model: Any) -> int:
    return int(model.count_params())


def count_macs(model: Any, *, compute_only: bool = True) -> int:
    """Total MACs; `compute_only` keeps convolutions and Dense, the usual headline number."""
    return sum(
        cost.macs for cost in layer_costs(model)
        if not compute_only or cost.kind in COMPUTE_KINDS
    )
