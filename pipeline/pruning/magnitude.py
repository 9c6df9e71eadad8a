"""TensorFlow Model Optimization's unstructured modes, for comparison with channel pruning.

`magnitude` zeroes the smallest weights of every Conv2D/Dense kernel under a polynomial
schedule; `m_by_n` zeroes 2 of every 4 consecutive input weights of the same kernels (2:4).
Depthwise kernels stay dense: TFMOT does not prune them. After `strip_pruning` the model is
dense again: same shapes, same parameter count, same file size; only a compressor (gzip) or
a sparse kernel can exploit the zeros, which is why TFLite shows no latency gain for them.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_model_optimization as tfmot

from devices.errors import PruningError
from devices.tf_env import keras

sparsity_api = tfmot.sparsity.keras
M_BY_N = (2, 4)
SCHEDULE_UPDATES = 20  # mask updates over the schedule; more is slower, fewer is coarser


@dataclass(frozen=True)
class SparsityMode:
    name: str
    wraps: Callable[[Any], bool]  # which layers get a pruning wrapper
    options: Callable[[float, Any], dict[str, Any]]  # (target sparsity, schedule) -> kwargs
    fixed_sparsity: float | None  # m_by_n: the pattern decides, not `ratio`


def _dense_or_conv(layer: Any) -> bool:
    """The kernels TFMOT prunes: Conv2D and Dense. Its registry lists no prunable weight
    for DepthwiseConv2D (and tf_keras' DepthwiseConv2D is not a Conv2D subclass)."""
    return isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)


MODES: dict[str, SparsityMode] = {
    "magnitude": SparsityMode(
        "magnitude", _dense_or_conv,
        lambda sparsity, schedule: {"pruning_schedule": schedule}, None,
    ),
    "m_by_n": SparsityMode(
        "m_by_n", _dense_or_conv,
        lambda sparsity, schedule: {"pruning_schedule": schedule, "sparsity_m_by_n": M_BY_N},
        M_BY_N[0] / M_BY_N[1],
    ),
}


def get_mode(name: str) -> SparsityMode:
    if name not in MODES:
        raise PruningError(
            f"unknown sparsity mode {name!r}; expected one of {', '.join(sorted(MODES))}"
        )
    return MODES[name]


def polynomial_schedule(sparsity: float, total_steps: int) -> Any:
    """0 -> `sparsity` over the first 3/4 of training, then hold (masks fixed)."""
    frequency = max(1, total_steps // SCHEDULE_UPDATES)
    end_step = max(frequency, (int(total_steps * 0.75) // frequency) * frequency)
    return sparsity_api.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0, end_step=end_step,
        frequency=frequency,
    )


def wrap(model: Any, mode: SparsityMode, sparsity: float, schedule: Any) -> Any:
    """A copy of `model` (weights included) with pruning wrappers on the mode's layers."""
    options = mode.options(sparsity, schedule)

    def clone_layer(layer: Any) -> Any:
        fresh = layer.__class__.from_config(layer.get_config())
        return sparsity_api.prune_low_magnitude(fresh, **options) if mode.wraps(layer) else fresh

    wrapped = keras.models.clone_model(model, clone_function=clone_layer)
    for layer in model.layers:
        target = wrapped.get_layer(_wrapped_name(wrapped, layer.name))
        source = layer.get_weights()
        if source:
            target.layer.set_weights(source) if hasattr(target, "pruning_obj") \
                else target.set_weights(source)
    return wrapped


def _wrapped_name(wrapped: Any, name: str) -> str:
    names = {layer.name for layer in wrapped.layers}
    return name if name in names else f"prune_low_magnitude_{name}"


def prune_one_shot(model: Any, mode: SparsityMode, sparsity: float) -> Any:
    """Masks at the final sparsity applied once, no training: the `before fine-tune` model."""
    schedule = sparsity_api.ConstantSparsity(sparsity, begin_step=0, frequency=1)
    wrapped = wrap(model, mode, sparsity, schedule)
    for layer in wrapped.layers:
        if hasattr(layer, "pruning_obj"):
            layer.pruning_step.assign(1)  # TFMOT applies the 2:4 masks at step 1 only
            layer.pruning_obj.conditional_mask_update()
            layer.pruning_obj.weight_mask_op()
    return strip(wrapped)


def strip(wrapped: Any) -> Any:
    return sparsity_api.strip_pruning(wrapped)


def update_step_callback() -> Any:
    return sparsity_api.UpdatePruningStep()


def steps_for(samples: int, batch_size: int, epochs: int) -> int:
    return max(1, math.ceil(samples / batch_size) * epochs)


@dataclass(frozen=True)
class SparsityStats:
    sparsity: float  # zeros / weights over the pruned kernels
    kernel_weights: int
    zero_weights: int
    per_layer: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity, "kernel_weights": self.kernel_weights,
                "zero_weights": self.zero_weights, "per_layer": dict(self.per_layer)}


def sparsity_stats(model: Any, mode: SparsityMode) -> SparsityStats:
    per_layer, total, zeros = {}, 0, 0
    for layer in model.layers:
        if not mode.wraps(layer):
            continue
        kernel = layer.get_weights()[0]
        per_layer[layer.name] = float(np.mean(kernel == 0))
        total += kernel.size
        zeros += int(np.sum(kernel == 0))
    return SparsityStats(zeros / total if total else 0.0, total, zeros, per_layer)


def gzip_bytes(path: Path) -> int:
    """Size of the file after gzip -9 (mtime fixed): what zeros buy on disk or over the air."""
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0))
