"""Batch-level augmentation (pipeline.training.make_input_pipeline): every image is its
source shifted by at most two pixels (zero-filled), colour images are also flipped at
random and digits never, each epoch draws new shifts, and the same seed repeats them."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import AUGMENT_SHIFT_PIXELS
from pipeline.training import make_input_pipeline

PAD = AUGMENT_SHIFT_PIXELS


def _images(channels: int, count: int = 64) -> np.ndarray:
    # strictly positive, all different, so a shift or flip can be recognised exactly
    values = np.arange(1, count * 8 * 8 * channels + 1, dtype=np.float32)
    return values.reshape(count, 8, 8, channels)


def _epoch(x: np.ndarray, seed: int = 0, shift: int = PAD) -> list[np.ndarray]:
    pipeline = make_input_pipeline(x, np.arange(len(x)), 16, shuffle=False, augment=True,
                                   seed=seed, shift=shift)
    return [[images.numpy() for images, _ in pipeline] for _ in range(2)]


def _explain(source: np.ndarray, augmented: np.ndarray,
             pad: int = PAD) -> tuple[int, int, bool] | None:
    """(row shift, column shift, flipped) that turns source into augmented, or None."""
    padded = np.pad(source, ((pad, pad), (pad, pad), (0, 0)))
    for flipped in (False, True):
        candidate = padded[:, ::-1] if flipped else padded
        for row in range(2 * pad + 1):
            for column in range(2 * pad + 1):
                window = candidate[row:row + source.shape[0], column:column + source.shape[1]]
                if np.array_equal(window, augmented):
                    return row - pad, column - pad, flipped
    return None


@pytest.mark.parametrize("channels", [1, 3])
def test_every_image_is_a_shift_and_only_colour_images_flip(channels: int) -> None:
    x = _images(channels)
    first_epoch, second_epoch = _epoch(x)
    augmented = np.concatenate(first_epoch)
    explanations = [_explain(x[i], augmented[i]) for i in range(len(x))]
    assert None not in explanations
    flips = [flipped for _, _, flipped in explanations]
    if channels == 3:
        assert 10 < sum(flips) < 54  # about half of 64
    else:
        assert not any(flips)
    assert len({(row, column) for row, column, _ in explanations}) > 10  # varied offsets
    assert not np.array_equal(augmented, np.concatenate(second_epoch))  # new draws per epoch


def test_the_same_seed_repeats_the_same_augmentation() -> None:
    x = _images(3)
    assert all(np.array_equal(a, b) for a, b in zip(_epoch(x, 5)[0], _epoch(x, 5)[0]))
    assert not all(np.array_equal(a, b) for a, b in zip(_epoch(x, 5)[0], _epoch(x, 6)[0]))


def test_augment_shift_sets_the_largest_shift() -> None:
    """augment_shift = 4 (configs/cifar10.toml): offsets reach beyond the default 2 pixels,
    never beyond 4."""
    x = _images(3)
    augmented = np.concatenate(_epoch(x, shift=4)[0])
    explanations = [_explain(x[i], augmented[i], pad=4) for i in range(len(x))]
    assert None not in explanations
    largest = max(max(abs(row), abs(column)) for row, column, _ in explanations)
    assert largest > PAD and largest <= 4
