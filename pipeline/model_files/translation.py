"""One Keras 3 layer's saved config as the same tf_keras layer.

Most built-in layers have one name and one set of keys in both: the class is looked up by
name in `tf_keras.layers`, a Keras 3 dtype policy becomes its name, nested initializers,
regularizers and constraints keep the keys their tf_keras class takes, and the few renamed
keys are in `RENAMED_KEYS`. A key tf_keras lacks is dropped when it is off (None or false,
as Keras 3 writes its newer options: `quantization_config`, `lora_rank`, an initializer's
`input_axes`), and refused by layer name when it is set. The rebuilt model is proven by its
outputs afterwards (equivalence.py), so a layer that has one config and two behaviours is
caught there, also by name.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

from devices.errors import ModelError

REBUILD_HINT = ("hint: build the model from layers both Keras versions have, or save it with "
                "tf_keras (TF_USE_LEGACY_KERAS=1, import tf_keras as keras)")
# every tf_keras layer takes these through **kwargs (tf_keras' Layer.__init__)
BASE_LAYER_KEYS = frozenset({
    "name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
    "batch_size", "weights", "activity_regularizer", "autocast", "implementation",
})
RENAMED_KEYS: dict[str, dict[str, str]] = {  # Keras 3 class -> {Keras 3 key: tf_keras key}
    "LeakyReLU": {"negative_slope": "alpha"},
}
# nested objects by the module Keras 3 records: where tf_keras keeps the same classes
OBJECT_PACKAGES = {"keras.initializers": "initializers", "keras.regularizers": "regularizers",
                   "keras.constraints": "constraints"}
FLOAT_POLICIES = frozenset({"DTypePolicy", "FloatDTypePolicy"})
# layers whose config names the same class in both versions but whose behaviour cannot move
NOT_REBUILT: dict[str, str] = {
    "Lambda": "runs a Python function written for Keras 3 (keras.ops), which tf_keras cannot "
              "take over",
}


def tf_keras() -> Any:
    """The tf_keras module."""
    from devices.tf_env import keras  # deferred: TensorFlow only to rebuild a model

    return keras


@cache
def accepted_keys(cls: type) -> frozenset[str]:
    """The constructor arguments a tf_keras class takes, through its base classes."""
    keys = set(BASE_LAYER_KEYS) if issubclass(cls, tf_keras().layers.Layer) else set()
    for klass in cls.__mro__:
        constructor = klass.__dict__.get("__init__")
        if constructor is not None and klass is not object:
            parameters = inspect.signature(constructor).parameters.values()
            keys.update(p.name for p in parameters if p.name != "self" and p.kind in (
                p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return frozenset(keys)


def _is_off(value: Any) -> bool:
    return value is None or value is False


def _dtype(value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        return value
    if value.get("class_name") not in FLOAT_POLICIES:
        raise ModelError(f"{where} uses the Keras 3 dtype policy {value.get('class_name')} "
                         f"(quantized weights), which tf_keras does not have ({REBUILD_HINT})")
    return value.get("config", {}).get("name", "float32")


def _activation(value: Any, where: str) -> Any:
    if not isinstance(value, str):
        raise ModelError(f"{where} has an activation that is not a built-in one ({REBUILD_HINT})")
    try:
        tf_keras().activations.get(value)
    except ValueError as exc:
        raise ModelError(f"{where} uses the activation {value!r}, which tf_keras does not have "
                         f"({REBUILD_HINT})") from exc
    return value


def _nested_object(value: dict[str, Any], where: str) -> dict[str, Any]:
    """An initializer, regularizer or constraint: the tf_keras class of the same name."""
    package = OBJECT_PACKAGES.get(value.get("module") or "")
    class_name = value.get("class_name")
    cls = getattr(getattr(tf_keras(), package), class_name, None) if package else None
    if not isinstance(cls, type):
        raise ModelError(f"{where} uses {value.get('module')}.{class_name}, which tf_keras "
                         f"does not have ({REBUILD_HINT})")
    config = _kept_keys(value.get("config") or {}, accepted_keys(cls), {}, f"{where}'s "
                        f"{class_name}")
    return {"class_name": class_name, "config": config}


def _value(key: str, value: Any, where: str) -> Any:
    if key == "dtype":
        return _dtype(value, where)
    if key == "activation":
        return _activation(value, where)
    if isinstance(value, dict) and "class_name" in value:
        return _nested_object(value, where)
    return value


def _kept_keys(config: dict[str, Any], accepted: frozenset[str], renamed: dict[str, str],
               where: str) -> dict[str, Any]:
    kept = {}
    for key, value in config.items():
        key = renamed.get(key, key)
        if key in accepted:
            kept[key] = _value(key, value, where)
        elif not _is_off(value):
            raise ModelError(f"{where} sets {key} = {value!r}, which tf_keras does not have "
                             f"({REBUILD_HINT})")
    return kept


def tf_keras_layer(entry: dict[str, Any], label: str) -> Any:
    """A new tf_keras layer from a Keras 3 layer entry of a saved architecture."""
    class_name = str(entry.get("class_name"))
    config = entry.get("config") or {}
    name = config.get("name") or entry.get("name")
    where = f"{label}: layer '{name}' ({class_name})"
    module = entry.get("module") or ""
    if not module.startswith("keras.layers"):
        raise ModelError(f"{where} is the Keras 3 operation {module}.{class_name}, not a layer; "
                         "tf_keras has no counterpart (hint: use the keras.layers layer of the "
                         f"same name instead of keras.ops; {REBUILD_HINT.removeprefix('hint: ')})")
    if class_name in NOT_REBUILT:
        raise ModelError(f"{where} {NOT_REBUILT[class_name]} ({REBUILD_HINT})")
    cls = getattr(tf_keras().layers, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, tf_keras().layers.Layer)):
        raise ModelError(f"{where} has no tf_keras counterpart ({REBUILD_HINT})")
    kept = _kept_keys(config, accepted_keys(cls), RENAMED_KEYS.get(class_name, {}), where)
    try:
        return cls.from_config(kept)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where} cannot be built in tf_keras: {exc} ({REBUILD_HINT})") from exc
