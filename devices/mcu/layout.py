"""The convolution filter's flash layout, chosen offline for the 2x2 tile kernel.

`mcu_conv2d_s8` computes two output channels for two output pixels per pass. It reads the
two channels' weights with one walking pointer: the taps are padded with zeros to a
multiple of four, and per group of four taps come four bytes of the first channel, then
four of the second. A pair's block is thus a whole number of 8-byte groups, word-aligned
for the LDRD that loads both channels' words at once. An odd last channel is paired with
a row of zeros, whose outputs are never stored. The two pixels' patches are interleaved
the same way in the scratch buffer (see mcu_kernels.c), so one pointer walks each operand.
"""

from __future__ import annotations

import numpy as np

GROUP = 4  # taps per SMLAD pair of words


def padded_taps(taps: int) -> int:
    """Taps rounded up to whole groups (as mcu_kernels.c's padded_taps)."""
    return (taps + GROUP - 1) // GROUP * GROUP


def pair_interleaved(weights: np.ndarray) -> np.ndarray:
    """[out_channels, taps...] int8 -> the flat pair-interleaved layout."""
    rows = np.asarray(weights, dtype=np.int8).reshape(weights.shape[0], -1)
    taps = rows.shape[1]
    padded = np.zeros((rows.shape[0] + rows.shape[0] % 2, padded_taps(taps)), dtype=np.int8)
    padded[: rows.shape[0], :taps] = rows
    groups = padded.reshape(-1, 2, padded.shape[1] // GROUP, GROUP)
    return groups.transpose(0, 2, 1, 3).reshape(-1)

