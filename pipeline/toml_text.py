"""A config as TOML text that `load_config` reads back (`tomllib` reads TOML, it does not
write it): `python -m pipeline config show --format toml > my.toml`."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def toml_text(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """One `[table]` per entry (dotted names for nested tables); an unset key (None, which
    TOML cannot spell) is written as a comment, so it stays unset when read back."""
    lines: list[str] = []
    for table, fields in tables.items():
        lines.append(f"[{table}]")
        for key, value in fields.items():
            lines.append(f"# {key} unset" if value is None else f"{key} = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no place in a config (non-finite)")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")
