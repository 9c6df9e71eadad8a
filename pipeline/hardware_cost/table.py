"""The cost table: measured costs on disk, one folder per target's settings, one file per
signature.

    build/hardware-cost/<settings key>/settings.json      what the key is made of
    build/hardware-cost/<settings key>/<kind>/<digest>.json

It is a measurement cache, not a stage cache: a stage's result never depends on whether an
entry was there. On the emulated Cortex-M4 a measurement is exact and repeatable, so an
entry is what a new measurement would give; timings are not, so an entry, once written, is
the value every later search decides from (the table as it stood), and the prune record
keeps the values its search used. Entries are written atomically; two processes measuring
one signature at once write the same file twice, the second rename wins.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.fsutil import atomic_write_json

TABLE_FOLDER = "hardware-cost"


def settings_key(settings: dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class CostTable:
    root: Path  # the build folder's hardware-cost/
    settings: dict[str, Any]
    lookups: int = 0
    hits: int = 0
    written: int = 0
    _memory: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.key = settings_key(self.settings)
        self.folder = self.root / self.key
        marker = self.folder / "settings.json"
        if not marker.is_file():
            atomic_write_json(marker, self.settings)

    def _path(self, kind: str, digest: str) -> Path:
        return self.folder / kind / f"{digest}.json"

    def get(self, kind: str, digest: str) -> dict[str, Any] | None:
        """The entry, read once per process (later reads see the value first read)."""
        self.lookups += 1
        if (kind, digest) in self._memory:
            self.hits += 1
            return self._memory[(kind, digest)]
        try:
            entry = json.loads(self._path(kind, digest).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # absent, or a torn file from a killed writer
            return None
        self._memory[(kind, digest)] = entry
        self.hits += 1
        return entry

    def put(self, kind: str, digest: str, entry: dict[str, Any]) -> None:
        atomic_write_json(self._path(kind, digest), entry)
        self._memory[(kind, digest)] = entry
        self.written += 1

    def stats(self) -> dict[str, Any]:
        return {"key": self.key, "folder": str(self.folder), "settings": self.settings,
                "lookups": self.lookups, "hits": self.hits, "measured": self.written}
