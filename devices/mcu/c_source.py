"""Small helpers that print C99 declarations (const arrays, struct initialisers)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

_C_TYPES = {
    np.dtype(np.int8): "int8_t",
    np.dtype(np.int16): "int16_t",
    np.dtype(np.int32): "int32_t",
}


def const_array(name: str, values: np.ndarray | Iterable[int], dtype: type = np.int8,
                align: int = 4) -> str:
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
    array = array.astype(dtype).reshape(-1)
    c_type = _C_TYPES[np.dtype(dtype)]
    lines = []
    per_line = 24
    for start in range(0, max(array.size, 1), per_line):
        chunk = array[start:start + per_line]
        lines.append("    " + ", ".join(str(int(v)) for v in chunk) + ",")
    if array.size == 0:
        lines = ["    0,"]
    return (
        f"static const {c_type} {name}[{max(array.size, 1)}] MCU_ALIGNED({align}) = {{\n"
        + "\n".join(lines)
        + "\n};\n"
    )


def float_literal(value: float) -> str:
    """An exact float32 literal (C99 hex float)."""
    return f"{float(np.float32(value)).hex()}f"


def struct_initialiser(c_type: str, name: str, fields: dict[str, object]) -> str:
    body = ", ".join(f".{key} = {_c_value(value)}" for key, value in fields.items())
    return f"static const {c_type} {name} = {{ {body} }};\n"


def _c_value(value: object) -> str:
    if isinstance(value, float):
        return float_literal(value)
    if isinstance(value, list | tuple):
        return "{ " + ", ".join(_c_value(v) for v in value) + " }"
    return str(int(value))  # type: ignore[call-overload]
