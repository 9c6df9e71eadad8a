"""The proof that a rebuilt model is the user's model: the same outputs on sample inputs.

Both run TensorFlow's kernels, but not always the same ones (batch norm, for one, is fused
in tf_keras), so outputs agree to float32 rounding in another summation order, not bit for
bit: `RELATIVE_TOLERANCE` per element, with an absolute floor of that share of the largest
output, so elements near zero are judged on the output's own scale. Anything a wrong
weight, axis or activation changes is orders of magnitude larger. Every layer's own outputs
are compared as well as the model's, so a difference is named by the layer where it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.errors import ModelError
from pipeline.model_files.translation import REBUILD_HINT, tf_keras

# float32 epsilon (1.2e-7) times ~800: a few hundred accumulations in another order
RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Equivalence:
    samples: int
    layers: int  # layers whose own outputs were compared too
    max_difference: float  # the largest |rebuilt - original| over the model's outputs
    tolerance: float  # the absolute floor it was held to (RELATIVE_TOLERANCE x the scale)

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "layers": self.layers,
                "max_difference": self.max_difference, "tolerance": self.tolerance}


def _outputs(model: Any, samples: np.ndarray) -> list[np.ndarray]:
    from devices.tf_env import tf  # deferred: TensorFlow only to run a model

    return [np.asarray(tensor, np.float64)
            for tensor in tf.nest.flatten(model(samples, training=False))]


def _compare(rebuilt: np.ndarray, original: np.ndarray) -> tuple[bool, float, float]:
    """(within tolerance, largest difference, absolute floor) of one output tensor."""
    if rebuilt.shape != original.shape:
        return False, float("inf"), 0.0
    floor = RELATIVE_TOLERANCE * float(np.max(np.abs(original), initial=0.0))
    difference = np.abs(rebuilt - original)
    within = bool(np.all(difference <= RELATIVE_TOLERANCE * np.abs(original) + floor))
    return within, float(np.max(difference, initial=0.0)), floor


def _layer_probes(original: Any, rebuilt: Any) -> tuple[list[str], Any, Any]:
    """Every layer with one output tensor, as extra outputs of both models: a difference
    is found where it starts, and not hidden by a final softmax's near-even outputs."""
    import keras  # deferred: Keras 3 only for a Keras 3 file

    names, original_tensors, rebuilt_tensors = [], [], []
    for layer in original.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        try:  # a layer called more than once has no single output
            original_tensor, rebuilt_tensor = layer.output, rebuilt.get_layer(layer.name).output
        except (AttributeError, ValueError):
            continue
        if isinstance(original_tensor, list | tuple) or isinstance(rebuilt_tensor, list | tuple):
            continue
        names.append(f"'{layer.name}' ({type(layer).__name__})")
        original_tensors.append(original_tensor)
        rebuilt_tensors.append(rebuilt_tensor)
    inputs = original.inputs[0] if len(original.inputs) == 1 else original.inputs
    return (names, keras.Model(inputs, [*original.outputs, *original_tensors]),
            tf_keras().Model(rebuilt.inputs, [*rebuilt.outputs, *rebuilt_tensors]))


def prove_same_outputs(original: Any, rebuilt: Any, samples: np.ndarray, label: str
                       ) -> Equivalence:
    """The rebuilt tf_keras model against the Keras 3 original on `samples`, every layer's
    outputs and the model's, or a ModelError naming the first layer that differs."""
    samples = np.asarray(samples, np.float32)
    names, original_probe, rebuilt_probe = _layer_probes(original, rebuilt)
    expected, actual = _outputs(original_probe, samples), _outputs(rebuilt_probe, samples)
    model_outputs = len(expected) - len(names)
    comparisons = [_compare(a, e) for a, e in zip(actual, expected)]
    if len(actual) == len(expected) and all(within for within, _, _ in comparisons):
        finals = comparisons[:model_outputs]
        return Equivalence(len(samples), len(names), max(c[1] for c in finals),
                           max(c[2] for c in finals))
    failed = [index for index, (within, _, _) in enumerate(comparisons) if not within]
    layer_failures = [index - model_outputs for index in failed if index >= model_outputs]
    where = (f"; layer {names[layer_failures[0]]} is the first whose outputs differ"
             if layer_failures else "")
    largest = max((c[1] for c in comparisons[:model_outputs]), default=float("inf"))
    raise ModelError(
        f"{label}: its tf_keras rebuild does not compute what the Keras 3 model does (largest "
        f"output difference {largest:.3g} on {len(samples)} samples, allowed "
        f"{RELATIVE_TOLERANCE:g} of each output plus {RELATIVE_TOLERANCE:g} of its largest)"
        f"{where} ({REBUILD_HINT})")
