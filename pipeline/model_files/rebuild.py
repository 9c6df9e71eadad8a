"""A Keras 3 model rebuilt as a tf_keras model, layer by layer, with its weights.

The pipeline trains, prunes and converts tf_keras models (TFMOT needs them), and TensorFlow
2.21 saves Keras 3 files by default. The rebuild reads the Keras 3 model's own serialised
architecture: each layer becomes its tf_keras counterpart (translation.py), each saved call
of a layer is replayed on the tf_keras tensors its inputs name, and nested models are
rebuilt the same way. Each layer's weights are then copied by name, shapes checked, and
equivalence.py proves the copy by its outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devices.errors import ModelError
from pipeline.model_files.translation import REBUILD_HINT, tf_keras, tf_keras_layer

TensorKey = tuple[str, int, int]  # (layer name, call index, output index): Keras' history
KERAS_TENSOR = "__keras_tensor__"


class _NotYetMade(Exception):
    """A call's input comes from a call that has not been replayed yet."""


def _references(value: Any) -> list[TensorKey]:
    """`input_layers` / `output_layers`: one [name, node, index] or a list of them."""
    if len(value) == 3 and isinstance(value[0], str):
        return [tuple(value)]  # type: ignore[list-item]
    return [tuple(item) for item in value]


def _resolved(value: Any, tensors: dict[TensorKey, Any]) -> Any:
    """A saved call argument with every Keras tensor replaced by its tf_keras tensor."""
    if isinstance(value, dict) and value.get("class_name") == KERAS_TENSOR:
        key = tuple(value["config"]["keras_history"])
        if key not in tensors:
            raise _NotYetMade(key)
        return tensors[key]
    if isinstance(value, list | tuple):
        return [_resolved(item, tensors) for item in value]
    if isinstance(value, dict):
        return {key: _resolved(item, tensors) for key, item in value.items()}
    return value


def _input_tensor(entry: dict[str, Any], label: str) -> Any:
    config = entry["config"]
    if config.get("sparse") or config.get("ragged"):
        raise ModelError(f"{label}: input '{config.get('name')}' is sparse or ragged; the "
                         "pipeline feeds dense images")
    return tf_keras().Input(batch_shape=tuple(config["batch_shape"]),
                            dtype=config.get("dtype") or "float32", name=config.get("name"))


def _layer(entry: dict[str, Any], label: str) -> Any:
    if entry.get("class_name") in MODEL_BUILDERS:
        return build_model(entry, label)
    return tf_keras_layer(entry, label)


def _functional(document: dict[str, Any], label: str) -> Any:
    from devices.tf_env import tf  # deferred: TensorFlow only to rebuild a model

    config = document["config"]
    tensors: dict[TensorKey, Any] = {}
    layers: dict[str, Any] = {}
    calls: list[tuple[str, int, dict[str, Any]]] = []
    for entry in config["layers"]:
        name = entry.get("name") or entry["config"]["name"]
        if entry.get("class_name") == "InputLayer":
            tensors[(name, 0, 0)] = _input_tensor(entry, label)
            continue
        layers[name] = _layer(entry, label)
        calls.extend((name, index, node) for index, node in enumerate(entry["inbound_nodes"]))
    while calls:  # a shared layer's later call may wait for a layer listed after it
        waiting = []
        for name, index, node in calls:
            try:
                arguments = _resolved(node.get("args", []), tensors)
                keywords = {key: value for key, value in
                            _resolved(node.get("kwargs", {}), tensors).items()
                            if value is not None}
            except _NotYetMade:
                waiting.append((name, index, node))
                continue
            outputs = layers[name](*arguments, **keywords)
            for position, tensor in enumerate(tf.nest.flatten(outputs)):
                tensors[(name, index, position)] = tensor
        if len(waiting) == len(calls):
            names = ", ".join(sorted({name for name, _, _ in waiting}))
            raise ModelError(f"{label}: layers {names} take inputs no layer makes: the saved "
                             "architecture is damaged (hint: save the model again)")
        calls = waiting
    inputs = [tensors[key] for key in _references(config["input_layers"])]
    outputs = [tensors[key] for key in _references(config["output_layers"])]
    return tf_keras().Model(inputs=inputs[0] if len(inputs) == 1 else inputs,
                            outputs=outputs[0] if len(outputs) == 1 else outputs,
                            name=config.get("name"))


def _sequential(document: dict[str, Any], label: str) -> Any:
    config = document["config"]
    entries = list(config["layers"])
    if entries and entries[0].get("class_name") == "InputLayer":
        tensor = _input_tensor(entries.pop(0), label)
    elif config.get("build_input_shape"):
        tensor = tf_keras().Input(batch_shape=tuple(config["build_input_shape"]))
    else:
        raise ModelError(f"{label}: the Sequential model was saved unbuilt, without an input "
                         "shape (hint: start it with keras.Input(shape=...), then save it again)")
    inputs = tensor
    for entry in entries:
        tensor = _layer(entry, label)(tensor)
    return tf_keras().Model(inputs=inputs, outputs=tensor, name=config.get("name"))


MODEL_BUILDERS: dict[str, Callable[[dict[str, Any], str], Any]] = {
    "Functional": _functional,
    "Model": _functional,
    "Sequential": _sequential,
}


def build_model(document: dict[str, Any], label: str) -> Any:
    """A tf_keras model with the architecture of a serialised Keras 3 model, new weights."""
    builder = MODEL_BUILDERS.get(document.get("class_name", ""))
    if builder is None:
        raise ModelError(
            f"{label}: the model is a subclassed {document.get('class_name')}, whose file holds "
            "no layer graph to rebuild (hint: build it with the functional API or Sequential, "
            f"then save it again; {REBUILD_HINT.removeprefix('hint: ')})")
    return builder(document, label)


def copy_weights(source: Any, target: Any, label: str) -> None:
    """Every Keras 3 layer's weights into the tf_keras layer of the same name."""
    for layer in source.layers:
        rebuilt = target.get_layer(layer.name)
        if hasattr(layer, "layers") and hasattr(rebuilt, "layers"):  # a nested model
            copy_weights(layer, rebuilt, label)
            continue
        weights = layer.get_weights()
        shapes = [tuple(w.shape) for w in weights]
        rebuilt_shapes = [tuple(w.shape) for w in rebuilt.get_weights()]
        if shapes != rebuilt_shapes:
            raise ModelError(
                f"{label}: layer '{layer.name}' ({type(layer).__name__}) holds weights of "
                f"shapes {shapes} in Keras 3 and {rebuilt_shapes} in tf_keras: the two store "
                f"it differently ({REBUILD_HINT})")
        if weights:
            rebuilt.set_weights(weights)


def rebuild_in_tf_keras(model: Any, label: str) -> Any:
    """The Keras 3 `model` as a tf_keras model with the same weights (not yet proven)."""
    import keras  # deferred: Keras 3 (the `keras` package) loads only for a Keras 3 file

    rebuilt = build_model(keras.saving.serialize_keras_object(model), label)
    copy_weights(model, rebuilt, label)
    return rebuilt
