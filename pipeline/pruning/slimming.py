"""Network Slimming's sparsity training: an L1 penalty on BatchNorm scales (gamma), so that
unimportant channels drift to gamma ~ 0 before `bn_scale` pruning removes them."""

from __future__ import annotations

from typing import Any

from devices.errors import PruningError
from devices.tf_env import keras, tf


def add_slimming_penalty(model: Any, penalty: float) -> int:
    """Attach `penalty * sum |gamma|` over every scaled BatchNorm to `model.losses`.

    Both Keras `fit` and the Distiller add `model.losses` to the training loss. Returns the
    number of BatchNorm layers penalised. The penalty lives on this model object only: the
    pruned model is rebuilt from config and does not carry it.
    """
    norms = [layer for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization) and layer.scale]
    if not norms:
        raise PruningError(
            f"prune.slimming_penalty = {penalty} needs BatchNormalization layers with a scale in "
            f"model {model.name!r}, found none (hint: set student.batch_norm = true)"
        )
    gammas = [norm.gamma for norm in norms]
    model.add_loss(lambda: penalty * tf.add_n([tf.reduce_sum(tf.abs(g)) for g in gammas]))
    return len(norms)
