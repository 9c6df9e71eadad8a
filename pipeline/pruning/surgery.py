"""Model surgery: rebuild a model with fewer channels and copy the kept weights.

The new model comes from the original's config, each layer's entry narrowed by its rule
(`filters`, `units`, a Reshape's target, per-channel constants), so it is the same
architecture (same layer names, same graph), only narrower; each layer's weights are sliced
by its rule at the kept positions of its input and output channel axes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from devices.errors import PruningError
from devices.tf_env import keras
from pipeline.pruning.graph import DependencyGraph, leaf_layers
from pipeline.pruning.layer_rules import rule_for
from pipeline.pruning.layouts import Positions, kept_positions
from pipeline.pruning.refusal import refuse

Keep = Mapping[int, np.ndarray]  # group index -> sorted kept channels


def _layer_types(model: Any) -> dict[str, type]:
    """Every layer class in the model (nested ones too), so that a rebuild finds custom
    layers without the user registering them as serialisable."""
    found: dict[str, type] = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        found.setdefault(type(layer).__name__, type(layer))
    return found


def layer_configs(config: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Each layer's config by the graph's name for it ('outer/inner' inside a nested model),
    without the `build_config` that would build it at its shapes from before pruning (the
    graph's own calls build it)."""
    found: dict[str, dict[str, Any]] = {}
    for entry in config["layers"]:
        entry.pop("build_config", None)
        inner = entry["config"]
        found[f"{prefix}{inner['name']}"] = inner
        if isinstance(inner.get("layers"), list):
            found.update(layer_configs(inner, f"{prefix}{inner['name']}/"))
    return found


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()).split(" Example:")[0]


def model_config(model: Any) -> dict[str, Any]:
    """The model's config, or a refusal naming the layer whose config Keras cannot write."""
    try:
        return model.get_config()
    except (NotImplementedError, TypeError, ValueError) as exc:
        for layer in leaf_layers(model).values():
            try:
                layer.get_config()
            except (NotImplementedError, TypeError, ValueError) as layer_exc:
                raise refuse(layer, f"Keras cannot write its config to rebuild it narrower "
                             f"({_one_line(layer_exc)})", "give the layer a get_config that "
                             "returns its constructor's arguments") from exc
        raise PruningError(f"could not read model {model.name!r}'s config: {_one_line(exc)} "
                           "(hint: every custom layer needs a complete get_config)") from exc


def rebuild(model: Any, config: dict[str, Any]) -> Any:
    """The model `config` describes (its layer configs as `layer_configs` left them)."""
    layer_configs(config)
    try:
        with keras.utils.custom_object_scope(_layer_types(model)):
            return model.__class__.from_config(config)
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise PruningError(
            f"could not rebuild model {model.name!r} from its config: {exc} (hint: every "
            "custom layer needs a get_config that returns its constructor's arguments)"
        ) from exc


def _validate_keep(graph: DependencyGraph, keep: Keep) -> None:
    for group_index, kept in keep.items():
        group = graph.groups[group_index]
        if not group.prunable:
            raise PruningError(
                f"channel group {group_index} ({', '.join(group.producers) or 'no producer'}) "
                f"cannot be pruned: {group.reason or 'nothing produces it'} "
                "(hint: prune only prunable groups)"
            )
        if len(kept) == 0 or len(np.unique(kept)) != len(kept) or kept.min() < 0 \
                or kept.max() >= group.channels:
            raise PruningError(
                f"channel group {group_index} ({', '.join(group.producers)}): kept channels "
                f"{kept.tolist()} are not distinct indices in 0..{group.channels - 1} "
                "(hint: keep at least one channel)"
            )
        per_block = np.bincount(kept // (group.channels // group.blocks), minlength=group.blocks)
        if group.blocks > 1 and len(set(per_block.tolist())) != 1:
            raise PruningError(
                f"channel group {group_index} ({', '.join(group.producers)}): grouped "
                f"convolution needs the same count kept in each of its {group.blocks} runs, "
                f"got {per_block.tolist()} (hint: select channels with select_channels)"
            )


def _positions(graph: DependencyGraph, name: str,
               keep: Keep) -> tuple[tuple[Positions, ...], Positions]:
    inputs = tuple(kept_positions(layout, keep) for layout in graph.layer_inputs[name])
    return inputs, kept_positions(graph.layer_outputs[name], keep)


def apply_keep(model: Any, graph: DependencyGraph, keep: Keep) -> Any:
    """A new model keeping, for each group index in `keep`, only the listed channels."""
    keep = {index: np.sort(np.asarray(kept, dtype=np.int64)) for index, kept in keep.items()}
    _validate_keep(graph, keep)
    config = model_config(model)
    configs = layer_configs(config)
    layers = leaf_layers(model)
    changed: dict[str, tuple[tuple[Positions, ...], Positions]] = {}
    for name in graph.layer_outputs:
        inputs, output = _positions(graph, name, keep)
        if output is not None or any(positions is not None for positions in inputs):
            changed[name] = (inputs, output)
            rule_for(layers[name]).narrow(layers[name], configs[name], inputs, output)
    pruned = rebuild(model, config)
    new_layers = leaf_layers(pruned)
    for name in graph.layer_outputs:
        weights = layers[name].get_weights()
        if not weights:
            continue
        if name in changed:
            weights = rule_for(layers[name]).slice_weights(layers[name], weights, *changed[name])
        new_layers[name].set_weights(weights)
    return pruned
