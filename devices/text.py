"""Plain text for terminals and Markdown: numbers that may be missing, and tables. One place,
so every table and line the pipeline prints shows a missing number the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MISSING = "–"


def optional(value: float | None, spec: str, suffix: str = "", missing: str = MISSING) -> str:
    """`value` in the format `spec` (e.g. ".3f", ".2%", ",.0f") with `suffix`, or `missing`."""
    return missing if value is None else f"{value:{spec}}{suffix}"


def cell(value: Any) -> str:
    """A table cell: floats to 4 decimals, integers with thousands separators."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return MISSING if value is None else str(value)
    return optional(value, ",d" if isinstance(value, int) else ".4f")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, a rule under the header, no trailing blanks."""
    cells = [[str(h) for h in headers]] + [[cell(value) for value in row] for row in rows]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)
