"""Quantization-aware training's model (README, "Quantization-aware training"): the final
Keras model with TFMOT's fake-quantization wrappers (`quantize_annotate_model` then
`quantize_apply`, what `quantize_model` does), so fine-tuning learns int8's rounding and
clipping, and the TFLite converter takes every range from the wrappers.

A model TFMOT's default 8-bit scheme cannot wrap is refused before anything is wrapped,
each layer by name and type: a layer type without a quantization config (LayerNormalization,
Lambda, a nested model, ...), or a BatchNormalization that does not follow the Conv2D,
DepthwiseConv2D or Dense layer it is folded into.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow_model_optimization as tfmot

from devices.errors import ExportError
from devices.tf_env import keras

# Which scheme wraps the model: a sparse model (prune.method magnitude or m_by_n) keeps its
# zeros through fine-tuning with TFMOT's pruning-preserving scheme; a dense one gets the
# default 8-bit scheme.
SCHEMES: dict[str, Callable[[], Any]] = {
    "default_8bit": tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme,
    "prune_preserve_8bit": tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme,
}
DENSE_SCHEME, SPARSE_SCHEME = "default_8bit", "prune_preserve_8bit"
# Rewritten by the scheme's layout transforms before its registry is asked
# (default_8bit_quantize_layout_transform.py), so supported though the registry lacks them.
TRANSFORMED_LAYERS = frozenset({"InputLayer", "SeparableConv1D", "SeparableConv2D"})
# BatchNormalization is wrapped only folded into the linear layer before it.
BATCH_NORM_HOSTS = frozenset({"Conv2D", "DepthwiseConv2D", "Dense"})
BATCH_NORMS = frozenset({"BatchNormalization", "SyncBatchNormalization"})
FALLBACK_HINT = 'set quantize.method = "ptq" (post-training int8 needs no wrappers)'
MOVING_AVERAGE = tfmot.quantization.keras.quantizers.MovingAverageQuantizer  # activation ranges
CALIBRATION_BATCH = 256


def _inbound_layers(layer: Any) -> list[Any]:
    nodes = layer.inbound_nodes
    if not nodes:
        return []
    inbound = nodes[0].inbound_layers
    return list(inbound) if isinstance(inbound, list | tuple) else [inbound]


def _folds_into_its_input(layer: Any) -> bool:
    inbound = _inbound_layers(layer)
    return (len(inbound) == 1 and type(inbound[0]).__name__ in BATCH_NORM_HOSTS
            and keras.activations.serialize(inbound[0].activation) == "linear")


def _wrappable(layer: Any, registry: Any) -> bool:
    kind = type(layer).__name__
    if kind in TRANSFORMED_LAYERS:
        return True
    if kind in BATCH_NORMS:
        return _folds_into_its_input(layer)
    return bool(registry.supports(layer))


def unwrappable_layers(model: Any) -> list[str]:
    """`name (Type)` of every layer TFMOT's default 8-bit scheme cannot wrap."""
    registry = tfmot.quantization.keras.default_8bit.Default8BitQuantizeRegistry()
    return [f"{layer.name} ({type(layer).__name__})" for layer in model.layers
            if not _wrappable(layer, registry)]


def refuse_unwrappable(model: Any) -> None:
    """ExportError naming every layer quantization-aware training cannot wrap."""
    name = getattr(model, "name", "?")
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise ExportError(
            f"quantization-aware training wraps Sequential and functional models; model "
            f"{name!r} is a {type(model).__name__} subclass (hint: {FALLBACK_HINT})")
    refused = unwrappable_layers(model)
    if refused:
        raise ExportError(
            f"quantization-aware training cannot wrap {len(refused)} layer(s) of model "
            f"{name!r}: {', '.join(refused)}; TFMOT's default 8-bit scheme has no quantization "
            "for these types (BatchNormalization only right after a Conv2D, DepthwiseConv2D or "
            f"linear Dense layer) (hint: {FALLBACK_HINT}, or replace the layers)")


def quantize_aware(model: Any, scheme: str = DENSE_SCHEME) -> Any:
    """A new model: `model`'s layers and weights inside fake-quantization wrappers (its
    activation ranges as TFMOT starts them: see `calibrate_ranges`)."""
    if scheme not in SCHEMES:
        raise ExportError(f"unknown quantization-aware scheme {scheme!r}; expected one of "
                          f"{', '.join(SCHEMES)}")
    refuse_unwrappable(model)
    try:
        annotated = tfmot.quantization.keras.quantize_annotate_model(model)
        wrapped = tfmot.quantization.keras.quantize_apply(annotated, SCHEMES[scheme]())
    except (ValueError, RuntimeError) as exc:  # what TFMOT raises for a model it refuses
        raise ExportError(
            f"quantization-aware training cannot wrap model {getattr(model, 'name', '?')!r}: "
            f"{' '.join(str(exc).split())[:1000]} (hint: {FALLBACK_HINT})") from exc
    return wrapped


def _moving_average_ranges(layer: Any) -> list[tuple[str, dict[str, Any]]]:
    """(the float layer's name, its {min_var, max_var}) of each range a wrapped layer tracks
    as a moving average: its output, or its activation's output (TFMOT's wrapper keeps them
    in these attributes; tensorflow-model-optimization is pinned below 0.9)."""
    if not isinstance(layer, tfmot.quantization.keras.QuantizeWrapper):
        return []
    ranges = []
    outputs = getattr(layer, "_output_quantizers", None) or []
    if outputs and isinstance(outputs[0], MOVING_AVERAGE):
        ranges.append((layer.layer.name, layer._output_quantizer_vars))
    for activation in getattr(layer, "_quantize_activations", []):
        variables = getattr(activation, "_post_activation_vars", None)
        if variables and isinstance(activation.quantizer, MOVING_AVERAGE):
            ranges.append((layer.layer.name, variables))
    return ranges


def calibrate_ranges(wrapped: Any, model: Any, samples: np.ndarray) -> int:
    """Start each activation range of a freshly wrapped model at the range the float `model`
    gives that tensor on `samples`, as post-training calibration measures it; returns how
    many ranges were set.

    TFMOT starts every activation range at [-6, 6] and moves it 0.1% of the way towards each
    training batch's range per step: after the few hundred steps a small dataset's few epochs
    make, the ranges are still mostly where they started (logits of -16 to 23 clipped
    near +-8, half of a ReLU's range spent on negatives), and fine-tuning learns around that
    instead of around int8's rounding. Ranges quantized before an activation (softmax, tanh)
    and layers renamed by TFMOT's transforms (separable convolutions) keep TFMOT's start."""
    float_layers = {layer.name for layer in model.layers}
    targets = [(name, variables) for layer in wrapped.layers
               for name, variables in _moving_average_ranges(layer) if name in float_layers]
    if not targets:
        return 0
    names = list(dict.fromkeys(name for name, _ in targets))
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in names])
    batches = [probe(samples[start:start + CALIBRATION_BATCH], training=False)
               for start in range(0, len(samples), CALIBRATION_BATCH)]
    if len(names) == 1:
        batches = [[batch] for batch in batches]
    for index, name in enumerate(names):
        values = np.concatenate([np.asarray(batch[index]) for batch in batches])
        for target, variables in targets:
            if target == name:  # zero stays inside every range, as TFLite requires
                variables["min_var"].assign(min(float(values.min()), 0.0))
                variables["max_var"].assign(max(float(values.max()), 0.0))
    return len(targets)
