"""Channel dependency groups of a tf_keras Sequential or Functional model.

A *group* is a set of channels that must be removed together: the filters of the
Conv2D/Dense layers that produce them (several producers when an `Add` joins branches),
the channel-wise layers that carry them (BatchNorm, DepthwiseConv2D, ReLU, pooling, ...)
and the input channels of the layers that read them (the next Conv2D, or the next Dense
through Flatten/GlobalAveragePooling). Each layer type has a rule in `LAYER_RULES`; a layer
without one makes the analysis refuse, naming the layer and its type, so nothing is ever
pruned silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devices.errors import PruningError
from devices.tf_env import keras

INPUT_ORIGIN = "<model input>"


@dataclass(frozen=True)
class TensorState:
    """Which channel space a tensor carries; `spatial_repeat` > 1 after Flatten, where
    column = position * channels + channel (channels-last flattening)."""

    space: int
    spatial_repeat: int = 1

    @property
    def flattened(self) -> bool:
        return self.spatial_repeat > 1


@dataclass(frozen=True)
class Consumer:
    layer: str
    spatial_repeat: int = 1  # Dense after Flatten reads `spatial_repeat` columns per channel


@dataclass(frozen=True)
class ChannelGroup:
    index: int
    channels: int
    producers: tuple[str, ...]
    members: tuple[str, ...]
    consumers: tuple[Consumer, ...]
    prunable: bool
    reason: str = ""  # why the group is fixed, when it is

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "channels": self.channels,
            "producers": list(self.producers),
            "members": list(self.members),
            "consumers": [c.layer for c in self.consumers],
            "prunable": self.prunable,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class DependencyGraph:
    groups: tuple[ChannelGroup, ...]
    input_groups: dict[str, tuple[int, int]]  # layer -> (group, spatial_repeat) it reads
    output_groups: dict[str, int]  # layer -> group its output carries

    def prunable_groups(self) -> tuple[ChannelGroup, ...]:
        return tuple(group for group in self.groups if group.prunable)

    def group_of_producer(self, layer_name: str) -> ChannelGroup:
        return self.groups[self.output_groups[layer_name]]


@dataclass
class _Space:
    origin: str  # producer layer name, or INPUT_ORIGIN
    channels: int


@dataclass
class _Analysis:
    """Mutable scratch state while walking the layers; frozen into a DependencyGraph."""

    spaces: list[_Space] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)
    members: dict[int, list[str]] = field(default_factory=dict)
    consumers: dict[int, list[Consumer]] = field(default_factory=dict)
    input_groups: dict[str, tuple[int, int]] = field(default_factory=dict)
    output_spaces: dict[str, int] = field(default_factory=dict)

    def new_space(self, origin: str, channels: int) -> int:
        self.spaces.append(_Space(origin, channels))
        self.parent.append(len(self.parent))
        return len(self.spaces) - 1

    def find(self, space: int) -> int:
        while self.parent[space] != space:
            self.parent[space] = self.parent[self.parent[space]]
            space = self.parent[space]
        return space

    def union(self, first: int, second: int) -> int:
        root_first, root_second = self.find(first), self.find(second)
        self.parent[max(root_first, root_second)] = min(root_first, root_second)
        return min(root_first, root_second)

    def add_member(self, space: int, layer_name: str) -> None:
        self.members.setdefault(space, []).append(layer_name)

    def add_consumer(self, state: TensorState, layer_name: str) -> None:
        self.consumers.setdefault(state.space, []).append(
            Consumer(layer_name, state.spatial_repeat)
        )
        self.input_groups[layer_name] = (state.space, state.spatial_repeat)


LayerRule = Callable[[Any, list[TensorState], _Analysis], TensorState]


def _refuse(layer: Any, why: str, hint: str) -> PruningError:
    return PruningError(
        f"cannot prune through layer {layer.name!r} ({type(layer).__name__}): {why} "
        f"(hint: {hint})"
    )


def _single(layer: Any, states: list[TensorState]) -> TensorState:
    if len(states) != 1:
        raise _refuse(layer, f"expected one input, got {len(states)}", "use a single-input layer")
    return states[0]


def _producer(layer: Any, states: list[TensorState], analysis: _Analysis) -> TensorState:
    """Conv2D / Dense: reads its input channels, creates a new channel space."""
    state = _single(layer, states)
    if int(getattr(layer, "groups", 1)) != 1:
        raise _refuse(layer, f"grouped convolution (groups={layer.groups})", "use groups=1")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise _refuse(layer, "channels_first data format", "build the model channels_last")
    analysis.add_consumer(state, layer.name)
    space = analysis.new_space(layer.name, int(layer.output.shape[-1]))
    analysis.add_member(space, layer.name)
    return TensorState(space)


def _channelwise(layer: Any, states: list[TensorState], analysis: _Analysis) -> TensorState:
    """Layers that keep channel identity (activations, pooling, dropout, padding)."""
    state = _single(layer, states)
    analysis.add_member(state.space, layer.name)
    return state


def _per_channel_weights(layer: Any, states: list[TensorState], analysis: _Analysis) -> TensorState:
    """Channel-wise layers with one weight per channel: sliced with their group."""
    state = _single(layer, states)
    if state.flattened:
        raise _refuse(layer, "per-channel weights after Flatten", "put it before Flatten")
    return _channelwise(layer, states, analysis)


def _batch_norm(layer: Any, states: list[TensorState], analysis: _Analysis) -> TensorState:
    axes = [int(a) for a in (layer.axis if isinstance(layer.axis, list | tuple) else [layer.axis])]
    rank = len(layer.input.shape)
    if [a % rank for a in axes] != [rank - 1]:
        raise _refuse(layer, f"normalises axis {axes}, not the channel axis", "use axis=-1")
    return _per_channel_weights(layer, states, analysis)


def _depthwise(layer: Any, states: list[TensorState], analysis: _Analysis) -> TensorState:
    if int(layer.depth_multiplier) != 1:
        raise _refuse(
            layer, f"depth_multiplier={layer.depth_multiplier} multiplies channels",
            "use depth_multiplier=1",
        )
    if layer.data_format != "channels_last":
        raise _refuse(layer, "channels_first data format", "build the model channels_last")
    return _per_channel_weights(layer, states, analysis)


def _flatten(layer: Any, states: list[TensorState], analysis: _Analysis) -> TensorState:
    state = _single(layer, states)
    if layer.data_format != "channels_last":
        raise _refuse(layer, "channels_first data format", "build the model channels_last")
    analysis.add_member(state.space, layer.name)
    positions = 1
    for dimension in layer.input.shape[1:-1]:
        positions *= int(dimension)
    return TensorState(state.space, state.spatial_repeat * positions)


def _global_pool(layer: Any, states: list[TensorState], analysis: _Analysis) -> TensorState:
    if layer.data_format != "channels_last":
        raise _refuse(layer, "channels_first data format", "build the model channels_last")
    return _channelwise(layer, states, analysis)


def _merge(layer: Any, states: list[TensorState], analysis: _Analysis) -> TensorState:
    """Element-wise merges (Add, ...): every branch shares one channel group."""
    repeats = {state.spatial_repeat for state in states}
    if len(repeats) != 1:
        raise _refuse(layer, "merges flattened and unflattened branches", "merge before Flatten")
    space = states[0].space
    for state in states[1:]:
        space = analysis.union(space, state.space)
    analysis.add_member(space, layer.name)
    return TensorState(space, repeats.pop())


# Looked up by exact type: a subclass (Conv2DTranspose is a Conv2D with a transposed
# kernel) may lay out its weights differently, so it is refused until it has its own rule.
LAYER_RULES: dict[type, LayerRule] = {
    keras.layers.DepthwiseConv2D: _depthwise,
    keras.layers.Conv2D: _producer,
    keras.layers.Dense: _producer,
    keras.layers.BatchNormalization: _batch_norm,
    keras.layers.ReLU: _channelwise,
    keras.layers.LeakyReLU: _channelwise,
    keras.layers.ELU: _channelwise,
    keras.layers.Activation: _channelwise,  # softmax groups are fixed, see _fixed_reasons
    keras.layers.Dropout: _channelwise,
    keras.layers.MaxPooling2D: _channelwise,
    keras.layers.AveragePooling2D: _channelwise,
    keras.layers.ZeroPadding2D: _channelwise,
    keras.layers.GlobalAveragePooling2D: _global_pool,
    keras.layers.GlobalMaxPooling2D: _global_pool,
    keras.layers.Flatten: _flatten,
    keras.layers.Add: _merge,
    keras.layers.Maximum: _merge,
    keras.layers.Average: _merge,
}

PRODUCER_TYPES = (keras.layers.Conv2D, keras.layers.Dense)


def _rule_for(layer: Any) -> LayerRule:
    rule = LAYER_RULES.get(type(layer))
    if rule is not None:
        return rule
    supported = ", ".join(sorted(t.__name__ for t in LAYER_RULES))
    raise PruningError(
        f"cannot prune through layer {layer.name!r} ({type(layer).__name__}): no channel rule "
        f"for this layer type; supported: {supported} (hint: prune.method = \"magnitude\" "
        "works on any model, or add a rule to pipeline/pruning/graph.py LAYER_RULES)"
    )


def _tensor_key(tensor: Any) -> tuple[str, int, int]:
    history = tensor._keras_history
    return (history.layer.name, int(history.node_index), int(history.tensor_index))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _walk(model: Any, analysis: _Analysis) -> dict[tuple[str, int, int], TensorState]:
    states: dict[tuple[str, int, int], TensorState] = {}
    for tensor in model.inputs:
        states[_tensor_key(tensor)] = TensorState(
            analysis.new_space(INPUT_ORIGIN, int(tensor.shape[-1]))
        )
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if len(layer._inbound_nodes) != 1:
            raise _refuse(
                layer, f"used {len(layer._inbound_nodes)} times (shared layer)",
                "give each call its own layer",
            )
        rule = _rule_for(layer)
        inputs = [states[_tensor_key(t)] for t in _as_list(layer.input)]
        outputs = _as_list(layer.output)
        if len(outputs) != 1:
            raise _refuse(layer, f"{len(outputs)} outputs", "use single-output layers")
        state = rule(layer, inputs, analysis)
        states[_tensor_key(outputs[0])] = state
        analysis.output_spaces[layer.name] = state.space
    return states


def analyse(model: Any) -> DependencyGraph:
    """Group the model's channels; refuse models with a layer no rule covers."""
    if not getattr(model, "_is_graph_network", False) or not model.built:
        raise PruningError(
            f"model {getattr(model, 'name', model)!r} ({type(model).__name__}) is not a built "
            "Sequential/Functional model (hint: build it on an input shape; subclassed models "
            "cannot be pruned by surgery)"
        )
    analysis = _Analysis()
    states = _walk(model, analysis)
    fixed_reasons = _fixed_reasons(model, analysis, states)
    return _freeze(model, analysis, fixed_reasons)


def _fixed_reasons(
    model: Any, analysis: _Analysis, states: dict[tuple[str, int, int], TensorState]
) -> dict[int, str]:
    reasons: dict[int, str] = {}
    for space, info in enumerate(analysis.spaces):
        if info.origin == INPUT_ORIGIN:
            reasons.setdefault(analysis.find(space), "carries the model's input channels")
    for tensor in model.outputs:
        root = analysis.find(states[_tensor_key(tensor)].space)
        reasons.setdefault(root, "reaches the model's output")
    by_name = {layer.name: layer for layer in model.layers}
    for space, names in analysis.members.items():
        for name in names:
            if _mixes_channels(by_name[name]):
                reasons.setdefault(analysis.find(space), f"{name} applies softmax across channels")
    return reasons


def _mixes_channels(layer: Any) -> bool:
    """A softmax activation couples every channel of its group, so the group stays whole."""
    return getattr(getattr(layer, "activation", None), "__name__", "") == "softmax"


def _freeze(model: Any, analysis: _Analysis, fixed_reasons: dict[int, str]) -> DependencyGraph:
    roots = sorted({analysis.find(space) for space in range(len(analysis.spaces))})
    group_of_root = {root: index for index, root in enumerate(roots)}
    order = {layer.name: position for position, layer in enumerate(model.layers)}
    by_name = {layer.name: layer for layer in model.layers}
    members: dict[int, list[str]] = {root: [] for root in roots}
    consumers: dict[int, list[Consumer]] = {root: [] for root in roots}
    for space, names in analysis.members.items():
        members[analysis.find(space)].extend(names)
    for space, readers in analysis.consumers.items():
        consumers[analysis.find(space)].extend(readers)
    groups = []
    for root in roots:
        names = sorted(set(members[root]), key=order.__getitem__)
        producers = tuple(n for n in names if isinstance(by_name[n], PRODUCER_TYPES))
        carried = tuple(n for n in names if n not in producers)
        reason = fixed_reasons.get(root, "")
        groups.append(ChannelGroup(
            index=group_of_root[root],
            channels=analysis.spaces[root].channels,
            producers=producers,
            members=carried,
            consumers=tuple(sorted(consumers[root], key=lambda c: order[c.layer])),
            prunable=not reason and bool(producers),
            reason=reason,
        ))
    input_groups = {
        name: (group_of_root[analysis.find(space)], repeat)
        for name, (space, repeat) in analysis.input_groups.items()
    }
    output_groups = {
        name: group_of_root[analysis.find(space)]
        for name, space in analysis.output_spaces.items()
    }
    return DependencyGraph(tuple(groups), input_groups, output_groups)
