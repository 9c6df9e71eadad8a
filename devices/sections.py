"""Typed sections from TOML tables: one validation for the pipeline config and the target
profiles (docs/architecture.md, "Configuration").

A section is a frozen dataclass; a field's metadata says which values it allows (`choice`,
`bounded`, `subset`), a field without a default is required, and `build_section` refuses
an unknown key, a wrong type, a non-finite number or a value out of range with a
ConfigError (exit 2) that names the key, the value and what is allowed. A field whose type
is itself such a dataclass is a section inside the section, written as an inline table
(`prune.budget = { target = "mcu", instructions = 300000 }`) and checked the same way.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import field
from typing import Any

from devices.errors import ConfigError


def choice(default: Any, *allowed: Any) -> Any:
    return field(default=default, metadata={"choices": allowed})


def required_choice(*allowed: Any) -> Any:
    return field(metadata={"choices": allowed})


def bounded(default: Any, low: float | None = None, high: float | None = None) -> Any:
    return field(default=default, metadata={"range": (low, high)})


def subset(default: tuple[str, ...], *allowed: str) -> Any:
    return field(default=default, metadata={"subset": allowed})


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def build_section(label: str, cls: type, values: Any) -> Any:
    """`cls(**values)` after checking every key and value; `label` prefixes each key in
    messages (e.g. "student" gives "student.epochs")."""
    if not isinstance(values, dict):
        raise ConfigError(f"[{label}] must be a table of keys, got {values!r} (hint: an inline "
                          f"table is written {label} = {{ key = value }})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in values:
        if key not in fields:
            expected = ", ".join(sorted(fields)) or "nothing (the section takes no keys)"
            raise ConfigError(f"unknown key {label}.{key}; expected one of {expected}")
    missing = [name for name, spec in fields.items() if name not in values
               and spec.default is dataclasses.MISSING
               and spec.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing key {label}.{missing[0]} (hint: every profile in "
                          "devices/targets/ shows one)")
    checked = {
        key: check_value(f"{label}.{key}", hints[key], fields[key].metadata, value)
        for key, value in values.items()
    }
    return cls(**checked)


def check_field(cls: type, name: str, value: Any, key: str) -> Any:
    """One field's value checked as build_section would; `key` names it in messages."""
    spec = next(f for f in dataclasses.fields(cls) if f.name == name)
    return check_value(key, typing.get_type_hints(cls)[name], spec.metadata, value)


def check_value(key: str, annotation: Any, metadata: Any, value: Any) -> Any:
    value = _coerce_type(key, annotation, value)
    if value is None:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} = {value!r} is not a finite number")
    if "choices" in metadata and value not in metadata["choices"]:
        allowed = ", ".join(repr(c) for c in metadata["choices"])
        raise ConfigError(f"{key} = {value!r} is not allowed; expected one of {allowed}")
    if "subset" in metadata:
        bad = [item for item in value if item not in metadata["subset"]]
        if bad or not value:
            allowed = ", ".join(repr(c) for c in metadata["subset"])
            raise ConfigError(
                f"{key} = {list(value)!r} is not allowed; expected a non-empty list of {allowed}"
            )
    if "range" in metadata:
        low, high = metadata["range"]
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(
                f"{key} = {value!r} is out of range; expected a value from {low} to "
                f"{'any' if high is None else high}"
            )
    return value


def _coerce_type(key: str, annotation: Any, value: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        arguments = typing.get_args(annotation)
        if value is None and type(None) in arguments:
            return None
        annotation = next(a for a in arguments if a is not type(None))
        origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):  # a section inside a section: an inline table
        if isinstance(value, annotation):
            return value
        return build_section(key, annotation, value)
    if origin is tuple:
        return _coerce_list(key, typing.get_args(annotation)[0], value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} = {value!r} has the wrong type; expected true or false")
    if annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key} = {value!r} has the wrong type; expected an integer")
    if not isinstance(value, annotation):
        raise ConfigError(
            f"{key} = {value!r} has the wrong type; expected {annotation.__name__}"
        )
    return value


def _coerce_list(key: str, item_type: type, value: Any) -> tuple[Any, ...]:
    """A list of strings or of numbers, also written `a,b` or as one item (`--set` text)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # a one-item list given as a number: `study.levels=0.5`
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if item_type is float:
        return _numbers(key, value)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} = {value!r} has the wrong type; expected a list of strings")
    return tuple(value)


def _numbers(key: str, value: Any) -> tuple[float, ...]:
    wrong = ConfigError(f"{key} = {value!r} has the wrong type; expected a list of numbers "
                        "(hint: e.g. [123.7, 116.3, 103.5])")
    if not isinstance(value, list | tuple):
        raise wrong
    numbers = []
    for item in value:
        if isinstance(item, bool):
            raise wrong
        try:
            number = float(item)
        except (TypeError, ValueError) as exc:
            raise wrong from exc
        if not math.isfinite(number):
            raise ConfigError(f"{key} = {value!r} holds a value that is not a finite number")
        numbers.append(number)
    return tuple(numbers)
