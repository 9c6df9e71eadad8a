"""Channel spaces while a model is analysed: every producer (and the model's input, and any
layer whose output channels no rule can follow) opens a space; layers that force two tensors
to be the same channels (Add, a broadcast Multiply) join them; layers whose channels must
stay whole (softmax, LayerNormalization) fix them. Frozen into ChannelGroups by graph.py.

Joining a tensor of one space with a concatenation of several (an Add of a conv's output and
a Concatenate of two half-width convs, NASNet's; a squeeze-and-excitation scale over a
Concatenate) splits the one space at the concatenation's boundaries: each part is then its
own space, pruned with the segment it is joined to.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from pipeline.pruning.layouts import Layout, Segment


@dataclass
class ChannelSpaces:
    origins: list[str] = field(default_factory=list)  # the layer that opened each space
    widths: list[int] = field(default_factory=list)
    produced: list[bool] = field(default_factory=list)  # opened by a layer whose width is set
    parent: list[int] = field(default_factory=list)  # union-find
    splits: dict[int, list[int]] = field(default_factory=dict)  # root -> its parts, in order
    reasons: list[tuple[int, str]] = field(default_factory=list)  # (space, why fixed), found order
    blocks: list[tuple[int, int]] = field(default_factory=list)  # (space, equal runs to keep)
    consumers: list[str] = field(default_factory=list)  # layers whose weights read channels

    def _new(self, origin: str, width: int, produced: bool) -> int:
        self.origins.append(origin)
        self.widths.append(int(width))
        self.produced.append(produced)
        self.parent.append(len(self.parent))
        return len(self.origins) - 1

    def open(self, origin: str, width: int, *, produced: bool) -> Layout:
        """A new space of `width` channels, as the layout of one tensor."""
        return Layout((Segment(self._new(origin, width, produced), int(width)),))

    def find(self, space: int) -> int:
        while self.parent[space] != space:
            self.parent[space] = self.parent[self.parent[space]]
            space = self.parent[space]
        return space

    def leaves(self, space: int) -> list[int]:
        """The unsplit spaces that make up `space`, in channel order."""
        root = self.find(space)
        if root not in self.splits:
            return [root]
        return [leaf for part in self.splits[root] for leaf in self.leaves(part)]

    def expand(self, layout: Layout) -> Layout:
        """The layout in today's spaces (joins and splits since it was made applied)."""
        segments = tuple(Segment(leaf, self.widths[leaf])
                         for segment in layout.segments for leaf in self.leaves(segment.group))
        return Layout(segments, layout.spatial_repeat)

    def _split(self, leaf: int, widths: list[int]) -> None:
        self.splits[leaf] = [self._new(self.origins[leaf], width, False) for width in widths]

    def _cut(self, layout: Layout, boundaries: set[int]) -> Layout:
        """Split the layout's spaces until each boundary falls between two of them."""
        while True:
            layout, offset = self.expand(layout), 0
            for segment in layout.segments:
                inside = sorted(b - offset for b in boundaries
                                if offset < b < offset + segment.channels)
                if inside:
                    edges = [0, *inside, segment.channels]
                    self._split(segment.group,
                                [end - start for start, end in itertools.pairwise(edges)])
                    break
                offset += segment.channels
            else:
                return layout

    def join(self, first: Layout, second: Layout) -> None:
        """The two tensors' channels are the same channels, position by position (their
        widths are equal); where their segments differ, both are cut to match."""
        while True:
            first, second = self.expand(first), self.expand(second)
            if first.structure() == second.structure():
                break
            boundaries = set(itertools.accumulate(s.channels for s in first.segments)) | set(
                itertools.accumulate(s.channels for s in second.segments))
            first, second = self._cut(first, boundaries), self._cut(second, boundaries)
        for one, other in zip(first.segments, second.segments, strict=True):
            root_one, root_other = self.find(one.group), self.find(other.group)
            self.parent[max(root_one, root_other)] = min(root_one, root_other)

    def fix(self, layout: Layout, reason: str) -> None:
        for segment in layout.segments:
            self.reasons.append((segment.group, reason))

    def require_blocks(self, layout: Layout, blocks: int) -> None:
        """Keep the same number of channels in each of `blocks` equal runs (grouped conv)."""
        self.blocks.append((layout.segments[0].group, int(blocks)))

    def read_by(self, layer_name: str) -> None:
        self.consumers.append(layer_name)

    def block_counts(self) -> tuple[dict[int, int], list[tuple[int, str]]]:
        """Leaf -> equal runs it must keep; and the leaves a split cut across such runs."""
        counts: dict[int, int] = {}
        broken = []
        for space, blocks in self.blocks:
            leaves = self.leaves(space)
            if len(leaves) == 1:
                counts[leaves[0]] = math.lcm(counts.get(leaves[0], 1), blocks)
            else:
                broken.extend((leaf, "a grouped convolution's runs are cut by a concatenation")
                              for leaf in leaves)
        return counts, broken
