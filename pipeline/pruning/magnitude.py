"""TensorFlow Model Optimization's unstructured modes, for comparison with channel pruning.

`magnitude` zeroes the smallest weights of every kernel TFMOT prunes (Conv, Dense, the
pointwise kernel of a SeparableConv: `LayerRule.sparsity_kernel`) under a polynomial
schedule: the same fraction `prune.ratio` of each kernel, or with `prune.threshold` = beta > 0
the seed article's rule per layer, every weight with |w| < beta * max|w| of its kernel (each
layer's fraction measured on the trained model, then held by the schedule); `m_by_n`
zeroes 2 of every 4 consecutive input weights of the same kernels (2:4).
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
from pipeline.pruning.layer_rules import find_rule

sparsity_api = tfmot.sparsity.keras
M_BY_N = (2, 4)
SCHEDULE_UPDATES = 20  # mask updates over the schedule; more is slower, fewer is coarser


@dataclass(frozen=True)
class SparsityMode:
    name: str
    wraps: Callable[[Any], bool]  # which layers get a pruning wrapper
    options: Callable[[Any], dict[str, Any]]  # schedule -> prune_low_magnitude kwargs
    fixed_sparsity: float | None  # m_by_n: the pattern decides, not `ratio` or `threshold`


def _sparsity_kernel(layer: Any) -> str | None:
    """The weight TFMOT prunes in this layer, per the layer table; None for layers TFMOT
    leaves dense (its registry lists no prunable weight for DepthwiseConv2D) and for layer
    types the table does not know."""
    rule = find_rule(layer)
    return rule.sparsity_kernel if rule is not None else None


def _dense_or_conv(layer: Any) -> bool:
    return _sparsity_kernel(layer) is not None


def _kernel(layer: Any) -> np.ndarray:
    return np.asarray(getattr(layer, str(_sparsity_kernel(layer))).numpy())


MODES: dict[str, SparsityMode] = {
    "magnitude": SparsityMode(
        "magnitude", _dense_or_conv,
        lambda schedule: {"pruning_schedule": schedule}, None,
    ),
    "m_by_n": SparsityMode(
        "m_by_n", _dense_or_conv,
        lambda schedule: {"pruning_schedule": schedule, "sparsity_m_by_n": M_BY_N},
        M_BY_N[0] / M_BY_N[1],
    ),
}


def get_mode(name: str) -> SparsityMode:
    if name not in MODES:
        raise PruningError(
            f"unknown sparsity mode {name!r}; expected one of {', '.join(sorted(MODES))}"
        )
    return MODES[name]


Sparsities = dict[str, float]  # layer name -> fraction of its kernel set to zero
ScheduleFor = Callable[[float], Any]  # a layer's target sparsity -> its TFMOT schedule


def target_sparsities(
    model: Any, mode: SparsityMode, *, ratio: float, threshold: float = 0.0
) -> Sparsities:
    """Each wrapped layer's target: the mode's fixed pattern, the share of its weights under
    `threshold` * its largest |w| (when threshold > 0), or `ratio` for every layer."""
    def share_under_threshold(layer: Any) -> float:
        kernel = np.abs(_kernel(layer))
        return float(np.mean(kernel < threshold * kernel.max())) if kernel.max() > 0 else 0.0

    def target(layer: Any) -> float:
        if mode.fixed_sparsity is not None:
            return mode.fixed_sparsity
        return share_under_threshold(layer) if threshold > 0 else ratio

    return {layer.name: target(layer) for layer in model.layers if mode.wraps(layer)}


def polynomial_schedule(total_steps: int) -> ScheduleFor:
    """0 -> each layer's sparsity over the first 3/4 of training, then hold (masks fixed)."""
    frequency = max(1, total_steps // SCHEDULE_UPDATES)
    end_step = max(frequency, (int(total_steps * 0.75) // frequency) * frequency)
    return lambda sparsity: sparsity_api.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0, end_step=end_step,
        frequency=frequency,
    )


def constant_schedule(sparsity: float) -> Any:
    return sparsity_api.ConstantSparsity(sparsity, begin_step=0, frequency=1)


def wrap(model: Any, mode: SparsityMode, sparsities: Sparsities, schedule_for: ScheduleFor) -> Any:
    """A copy of `model` (weights included) with pruning wrappers on the mode's layers."""
    def clone_layer(layer: Any) -> Any:
        fresh = layer.__class__.from_config(layer.get_config())
        if not mode.wraps(layer):
            return fresh
        options = mode.options(schedule_for(sparsities[layer.name]))
        return sparsity_api.prune_low_magnitude(fresh, **options)

    wrapped = keras.models.clone_model(model, clone_function=clone_layer)
    by_name = {layer.name: layer for layer in wrapped.layers}
    names = set(by_name)
    for layer in model.layers:
        target = by_name[_wrapped_name(names, layer.name)]
        source = layer.get_weights()
        if source:
            target.layer.set_weights(source) if hasattr(target, "pruning_obj") \
                else target.set_weights(source)
    return wrapped


def _wrapped_name(names: set[str], name: str) -> str:
    return name if name in names else f"prune_low_magnitude_{name}"


def prune_one_shot(model: Any, mode: SparsityMode, sparsities: Sparsities) -> Any:
    """Masks at the final sparsities applied once, no training: the `before fine-tune` model."""
    wrapped = wrap(model, mode, sparsities, constant_schedule)
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
        kernel = _kernel(layer)
        per_layer[layer.name] = float(np.mean(kernel == 0))
        total += kernel.size
        zeros += int(np.sum(kernel == 0))
    return SparsityStats(zeros / total if total else 0.0, total, zeros, per_layer)


def gzip_bytes(path: Path) -> int:
    """Size of the file after gzip -9 (mtime fixed): what zeros buy on disk or over the air."""
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0))
