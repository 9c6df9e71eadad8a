"""`section.key=value` values: a TOML literal when the text is one, else the text. One
parser for the pipeline config's `--set` and the target profiles' overrides."""

from __future__ import annotations

import tomllib
from typing import Any


def parse_value(text: Any) -> Any:
    """A TOML literal when the text is one (`4`, `2.5`, `true`, `["a"]`), else the text."""
    if not isinstance(text, str):
        return text
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text
