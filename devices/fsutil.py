"""Atomic file writes: a temp file in the same folder, then rename, so an interrupted
run never leaves a half-written file behind."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devices.errors import ConfigError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, document: Any) -> None:
    text = json.dumps(document, indent=2, sort_keys=True, default=_json_default)
    atomic_write_text(path, text + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def child_folder(parent: Path, name: str, what: str = "folder") -> Path:
    """`parent / name`, refused unless it is a plain visible name directly inside `parent`
    (names derived from user text, such as `rpi@<host>`, must not climb out of dist/)."""
    path = Path(parent) / name
    plain = bool(name) and name not in (".", "..") and not name.startswith(".") and not any(
        separator in name for separator in ("/", "\\", "\0"))
    if not plain or path.resolve().parent != Path(parent).resolve():
        raise ConfigError(f"{what} name {name!r} would not be a folder directly inside "
                          f"{parent}/ (hint: use letters, digits, '.', '-', '_', '@')")
    return path


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temp folder beside `final`; on success it replaces `final` in one rename.

    On any exception the temp folder is removed and `final` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.pid{os.getpid()}."  # lets a later run spot a dead writer's folder
    temp = Path(tempfile.mkdtemp(dir=final.parent, prefix=prefix, suffix=".tmp"))
    try:
        yield temp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(temp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def remove_dead_scratch(folder: Path) -> list[Path]:
    """Delete the folders atomic_directory left behind when its process was killed
    (SIGKILL, power loss): its scratch `.NAME.pidPID.*.tmp` and the replaced
    `.NAME.old-PID`; folders of live processes are kept."""
    removed = []
    leftovers = [(path, path.name.rsplit(".pid", 1)[1].split(".", 1)[0])
                 for path in Path(folder).glob(".*.pid*.tmp")]
    leftovers += [(path, path.name.rsplit(".old-", 1)[1]) for path in Path(folder).glob(".*.old-*")]
    for path, pid_text in leftovers:
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


LOCK_FOLDER = ".locks"  # hidden, beside the entries it guards; lock files are kept (deleting
# one that another process waits on would split the lock)


@contextmanager
def exclusive_lock(path: Path, waiting: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing) for the block. When another
    process holds it, `waiting()` is called once (to say so), then the lock is awaited.
    The kernel drops the lock when its holder dies, even by SIGKILL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
