"""A user's own trained model as the teacher or the student: `model = "file:PATH"`.

A Keras 3 `.keras` or `.h5` file, a tf_keras `.keras` or `.h5` file, or a tf_keras
SavedModel folder (README, "Your own model"). The package reads the saved architecture and
refuses unsafe layers before anything is deserialised (`safety.py`), loads the file by its
format (`formats.py`), rebuilds a Keras 3 model in tf_keras and proves the copy by its outputs
(`rebuild.py`, `translation.py`, `equivalence.py`), and checks it against the dataset
(`compatibility.py`); `loading.py` runs those steps. This module itself holds the naming
and the file's digest, which the config and the cache keys need without TensorFlow.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from devices.fsutil import sha256_file

FILE_PREFIX = "file:"
DIGEST_PREFIX = "sha256:"  # what a stage's cache key holds instead of the file's path


def is_model_file(model: str) -> bool:
    return model.startswith(FILE_PREFIX)


def model_source(model: str) -> str:
    """Where a section's model comes from: "file" (the user's) or "zoo" (models/)."""
    return "file" if is_model_file(model) else "zoo"


def model_file_path(model: str) -> Path:
    return Path(model[len(FILE_PREFIX):].strip()).expanduser()


def model_label(model: str) -> str:
    """The name records and manifests carry (CI uploads them): the file's name, never the
    folders above it (`file:…/m.keras`), as the dataset summary does."""
    return f"{FILE_PREFIX}…/{model_file_path(model).name}" if is_model_file(model) else model


def model_digest(path: Path) -> str:
    """sha256 of the file, or of a SavedModel folder's files (relative names and contents)."""
    path = path.resolve()
    return _digest(str(path), _signature(path))


def cache_identity(model: str) -> str:
    """What a cache key holds for `model`: a zoo name as it is, a file by its contents, so a
    changed file re-runs what depends on it and the same file at another path does not."""
    if not is_model_file(model):
        return model
    path = model_file_path(model)
    if not path.exists():  # the runner refuses it by name before any key is used
        return model
    return DIGEST_PREFIX + model_digest(path)


def _files_of(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def _signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and change times: a digest is recomputed only when one of them moves."""
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in _files_of(path))


@lru_cache(maxsize=64)
def _digest(path_text: str, signature: tuple[tuple[str, int, int], ...]) -> str:
    path = Path(path_text)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in _files_of(path):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()
