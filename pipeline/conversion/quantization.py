"""Affine quantization parameters of one tensor: real = (q - zero_point) * scale."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Quantization:
    scale: float
    zero_point: int
    dtype: str  # "int8" | "uint8" | "int16"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Quantization:
        return cls(float(document["scale"]), int(document["zero_point"]), str(document["dtype"]))
