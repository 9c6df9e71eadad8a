"""The op signatures of a model at any channel counts, without converting it.

Pruning never changes which ops the converter emits, only their shapes, and every dimension
of every op is linear in the kept channel counts: a conv's channels are one group's count, a
Dense after Flatten reads H x W x count, a concatenation the sum of its parts. So one int8
conversion at the current counts and one per prunable group with that group a channel (or
a grouped conv's block) narrower give each dimension's change per channel, and any counts'
signatures follow by arithmetic (probes: groups + 1 conversions, a few seconds). The
quantisation facts of a signature (activation range, slow channels) are carried from the
last real conversion; `rebase` checks a prediction against a real conversion and takes its
facts, and a mismatch (a dimension that is not linear) is reported so the caller probes
again where it stands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.errors import PruningError
from devices.op_signature import IoSignature, OpSignature
from pipeline.hardware_cost.int8_graph import Int8Graph
from pipeline.pruning.graph import DependencyGraph
from pipeline.pruning.surgery import apply_keep

Counts = Mapping[int, int]  # prunable group index -> channels kept


class ShapeMismatch(Exception):
    """A predicted signature differs from the converted model's: probe again."""


def numbers(signature: OpSignature) -> list[int]:
    """Every dimension and steering value of the signature, in a fixed order."""
    found = [size for shape in signature.inputs for size in shape]
    found += list(signature.output)
    found += [value for _, values in signature.values for value in values]
    found += [value for _, option in signature.options if isinstance(option, tuple)
              for value in option]
    return found


def with_numbers(signature: OpSignature, values: list[int]) -> OpSignature:
    """The signature with `numbers` replaced, in `numbers`' order."""
    it = iter(values)

    def take(length: int) -> tuple[int, ...]:
        return tuple(next(it) for _ in range(length))

    inputs = tuple(take(len(shape)) for shape in signature.inputs)
    output = take(len(signature.output))
    steering = tuple((position, take(len(v))) for position, v in signature.values)
    options = tuple((name, take(len(option)) if isinstance(option, tuple) else option)
                    for name, option in signature.options)
    return dataclasses.replace(signature, inputs=inputs, output=output, values=steering,
                               options=options)


def frame(signature: OpSignature) -> tuple[Any, ...]:
    """What pruning must leave alone: the op, its ranks and its scalar options."""
    return (signature.op, tuple(len(s) for s in signature.inputs), len(signature.output),
            tuple((name, len(o) if isinstance(o, tuple) else o)
                  for name, o in signature.options),
            tuple((position, len(v)) for position, v in signature.values))


Converter = Callable[[Any], Int8Graph]


@dataclass
class ShapeModel:
    counts: dict[int, int]  # the counts of the last real conversion
    base: tuple[OpSignature, ...]  # its signatures
    io: IoSignature
    # per op, per number: {group: change per channel removed}
    slopes: tuple[tuple[dict[int, float], ...], ...]

    def signatures(self, counts: Counts) -> tuple[OpSignature, ...]:
        predicted = []
        for signature, slopes in zip(self.base, self.slopes, strict=True):
            values = [int(round(value - sum(slope * (self.counts[group] - counts[group])
                                            for group, slope in per_group.items())))
                      for value, per_group in zip(numbers(signature), slopes, strict=True)]
            moved = with_numbers(signature, values)
            if moved.slow_channels:
                moved = dataclasses.replace(
                    moved, slow_channels=min(moved.slow_channels, moved.output[-1]))
            predicted.append(moved)
        return tuple(predicted)

    def rebase(self, counts: Counts, real: Int8Graph) -> None:
        """Take a real conversion at `counts` as the new base (ShapeMismatch if the
        prediction's dimensions are not the real ones)."""
        predicted = self.signatures(counts)
        if len(predicted) != len(real.signatures) or any(
                numbers(p) != numbers(r) or frame(p) != frame(r)
                for p, r in zip(predicted, real.signatures, strict=True)):
            raise ShapeMismatch(f"predicted signatures at {dict(counts)} differ from the "
                                "converted model's")
        self.counts = dict(counts)
        self.base = real.signatures

    def group_of_op(self) -> tuple[int | None, ...]:
        """Per op, the group whose channels decide its width: the one its output's channel
        axis follows, else its first input's (a layer reading a pruned group), else None."""
        owners = []
        for signature, slopes in zip(self.base, self.slopes, strict=True):
            inputs_end = sum(len(shape) for shape in signature.inputs)
            output_channel = inputs_end + len(signature.output) - 1
            input_channel = len(signature.inputs[0]) - 1 if signature.inputs else None
            owner = None
            for position in (output_channel, input_channel):
                if position is not None and position < len(slopes) and slopes[position]:
                    owner = max(slopes[position], key=lambda g: (abs(slopes[position][g]), -g))
                    break
            owners.append(owner)
        return tuple(owners)


def _probe_keep(graph: DependencyGraph, group: int) -> tuple[np.ndarray, int] | None:
    """All but the last channel of each grouped-conv block, and how many that drops."""
    channels, blocks = graph.groups[group].channels, graph.groups[group].blocks
    size = channels // blocks
    if size < 2:
        return None
    kept = np.concatenate([np.arange(start, start + size - 1)
                           for start in range(0, channels, size)])
    return kept, blocks


def probe(model: Any, graph: DependencyGraph, groups: list[int], counts: Counts,
          convert: Converter, base: Int8Graph | None = None) -> ShapeModel:
    """The shape model around `model` (whose prunable groups have `counts` channels)."""
    base = base or convert(model)
    base_numbers = [numbers(s) for s in base.signatures]
    slopes: list[tuple[dict[int, float], ...]] = [
        tuple({} for _ in values) for values in base_numbers]
    for group in groups:
        keep = _probe_keep(graph, group)
        if keep is None:
            continue
        kept, dropped = keep
        narrower = convert(apply_keep(model, graph, {group: kept}))
        name = ", ".join(graph.groups[group].producers)
        if len(narrower.signatures) != len(base.signatures) or any(
                frame(a) != frame(b) for a, b in zip(narrower.signatures, base.signatures,
                                                      strict=True)):
            raise PruningError(
                f"the int8 model's ops change, not only their shapes, when {name} loses a "
                "channel, so its cost cannot be predicted per op (hint: prune by "
                "prune.ratio instead of prune.budget for this model)")
        for op, signature in enumerate(narrower.signatures):
            for position, (before, after) in enumerate(zip(base_numbers[op],
                                                           numbers(signature), strict=True)):
                if before != after:
                    slopes[op][position][group] = (before - after) / dropped
    return ShapeModel(dict(counts), base.signatures, base.io, tuple(slopes))
