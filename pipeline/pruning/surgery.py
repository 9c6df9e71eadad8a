"""Model surgery: rebuild a model with fewer channels and copy the kept weights.

The new model comes from the original's config with smaller `filters`/`units`, so it is
the same architecture (same layer names, same graph), only narrower; weights are sliced
per layer type by `WEIGHT_SLICERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from devices.errors import PruningError
from devices.tf_env import keras
from pipeline.pruning.graph import DependencyGraph

Index = np.ndarray | None  # None = keep every channel
WeightSlicer = Callable[[list[np.ndarray], Index, Index], list[np.ndarray]]


def _take(array: np.ndarray, index: Index, axis: int) -> np.ndarray:
    return array if index is None else np.take(array, index, axis=axis)


def _slice_conv(weights: list[np.ndarray], rows: Index, keep: Index) -> list[np.ndarray]:
    kernel = _take(_take(weights[0], rows, axis=2), keep, axis=3)
    return [kernel, *(_take(bias, keep, axis=0) for bias in weights[1:])]


def _slice_dense(weights: list[np.ndarray], rows: Index, keep: Index) -> list[np.ndarray]:
    kernel = _take(_take(weights[0], rows, axis=0), keep, axis=1)
    return [kernel, *(_take(bias, keep, axis=0) for bias in weights[1:])]


def _slice_depthwise(weights: list[np.ndarray], rows: Index, keep: Index) -> list[np.ndarray]:
    kernel = _take(weights[0], keep, axis=2)
    return [kernel, *(_take(bias, keep, axis=0) for bias in weights[1:])]


def _slice_per_channel(weights: list[np.ndarray], rows: Index, keep: Index) -> list[np.ndarray]:
    return [_take(weight, keep, axis=0) for weight in weights]


# First match wins (isinstance); tf_keras' DepthwiseConv2D is not a Conv2D subclass.
WEIGHT_SLICERS: dict[type, WeightSlicer] = {
    keras.layers.DepthwiseConv2D: _slice_depthwise,
    keras.layers.Conv2D: _slice_conv,
    keras.layers.Dense: _slice_dense,
    keras.layers.BatchNormalization: _slice_per_channel,
}

WIDTH_KEYS: dict[type, str] = {keras.layers.Conv2D: "filters", keras.layers.Dense: "units"}


def _slicer_for(layer: Any) -> WeightSlicer | None:
    for layer_type, slicer in WEIGHT_SLICERS.items():
        if isinstance(layer, layer_type):
            return slicer
    return None


def input_rows(keep: np.ndarray, channels: int, spatial_repeat: int) -> np.ndarray:
    """Input columns of the kept channels; after Flatten column = position * C + channel."""
    positions = np.arange(spatial_repeat)[:, None] * channels
    return (positions + keep[None, :]).reshape(-1)


def _layer_configs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {layer_config["config"]["name"]: layer_config["config"]
            for layer_config in config["layers"]}


def _narrowed_config(model: Any, graph: DependencyGraph, keep: Mapping[int, np.ndarray]) -> Any:
    config = model.get_config()
    configs = _layer_configs(config)
    for group_index, kept in keep.items():
        for producer in graph.groups[group_index].producers:
            layer = model.get_layer(producer)
            key = next(k for t, k in WIDTH_KEYS.items() if isinstance(layer, t))
            configs[producer][key] = int(len(kept))
    return config


def _validate_keep(graph: DependencyGraph, keep: Mapping[int, np.ndarray]) -> None:
    for group_index, kept in keep.items():
        group = graph.groups[group_index]
        if not group.prunable:
            raise PruningError(
                f"channel group {group_index} ({', '.join(group.producers) or 'no producer'}) "
                f"cannot be pruned: it {group.reason} (hint: prune only prunable groups)"
            )
        if len(kept) == 0 or len(np.unique(kept)) != len(kept) or kept.min() < 0 \
                or kept.max() >= group.channels:
            raise PruningError(
                f"channel group {group_index} ({', '.join(group.producers)}): kept channels "
                f"{kept.tolist()} are not distinct indices in 0..{group.channels - 1} "
                "(hint: keep at least one channel)"
            )


def apply_keep(model: Any, graph: DependencyGraph, keep: Mapping[int, np.ndarray]) -> Any:
    """A new model keeping, for each group index in `keep`, only the listed channels."""
    keep = {index: np.sort(np.asarray(kept, dtype=np.int64)) for index, kept in keep.items()}
    _validate_keep(graph, keep)
    config = _narrowed_config(model, graph, keep)
    try:
        pruned = model.__class__.from_config(config)
    except (TypeError, ValueError) as exc:
        raise PruningError(
            f"could not rebuild model {model.name!r} with fewer channels: {exc} "
            "(hint: custom layers must be registered as serialisable)"
        ) from exc
    for layer in model.layers:
        new_layer = pruned.get_layer(layer.name)
        weights = layer.get_weights()
        if not weights:
            continue
        slicer = _slicer_for(layer)
        if slicer is None:
            new_layer.set_weights(weights)
            continue
        new_layer.set_weights(slicer(weights, _rows_of(layer.name, graph, keep),
                                     _kept_of(layer.name, graph, keep)))
    return pruned


def _rows_of(layer_name: str, graph: DependencyGraph, keep: Mapping[int, np.ndarray]) -> Index:
    if layer_name not in graph.input_groups:
        return None
    group_index, spatial_repeat = graph.input_groups[layer_name]
    if group_index not in keep:
        return None
    return input_rows(keep[group_index], graph.groups[group_index].channels, spatial_repeat)


def _kept_of(layer_name: str, graph: DependencyGraph, keep: Mapping[int, np.ndarray]) -> Index:
    group_index = graph.output_groups.get(layer_name)
    return keep.get(group_index) if group_index is not None else None
