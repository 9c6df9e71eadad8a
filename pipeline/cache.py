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

from devices.errors import CacheError
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

    def compute_once(self, stage: str, key: str, compute: Callable[[Path], dict[str, Any]],
                     waiting: Callable[[Path], None]) -> tuple[CacheEntry, bool]:
        """The entry, and whether it was a hit: looked up, or computed under its lock by
        `compute(scratch) -> record` (which writes the entry's files into scratch) and
        sealed, as the runner computes a stage."""
        entry = self.lookup(stage, key)
        if entry is not None:
            return entry, True
        with self.lock(stage, key, waiting):
            entry = self.lookup(stage, key)  # the run we waited for sealed it
            if entry is not None:
                return entry, True
            with self.writer(stage, key) as scratch:
                self.seal(scratch, stage, key, compute(scratch))
        return self._written(stage, key), False

    def receive(self, stage: str, key: str, fill: Callable[[Path], None],
                waiting: Callable[[Path], None], origin: str) -> CacheEntry:
        """An entry sealed by another cache (a cluster worker's, `origin`): `fill(scratch)`
        writes its files and entry.json, which must verify, list every file and name this
        stage and key before the one rename, under the entry's lock, so a transfer cut off
        or tampered with never becomes an entry. One already here is kept: the key names
        the result."""
        entry = self.lookup(stage, key)
        if entry is not None:
            return entry
        with self.lock(stage, key, waiting):
            entry = self.lookup(stage, key)
            if entry is not None:
                return entry
            with self.writer(stage, key) as scratch:
                fill(scratch)
                problem = _verify(scratch) or _foreign(scratch, stage, key)
                if problem:
                    raise CacheError(f"the {stage} entry {key[:12]} from {origin} does not "
                                     f"verify ({problem}); nothing was written (hint: run "
                                     "the study again: the point is recomputed)")
        return self._written(stage, key)

    def entries(self) -> list[tuple[str, str]]:
        """(stage, key) of every entry folder, hidden scratch and lock folders left out."""
        if not self.root.is_dir():
            return []
        return sorted((folder.parent.name, folder.name) for folder in self.root.glob("*/*")
                      if folder.is_dir() and not folder.name.startswith(".")
                      and not folder.parent.name.startswith("."))

    def _written(self, stage: str, key: str) -> CacheEntry:
        entry = self.lookup(stage, key)
        if entry is None:
            raise CacheError(f"{stage}: the entry just written does not verify")
        return entry

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


def _foreign(path: Path, stage: str, key: str) -> str | None:
    """What makes a verified entry folder not this stage and key's: another name, or a
    file its entry.json does not list."""
    document = json.loads((path / ENTRY_FILE).read_text())
    if (document.get("stage"), document.get("key")) != (stage, key):
        return f"it is {document.get('stage')}/{str(document.get('key'))[:12]}"
    listed = set(document["files"]) | {ENTRY_FILE}
    present = {str(file.relative_to(path)) for file in path.rglob("*") if file.is_file()}
    unlisted = sorted(present - listed)
    return f"unlisted file {unlisted[0]}" if unlisted else None


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
