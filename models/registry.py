"""Model zoo registry: `create_model(name, input_shape, num_classes, **options)`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from devices.errors import ModelError

ModelBuilder = Callable[..., Any]
_BUILDERS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    def decorator(builder: ModelBuilder) -> ModelBuilder:
        _BUILDERS[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    return sorted(_BUILDERS)


def model_options(name: str) -> frozenset[str]:
    """The keyword options a model's builder takes (e.g. width, batch_norm)."""
    parameters = inspect.signature(_BUILDERS[name]).parameters
    return frozenset(parameters) - {"input_shape", "num_classes"}


def model_description(name: str) -> str:
    doc = (_BUILDERS[name].__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def create_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, **options: Any
) -> Any:
    """Build a fresh, uncompiled tf_keras model that returns logits (no softmax)."""
    if name not in _BUILDERS:
        raise ModelError(
            f"unknown model {name!r}; expected one of {', '.join(list_models())} "
            "(hint: `python -m pipeline models` lists them)"
        )
    if len(input_shape) != 3:
        raise ModelError(f"model {name!r} needs an HWC input shape, got {input_shape}")
    if num_classes < 2:
        raise ModelError(f"model {name!r} needs at least 2 classes, got {num_classes}")
    try:
        return _BUILDERS[name](tuple(input_shape), num_classes, **options)
    except TypeError as exc:
        raise ModelError(f"model {name!r} rejected its options {options}: {exc}") from exc


def scaled(channels: int, width: float) -> int:
    """Channels after a width multiplier, at least one."""
    return max(1, int(round(channels * width)))
