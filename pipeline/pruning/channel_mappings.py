"""How a layer maps the channels of its inputs to the channels of its output: one function
per kind of layer, each given the call, its input layouts and the channel spaces, returning
the output's layout. A layer that cannot be followed channel by channel either fixes the
channels it touches (they stay whole, which is always safe: the layer then sees the same
shapes) or is refused by name."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.pruning.layer_call import LayerCall
from pipeline.pruning.layouts import Layout
from pipeline.pruning.refusal import refuse
from pipeline.pruning.spaces import ChannelSpaces

ChannelMapping = Callable[[LayerCall, list[Layout], ChannelSpaces], Layout]


def single_input(call: LayerCall, inputs: list[Layout]) -> Layout:
    if len(inputs) != 1:
        raise refuse(call.layer, f"expected one input, got {len(inputs)}",
                     "use a single-input layer")
    return inputs[0]


def require_channels_last(call: LayerCall) -> None:
    if getattr(call.layer, "data_format", "channels_last") != "channels_last":
        raise refuse(call.layer, "channels_first data format", "build the model channels_last")


def channel_axis_in(axes: Any, rank: int) -> bool:
    """Whether `axes` (an int, a list, or None for all) includes the last axis."""
    if axes is None:
        return True
    listed = list(axes) if isinstance(axes, list | tuple) else [axes]
    return any(int(axis) % rank == rank - 1 for axis in listed)


def _fix_if_softmax(call: LayerCall, layout: Layout, spaces: ChannelSpaces) -> None:
    """A softmax activation couples every channel of its tensor, so they stay whole."""
    if getattr(getattr(call.layer, "activation", None), "__name__", "") == "softmax":
        spaces.fix(layout, f"{call.name} applies softmax across channels")


def carries(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    """Channel i in, channel i out (activations, pooling, padding, BatchNorm, depthwise)."""
    layout = single_input(call, inputs)
    require_channels_last(call)
    _fix_if_softmax(call, layout, spaces)
    return layout


def produces(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    """Reads every input channel through its weights, opens a new space of its own width
    (Conv, Dense, SeparableConv2D, Conv2DTranspose)."""
    single_input(call, inputs)
    require_channels_last(call)
    spaces.read_by(call.name)
    output = spaces.open(call.name, call.output_width, produced=True)
    _fix_if_softmax(call, output, spaces)
    return output


def convolves(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    """A Conv with `groups`: 1 produces; groups == in == out channels is a depthwise conv
    written as a Conv2D (carries); otherwise each of its groups reads its own run of input
    channels into its own run of outputs, so both sides keep equal counts per group."""
    groups = int(getattr(call.layer, "groups", 1))
    if groups == 1:
        return produces(call, inputs, spaces)
    layout = single_input(call, inputs)
    if groups == layout.width == call.output_width and not layout.flattened:
        return carries(call, inputs, spaces)
    require_channels_last(call)
    spaces.read_by(call.name)
    if len(layout.segments) == 1:
        spaces.require_blocks(layout, groups)
    else:
        spaces.fix(layout, f"{call.name} is a grouped convolution over a concatenation")
    output = spaces.open(call.name, call.output_width, produced=True)
    spaces.require_blocks(output, groups)
    _fix_if_softmax(call, output, spaces)
    return output


def rearrange(call: LayerCall, inputs: Sequence[Layout], spaces: ChannelSpaces,
              why: str) -> Layout:
    """A layer that moves channels where no rule can follow: what it reads stays whole and
    its output is a new space that stays whole too."""
    reason = f"{call.name} {why}"
    for layout in inputs:
        spaces.fix(layout, reason)
    width = int(call.output_shape[-1] or 1) if len(call.output_shape) > 1 else 1
    output = spaces.open(call.name, width, produced=False)
    spaces.fix(output, reason)
    return output


def rearranges(why: str) -> ChannelMapping:
    """A mapping for a layer type that always rearranges channels (`why` says how)."""
    def mapping(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
        return rearrange(call, inputs, spaces, why)
    return mapping


def couples(why: str, axes_attribute: str | None = None) -> ChannelMapping:
    """Carries channels one to one but computes across them (LayerNormalization's mean,
    softmax), so its channels stay whole; only when `axes_attribute` includes the
    channel axis, if given."""
    def mapping(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
        layout = carries(call, inputs, spaces)
        rank = len(call.input_shapes[0])
        if axes_attribute is None or channel_axis_in(getattr(call.layer, axes_attribute), rank):
            spaces.fix(layout, f"{call.name} {why}")
        return layout
    return mapping


def join_all(call: LayerCall, inputs: Sequence[Layout], spaces: ChannelSpaces) -> Layout:
    """Element-wise over its inputs, broadcasting: inputs with the same channel width are the
    same channels (Add, or squeeze-and-excitation's (1, 1, C) * (H, W, C)), cut alike where
    one is a concatenation; a one-channel input broadcast over all channels constrains none."""
    wide = [layout for layout in inputs if layout.width != 1] or list(inputs)
    first = wide[0]
    if any(layout.width != first.width for layout in wide):
        raise refuse(call.layer, "joins tensors of different channel widths "
                     f"{sorted({layout.width for layout in wide})}",
                     "element-wise merges need equal channel counts or one channel")
    if any(layout.spatial_repeat != first.spatial_repeat for layout in wide):
        for layout in wide:
            spaces.fix(layout, f"{call.name} joins flattened and unflattened tensors")
        return first
    for layout in wide[1:]:
        spaces.join(first, layout)
    return spaces.expand(first)


def merges(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    require_channels_last(call)
    return join_all(call, inputs, spaces)


def concatenates(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    """Along channels: the output is the inputs' segments side by side, each keeping its
    own group (a reader takes the kept channels of each at its offset). Along any other
    axis: the inputs are the same channels, stacked."""
    rank = len(call.output_shape)
    if int(call.layer.axis) % rank != rank - 1:
        return join_all(call, inputs, spaces)
    if any(layout.flattened for layout in inputs):
        return rearrange(call, inputs, spaces, "concatenates flattened tensors")
    return Layout(tuple(segment for layout in inputs for segment in layout.segments))


def flattens(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    layout = single_input(call, inputs)
    require_channels_last(call)
    positions = math.prod(int(dimension) for dimension in call.input_shapes[0][1:-1])
    return Layout(layout.segments, layout.spatial_repeat * positions)


def reshapes(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    """A row-major reshape that keeps the last axis keeps every channel where it was
    ((1, 1, C) <-> (C,), (H, W, C) -> (H * W, C)); any other moves channels."""
    layout = single_input(call, inputs)
    before, after = call.input_shapes[0], call.output_shape
    if not layout.flattened and before[-1] == after[-1]:
        return layout
    return rearrange(call, inputs, spaces,
                     f"reshapes {tuple(before[1:])} to {tuple(after[1:])}, moving channels")


def permutes(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    layout = single_input(call, inputs)
    dims = tuple(call.layer.dims)
    if not layout.flattened and dims[-1] == len(dims):
        return layout
    return rearrange(call, inputs, spaces, f"permutes axes {dims}, moving channels")


def depthwise(call: LayerCall, inputs: list[Layout], spaces: ChannelSpaces) -> Layout:
    multiplier = int(call.layer.depth_multiplier)
    if multiplier == 1:
        return carries(call, inputs, spaces)
    require_channels_last(call)
    return rearrange(call, inputs, spaces,
                     f"has depth_multiplier={multiplier}, {multiplier} outputs per channel")
