"""The one shape of a pruning refusal: the layer, its type, why, and what to do instead."""

from __future__ import annotations

from typing import Any

from devices.errors import PruningError


def refuse(layer: Any, why: str, hint: str) -> PruningError:
    return PruningError(
        f"cannot prune through layer {layer.name!r} ({type(layer).__name__}): {why} "
        f"(hint: {hint})"
    )
