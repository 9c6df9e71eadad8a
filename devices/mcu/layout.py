"""The convolution filter's flash layout, chosen offline for the 2x2 tile kernel.

`mcu_conv2d_s8` computes two output channels for two output pixels per pass. It reads the
two channels' weights with one walking pointer: per group of four taps, four bytes of the
first channel then four of the second; the last `taps % 4` of each channel follow the
groups, and each pair's block is padded to whole words (the kernel loads two weight
words with one LDRD, which needs word alignment). An odd last channel is paired with a row
of zeros, whose outputs are never stored. The two pixels' patches are interleaved the same
way in the scratch buffer (see mcu_kernels.c), so one pointer walks each operand and every
load is a sequential word.
"""

from __future__ import annotations

import numpy as np

GROUP = 4  # taps per SMLAD pair of words
WORD = 4


def pair_stride(taps: int) -> int:
    """Bytes per pair of channels: 2 x taps rounded up to whole words (as mcu_kernels.c)."""
    return (2 * taps + WORD - 1) // WORD * WORD


def pair_interleaved(weights: np.ndarray) -> np.ndarray:
    """[out_channels, taps] int8 -> the flat pair-interleaved layout (even channel count)."""
    rows = np.asarray(weights, dtype=np.int8).reshape(weights.shape[0], -1)
    if rows.shape[0] % 2:
        rows = np.concatenate([rows, np.zeros((1, rows.shape[1]), dtype=np.int8)])
    taps = rows.shape[1]
    grouped = taps - taps % GROUP
    pairs = rows.reshape(-1, 2, taps)
    groups = pairs[:, :, :grouped].reshape(len(pairs), 2, grouped // GROUP, GROUP)
    interleaved = groups.transpose(0, 2, 1, 3).reshape(len(pairs), -1)
    tails = pairs[:, :, grouped:].reshape(len(pairs), -1)
    padding = np.zeros((len(pairs), pair_stride(taps) - 2 * taps), dtype=np.int8)
    return np.concatenate([interleaved, tails, padding], axis=1).reshape(-1)


def unpack_pair_interleaved(flat: np.ndarray, out_channels: int, taps: int) -> np.ndarray:
    """The inverse of `pair_interleaved` (for tests and for reading a bundle back)."""
    padded = out_channels + out_channels % 2
    grouped = taps - taps % GROUP
    pairs = np.asarray(flat, dtype=np.int8).reshape(padded // 2, pair_stride(taps))
    count = len(pairs)
    groups = pairs[:, : 2 * grouped].reshape(count, grouped // GROUP, 2, GROUP)
    head = groups.transpose(0, 2, 1, 3).reshape(count, 2, grouped)
    tails = pairs[:, 2 * grouped:2 * taps].reshape(count, 2, taps - grouped)
    return np.concatenate([head, tails], axis=2).reshape(padded, taps)[:out_channels]
