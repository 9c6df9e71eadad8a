"""Remove training-only wrappers before conversion.

A model still wrapped by tfmot's `prune_low_magnitude` converts, but carries its masks and
thresholds into the file (about 50% larger for a small CNN); stripping gives the plain
layers with the pruned (zeroed) weights.
"""

from __future__ import annotations

from typing import Any

PRUNING_WRAPPER = "PruneLowMagnitude"


def has_pruning_wrappers(model: Any) -> bool:
    return any(type(layer).__name__ == PRUNING_WRAPPER for layer in model.layers)


def strip_training_wrappers(model: Any) -> Any:
    if not has_pruning_wrappers(model):
        return model
    import tensorflow_model_optimization as tfmot  # only when a wrapper is present

    return tfmot.sparsity.keras.strip_pruning(model)
