"""What a tensor's channel axis is made of: one or more segments, each a whole channel space
(a concatenation lays several side by side), repeated once per position after Flatten.

In a frozen DependencyGraph a segment's `group` is a ChannelGroup index; while the graph is
being analysed it is a channel space (spaces.py) that may still be joined with others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Positions = np.ndarray | None  # indices into a channel axis; None: every position kept


@dataclass(frozen=True)
class Segment:
    group: int
    channels: int


@dataclass(frozen=True)
class Layout:
    """Channel axis = segments side by side; after Flatten `spatial_repeat` > 1 and column
    = position * width + channel (channels-last flattening)."""

    segments: tuple[Segment, ...]
    spatial_repeat: int = 1

    @property
    def width(self) -> int:
        """Channels per position."""
        return sum(segment.channels for segment in self.segments)

    @property
    def flattened(self) -> bool:
        return self.spatial_repeat > 1

    def groups(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(segment.group for segment in self.segments))

    def structure(self) -> tuple[int, tuple[int, ...]]:
        """What two layouts must share to be joined channel by channel."""
        return self.spatial_repeat, tuple(segment.channels for segment in self.segments)

    def offsets(self, group: int) -> list[int]:
        """Where each segment of `group` starts on the channel axis."""
        found, offset = [], 0
        for segment in self.segments:
            if segment.group == group:
                found.append(offset)
            offset += segment.channels
        return found


def _repeat(layout: Layout, per_position: np.ndarray) -> np.ndarray:
    if not layout.flattened:
        return per_position
    starts = np.arange(layout.spatial_repeat, dtype=np.int64)[:, None] * layout.width
    return (starts + per_position[None, :]).reshape(-1)


def kept_positions(layout: Layout, keep: Mapping[int, np.ndarray]) -> Positions:
    """The positions of `layout`'s axis that survive `keep` (group -> kept channels); None
    when no segment of it is pruned."""
    if not any(segment.group in keep for segment in layout.segments):
        return None
    parts, offset = [], 0
    for segment in layout.segments:
        kept = keep.get(segment.group)
        local = np.arange(segment.channels, dtype=np.int64) if kept is None else kept
        parts.append(offset + np.asarray(local, dtype=np.int64))
        offset += segment.channels
    return _repeat(layout, np.concatenate(parts))


def channel_positions(layout: Layout, group: int, channels: np.ndarray) -> np.ndarray:
    """Every position where `layout` carries these channels of `group` (each segment of it,
    each flattened position)."""
    channels = np.asarray(channels, dtype=np.int64)
    per_position = [offset + channels for offset in layout.offsets(group)]
    if not per_position:
        return np.zeros(0, dtype=np.int64)
    return _repeat(layout, np.concatenate(per_position))
