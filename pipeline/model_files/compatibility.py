"""A user's model against the dataset it will be trained, distilled and validated on: one
image input of the dataset's height, width and channels, one output per class, logits.

Every stage reads logits (distillation softens them with a temperature; the zoo returns
them), and `keras.applications` and most tutorials end in a softmax: a final softmax is
dropped, which leaves every prediction (the arg-max) as it was.
"""

from __future__ import annotations

from typing import Any

from devices.errors import ModelError


def _is_softmax(function: Any) -> bool:
    return getattr(function, "__name__", "") == "softmax"


def as_logits(model: Any) -> tuple[Any, bool]:
    """`model` without a final softmax, and whether it had one."""
    from devices.tf_env import keras  # deferred: TensorFlow only to change a model

    if len(model.outputs) != 1:
        return model, False
    layer = model.get_layer(model.output_names[0])
    if isinstance(layer, keras.layers.Softmax) or (
            isinstance(layer, keras.layers.Activation) and _is_softmax(layer.activation)):
        return keras.Model(model.inputs, layer.input, name=model.name), True
    if _is_softmax(getattr(layer, "activation", None)):
        layer.activation = keras.activations.linear
        clone = keras.models.clone_model(model)  # a graph traced with the new activation
        clone.set_weights(model.get_weights())
        return clone, True
    return model, False


def _shape_text(shape: Any) -> str:
    return "(" + ", ".join("any" if d is None else str(int(d)) for d in shape) + ")"


def check_input_shape(shape: tuple[Any, ...], dataset_shape: tuple[int, ...], *, label: str,
                      dataset_name: str) -> None:
    """One image input (height, width, channels) of the dataset's size; a dimension left
    open (None) is refused too: every artifact is exported with fixed shapes."""
    if tuple(shape) == tuple(dataset_shape):
        return
    fixed = f"keras.Input(shape={tuple(dataset_shape)})"
    if len(shape) == 3 and shape[-1] == dataset_shape[-1] and None in shape:
        raise ModelError(f"{label} takes inputs of shape {_shape_text(shape)}, with no fixed "
                         f"size, and the exported files need one: {dataset_name} has images of "
                         f"{_shape_text(dataset_shape)} (hint: save the model built on {fixed})")
    raise ModelError(
        f"{label} takes inputs of shape {_shape_text(shape)} (height, width, channels) and "
        f"{dataset_name} has images of {_shape_text(dataset_shape)} (hint: a dataset of the "
        f"model's input size and channels, or the model saved with {fixed})")


def check_against_dataset(model: Any, *, input_shape: tuple[int, ...], classes: int,
                          label: str, dataset_name: str) -> None:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(f"{label} has {len(model.inputs)} inputs and {len(model.outputs)} "
                         "outputs; the pipeline feeds one image and reads one vector of class "
                         "scores (hint: save a model with one input and one output)")
    check_input_shape(tuple(model.inputs[0].shape[1:]), input_shape, label=label,
                      dataset_name=dataset_name)
    output = tuple(model.outputs[0].shape[1:])
    if len(output) != 1 or output[0] != classes:
        outputs = (f"{output[0]} class scores" if len(output) == 1
                   else f"a tensor of shape {_shape_text(output)}")
        raise ModelError(
            f"{label} outputs {outputs} per image and {dataset_name} has {classes} classes "
            f"(hint: the model's last layer with {classes} units, e.g. "
            f"keras.layers.Dense({classes}), or the dataset it was trained for)")


def declared_input_shape(configs: tuple[dict[str, Any], ...]) -> tuple[Any, ...] | None:
    """The input shape an architecture document states, when it has exactly one input:
    read before anything loads, so a wrong size is refused before any stage trains."""
    root = configs[0].get("config", {}) if configs else {}
    layers = root.get("layers", []) if isinstance(root, dict) else []
    inputs = [entry.get("config", {}) for entry in layers
              if isinstance(entry, dict) and entry.get("class_name") == "InputLayer"]
    shapes = [entry.get("batch_shape") or entry.get("batch_input_shape") for entry in inputs]
    if not inputs and isinstance(root, dict) and root.get("build_input_shape"):
        shapes = [root["build_input_shape"]]
    if len(shapes) != 1 or not isinstance(shapes[0], list):
        return None
    return tuple(shapes[0][1:])
