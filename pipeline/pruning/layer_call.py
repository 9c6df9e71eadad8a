"""One call of a layer in the model being analysed: what a channel rule may look at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LayerCall:
    name: str  # the graph's name for the layer ('outer/inner' inside a nested model)
    layer: Any
    input_shapes: tuple[tuple[int | None, ...], ...]
    output_shape: tuple[int | None, ...]
    call_args: tuple[Any, ...] = ()  # as the model called it (TFOpLambda's constants)
    call_kwargs: dict[str, Any] | None = None

    @property
    def output_width(self) -> int:
        return int(self.output_shape[-1])
