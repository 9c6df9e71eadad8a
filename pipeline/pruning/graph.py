"""Channel dependency groups of a tf_keras Sequential or Functional model.

A *group* is a set of channels that must be removed together: the filters of the layers that
produce them (several producers when an `Add` or a squeeze-and-excitation `Multiply` joins
branches), the layers that carry them (BatchNorm, depthwise convs, activations, pooling,
...), and the input channels of the layers that read them (the next conv, or a Dense after
Flatten). A tensor's channel axis is a Layout (layouts.py): one group's channels, or after a
Concatenate several groups side by side. Each layer type has one rule in
`layer_rules.LAYER_RULES`; a layer without one makes the analysis refuse, naming the layer
and its type, so nothing is ever pruned silently wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devices.errors import PruningError
from devices.tf_env import keras, tf
from pipeline.pruning.layer_call import LayerCall
from pipeline.pruning.layer_rules import rule_for
from pipeline.pruning.layouts import Layout, Segment
from pipeline.pruning.refusal import refuse
from pipeline.pruning.spaces import ChannelSpaces

INPUT_ORIGIN = "<model input>"
INPUT_REASON = "carries the model's input channels"
OUTPUT_REASON = "reaches the model's output"


@dataclass(frozen=True)
class Consumer:
    layer: str
    spatial_repeat: int = 1  # Dense after Flatten reads `spatial_repeat` columns per channel


@dataclass(frozen=True)
class ChannelGroup:
    index: int
    channels: int
    producers: tuple[str, ...]
    members: tuple[str, ...]  # layers whose output carries these channels
    consumers: tuple[Consumer, ...]  # layers whose weights read them
    prunable: bool
    reason: str = ""  # why the group is fixed, when it is
    blocks: int = 1  # keep the same number of channels in each of `blocks` equal runs

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "channels": self.channels,
            "producers": list(self.producers),
            "members": list(self.members),
            "consumers": [c.layer for c in self.consumers],
            "prunable": self.prunable,
            "reason": self.reason,
            "blocks": self.blocks,
        }


@dataclass(frozen=True)
class DependencyGraph:
    groups: tuple[ChannelGroup, ...]
    # by layer name; a nested model's layers as 'outer/inner' (graph.leaf_layers finds them)
    layer_inputs: dict[str, tuple[Layout, ...]]  # layer -> the layouts it reads
    layer_outputs: dict[str, Layout]  # layer -> the layout of its output, in graph order

    def prunable_groups(self) -> tuple[ChannelGroup, ...]:
        return tuple(group for group in self.groups if group.prunable)

    def group_of_producer(self, layer_name: str) -> ChannelGroup:
        return self.groups[self.layer_outputs[layer_name].segments[0].group]

    def groups_read_by(self, layer_name: str) -> tuple[ChannelGroup, ...]:
        """The groups whose channels the layer's inputs carry, in order."""
        return tuple(self.groups[group] for layout in self.layer_inputs[layer_name]
                     for group in layout.groups())

    def fixed_groups(self) -> tuple[ChannelGroup, ...]:
        """Groups that have producers but must stay whole, each with its reason."""
        return tuple(group for group in self.groups if group.producers and not group.prunable)


def _tensor_key(tensor: Any) -> tuple[str, int, int]:
    history = tensor._keras_history
    return (history.layer.name, int(history.node_index), int(history.tensor_index))


def _shape(tensor: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in tensor.shape)


def _is_graph_model(layer: Any) -> bool:
    return bool(getattr(layer, "_is_graph_network", False))


def leaf_layers(model: Any, prefix: str = "") -> dict[str, Any]:
    """Every layer by the name the graph uses: a nested model's layers as 'outer/inner'
    (its input layers too), the nested model itself not."""
    found: dict[str, Any] = {}
    for layer in (*model._input_layers, *model.layers):
        if _is_graph_model(layer):
            found.update(leaf_layers(layer, f"{prefix}{layer.name}/"))
        else:
            found.setdefault(f"{prefix}{layer.name}", layer)
    return found


def _call_of(model: Any, layer: Any, name: str) -> tuple[LayerCall, list[Any], list[Any]]:
    """The layer's one call in this model (a nested model's `layer.input` is its own)."""
    nodes = [node for index, node in enumerate(layer._inbound_nodes)
             if f"{layer.name}_ib-{index}" in model._network_nodes]
    if len(nodes) != 1:
        raise refuse(layer, f"used {len(nodes)} times (shared layer)",
                     "give each call its own layer")
    node = nodes[0]
    inputs, outputs = list(node.keras_inputs), tf.nest.flatten(node.outputs)
    if len(outputs) != 1:
        raise refuse(layer, f"{len(outputs)} outputs", "use single-output layers")
    call = LayerCall(name, layer, tuple(_shape(t) for t in inputs), _shape(outputs[0]),
                     tuple(node.call_args), dict(node.call_kwargs))
    return call, inputs, outputs


@dataclass
class _Walk:
    spaces: ChannelSpaces
    layer_inputs: dict[str, tuple[Layout, ...]]
    layer_outputs: dict[str, Layout]  # in graph order

    def record(self, name: str, read: tuple[Layout, ...], output: Layout) -> None:
        self.layer_inputs[name] = read
        self.layer_outputs[name] = output


def _walk(model: Any, walk: _Walk, inputs: list[Layout], prefix: str) -> list[Layout]:
    """Map channels through `model` given its inputs' layouts; returns its outputs'. A
    nested model is walked into, so its layers are pruned like any other."""
    spaces = walk.spaces
    layouts: dict[tuple[str, int, int], Layout] = {}
    for tensor, input_layer, layout in zip(model.inputs, model._input_layers, inputs,
                                           strict=True):
        layouts[_tensor_key(tensor)] = layout
        if prefix:  # a nested model's input shape follows what feeds it
            walk.record(f"{prefix}{input_layer.name}", (layout,), layout)
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        rule, name = rule_for(layer), f"{prefix}{layer.name}"
        call, tensors, outputs = _call_of(model, layer, name)
        read = [spaces.expand(layouts[_tensor_key(tensor)]) for tensor in tensors]
        if rule.walks_into and _is_graph_model(layer):
            layout = _walk(layer, walk, read, f"{prefix}{layer.name}/")[0]
        else:
            layout = rule.maps_channels(call, read, spaces)
            walk.record(name, tuple(read), layout)
        layouts[_tensor_key(outputs[0])] = layout
    return [layouts[_tensor_key(tensor)] for tensor in model.outputs]


def analyse(model: Any) -> DependencyGraph:
    """Group the model's channels; refuse models with a layer no rule covers."""
    if not _is_graph_model(model) or not model.built:
        raise PruningError(
            f"model {getattr(model, 'name', model)!r} ({type(model).__name__}) is not a built "
            "Sequential/Functional model (hint: build it on an input shape; subclassed models "
            "cannot be pruned by surgery)"
        )
    walk = _Walk(ChannelSpaces(), {}, {})
    inputs = []
    for tensor in model.inputs:
        layout = walk.spaces.open(INPUT_ORIGIN, int(tensor.shape[-1]), produced=False)
        walk.spaces.fix(layout, INPUT_REASON)
        inputs.append(layout)
    for layout in _walk(model, walk, inputs, ""):
        walk.spaces.fix(layout, OUTPUT_REASON)
    return _freeze(walk.spaces, walk.layer_inputs, walk.layer_outputs)


def _regrouped(layout: Layout, group_of: dict[int, int], spaces: ChannelSpaces) -> Layout:
    expanded = spaces.expand(layout)
    return Layout(tuple(Segment(group_of[s.group], s.channels) for s in expanded.segments),
                  expanded.spatial_repeat)


def _block_reason(channels: int, blocks: int) -> str:
    if channels % blocks:
        return f"its {channels} channels do not split into {blocks} equal grouped-conv runs"
    if blocks == channels:
        return f"each of its {blocks} grouped-conv runs holds a single channel"
    return ""


def _freeze(spaces: ChannelSpaces, layer_inputs: dict[str, tuple[Layout, ...]],
            layer_outputs: dict[str, Layout]) -> DependencyGraph:
    leaves = sorted({leaf for space in range(len(spaces.origins)) for leaf in spaces.leaves(space)})
    group_of = {leaf: index for index, leaf in enumerate(leaves)}
    order = {name: position for position, name in enumerate(layer_outputs)}
    blocks, broken = spaces.block_counts()
    reasons: dict[int, str] = {}
    for space, reason in [*spaces.reasons, *broken]:
        for leaf in spaces.leaves(space):
            reasons.setdefault(leaf, reason)
    producers: dict[int, list[str]] = {leaf: [] for leaf in leaves}
    for space, origin in enumerate(spaces.origins):
        if spaces.produced[space]:
            for leaf in spaces.leaves(space):
                producers[leaf].append(origin)
    inputs = {name: tuple(_regrouped(layout, group_of, spaces) for layout in read)
              for name, read in layer_inputs.items()}
    outputs = {name: _regrouped(layout, group_of, spaces)
               for name, layout in layer_outputs.items()}
    members: dict[int, list[str]] = {index: [] for index in range(len(leaves))}
    for name, layout in outputs.items():
        for group in layout.groups():
            if name not in producers[leaves[group]]:
                members[group].append(name)
    consumers: dict[int, list[Consumer]] = {index: [] for index in range(len(leaves))}
    for name in spaces.consumers:
        for layout in inputs[name]:
            for group in layout.groups():
                consumers[group].append(Consumer(name, layout.spatial_repeat))
    groups = []
    for leaf in leaves:
        index, channels = group_of[leaf], spaces.widths[leaf]
        group_blocks = blocks.get(leaf, 1)
        reason = reasons.get(leaf, "") or (_block_reason(channels, group_blocks)
                                           if group_blocks > 1 else "")
        names = sorted(dict.fromkeys(producers[leaf]), key=order.__getitem__)
        groups.append(ChannelGroup(
            index=index, channels=channels, producers=tuple(names),
            members=tuple(sorted(members[index], key=order.__getitem__)),
            consumers=tuple(sorted(consumers[index], key=lambda c: order[c.layer])),
            prunable=not reason and bool(names), reason=reason, blocks=group_blocks,
        ))
    return DependencyGraph(tuple(groups), inputs, outputs)
