"""What a model file would run, read from its saved architecture before it is deserialised.

A `Lambda` layer (and a lambda passed as a layer argument) is stored as Python bytecode
that loading executes: the class of CVE-2024-3660 and CVE-2025-1550. Keras 3 and tf_keras'
`.keras` loader refuse it under `safe_mode`; tf_keras' HDF5 and SavedModel loaders have no
such switch, so the pipeline reads every format's architecture JSON itself and refuses such
layers by name unless the section's `trust_model_code` is true. A layer class that the
saving code registered itself (not Keras') cannot be built here at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from devices.errors import ModelError
from pipeline.model_files.formats import SavedArchitecture

CODE_CLASSES = frozenset({"Lambda", "__lambda__"})  # Keras 2 and 3 names of stored bytecode
BUILT_IN_PACKAGES = ("keras", "tf_keras")  # the modules built-in classes are saved under


@dataclass(frozen=True)
class SavedObject:
    """One serialised Keras object: a layer, or an argument such as an initializer."""

    name: str
    class_name: str
    module: str | None  # the Keras 3 / tf_keras .keras formats record it, the older do not
    registered_name: str | None
    stores_code: bool


def saved_objects(document: Any, owner: str = "") -> Iterator[SavedObject]:
    """Every `{"class_name": …, "config": …}` object in an architecture document."""
    if isinstance(document, list):
        for item in document:
            yield from saved_objects(item, owner)
        return
    if not isinstance(document, dict):
        return
    config = document.get("config")
    if "class_name" in document:
        name = (config.get("name") if isinstance(config, dict) else None) or document.get(
            "name") or owner
        yield SavedObject(
            name=str(name), class_name=str(document["class_name"]),
            module=document.get("module"), registered_name=document.get("registered_name"),
            stores_code=(document["class_name"] in CODE_CLASSES
                         or (isinstance(config, dict) and config.get("function_type") == "lambda")),
        )
        owner = str(name)
    for value in document.values():
        yield from saved_objects(value, owner)


def _is_custom(item: SavedObject) -> bool:
    """Registered by the code that saved the model (`register_keras_serializable`)."""
    if item.module is not None and item.module.split(".", 1)[0] not in BUILT_IN_PACKAGES:
        return True
    return item.registered_name is not None and item.registered_name != item.class_name


def check_architecture(architecture: SavedArchitecture, *, label: str, trust_setting: str,
                       trusted: bool) -> None:
    """Refuse what loading would execute (unless trusted) and what cannot be built."""
    objects = [item for document in architecture.configs for item in saved_objects(document)]
    custom = sorted({(item.name, item.registered_name or f"{item.module}.{item.class_name}")
                     for item in objects if _is_custom(item) and not item.stores_code})
    if custom:
        named = ", ".join(f"'{name}' ({kind})" for name, kind in custom)
        raise ModelError(
            f"{label}: layer {named} is of a class defined by the code that saved the model, "
            "not by Keras, and cannot be built here (hint: rebuild it from built-in Keras "
            "layers, then save the model again)")
    code: dict[str, str] = {}  # layer name -> Lambda, or the class of a layer given a lambda
    for item in objects:
        if item.stores_code and code.get(item.name) in (None, "__lambda__"):
            code[item.name] = item.class_name
    if code and not trusted:
        named = ", ".join(f"'{name}' ({kind})" for name, kind in sorted(code.items()))
        raise ModelError(
            f"{label}: layer {named} stores Python code that loading would run; Keras' "
            "safe_mode refuses it (the class of CVE-2024-3660 and CVE-2025-1550) (hint: rebuild "
            f"it from built-in Keras layers; or, only for a file you trust, set {trust_setting} "
            "= true, which runs that code)")
