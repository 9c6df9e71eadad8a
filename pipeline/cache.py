"""Content-addressed stage cache (docs/architecture.md, Contracts: the stage cache).

key = sha256(canonical JSON of stage name, stage code version, the config sections the
stage reads, upstream keys). An entry is a folder build/cache/<stage>/<key>/ holding the
stage's files and `entry.json` (its record and the sha256 of every file). Entries are
written with one rename, so a crash never leaves half an entry; an entry whose files do not
match their checksums is reported, deleted and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.fsutil import (
    LOCK_FOLDER,
    atomic_directory,
    atomic_write_json,
    exclusive_lock,
    remove_dead_scratch,
    sha256_file,
)
from pipeline.config import canonical_json

ENTRY_FILE = "entry.json"
log = logging.getLogger("pipeline.cache")


def cache_key(stage: str, version: int, sections: dict[str, Any], upstream: dict[str, str]) -> str:
    payload = {"stage": stage, "version": version, "config": sections, "upstream": upstream}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    stage: str
    key: str
    path: Path
    record: dict[str, Any]


class StageCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def entry_path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def lookup(self, stage: str, key: str, warn: Callable[[str], None] = log.warning
               ) -> CacheEntry | None:
        path = self.entry_path(stage, key)
        for leftover in remove_dead_scratch(path.parent):
            warn(f"removed {leftover.name}: a half-written {stage} entry of a killed run")
        if not path.is_dir():
            return None
        problem = _verify(path)
        if problem:
            warn(f"cache entry {stage}/{key[:12]} is corrupt ({problem}); deleting and recomputing")
            shutil.rmtree(path, ignore_errors=True)
            return None
        document = json.loads((path / ENTRY_FILE).read_text())
        return CacheEntry(stage, key, path, document["record"])

    @contextmanager
    def writer(self, stage: str, key: str) -> Iterator[Path]:
        """Yield a scratch folder; on success it becomes the entry (files + entry.json)."""
        final = self.entry_path(stage, key)
        with atomic_directory(final) as scratch:
            yield scratch

    @contextmanager
    def lock(self, stage: str, key: str, waiting: Callable[[Path], None]) -> Iterator[None]:
        """One writer per entry across processes: a second run waits, then finds the entry
        the first one sealed (`waiting(lock_path)` says so before it waits)."""
        lock_path = self.root / LOCK_FOLDER / f"{stage}.{key}.lock"  # outside the entries
        with exclusive_lock(lock_path, lambda: waiting(lock_path)):
            yield

    def seal(self, scratch: Path, stage: str, key: str, record: dict[str, Any]) -> None:
        files = {
            str(path.relative_to(scratch)): sha256_file(path)
            for path in sorted(scratch.rglob("*"))
            if path.is_file() and path.name != ENTRY_FILE
        }
        atomic_write_json(
            scratch / ENTRY_FILE, {"stage": stage, "key": key, "record": record, "files": files}
        )

    def clear(self, stage: str | None = None) -> None:
        shutil.rmtree(self.root / stage if stage else self.root, ignore_errors=True)


def _verify(path: Path) -> str | None:
    try:
        document = json.loads((path / ENTRY_FILE).read_text())
        files = document["files"]
        document["record"]  # noqa: B018 - presence check
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable {ENTRY_FILE}: {exc}"
    for relative, expected in files.items():
        file_path = path / relative
        if not file_path.is_file():
            return f"missing {relative}"
        if sha256_file(file_path) != expected:
            return f"checksum mismatch in {relative}"
    return None
