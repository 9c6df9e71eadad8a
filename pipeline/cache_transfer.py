"""Stage-cache entries between machines that share no filesystem (a cluster's head and its
workers): a sealed entry folder travels as the bytes of an uncompressed tar (weights and
int8 files barely compress), and is written on the other side by `StageCache.receive`,
which verifies it against its own seal before the one rename (docs/architecture.md,
Contracts: the stage cache)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devices.errors import CacheError
from pipeline.cache import CacheEntry, StageCache


@dataclass(frozen=True)
class PackedEntry:
    stage: str
    key: str
    data: bytes  # a tar of the entry folder's files, entry.json included

    @property
    def name(self) -> tuple[str, str]:
        return self.stage, self.key


def pack_entry(entry: CacheEntry) -> PackedEntry:
    """`entry` (looked up, so verified) as bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(entry.path.rglob("*")):
            if path.is_file():
                archive.add(path, arcname=str(path.relative_to(entry.path)), recursive=False)
    return PackedEntry(entry.stage, entry.key, buffer.getvalue())


def unpack_into(packed: PackedEntry, folder: Path) -> None:
    """The entry's files into `folder`; the "data" filter refuses absolute paths, links
    and names that climb out of it."""
    try:
        with tarfile.open(fileobj=io.BytesIO(packed.data), mode="r") as archive:
            archive.extractall(folder, filter="data")
    except tarfile.TarError as error:
        raise CacheError(f"the {packed.stage} entry {packed.key[:12]} arrived damaged "
                         f"({error}); nothing was written (hint: run the study again: the "
                         "point is recomputed)") from error


def receive_packed(cache: StageCache, packed: PackedEntry, origin: str,
                   waiting: Callable[[Path], None] = lambda path: None) -> CacheEntry:
    """Write `packed` into `cache` (the entry already there is kept)."""
    return cache.receive(packed.stage, packed.key, lambda scratch: unpack_into(packed, scratch),
                         waiting, origin)
