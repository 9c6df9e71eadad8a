"""Progress of the steps inside a stage (one artifact converted, one validated, …).

On a terminal, a rich progress bar that replaces itself; in CI (`CI=true`) or when the
output is a file or a pipe, one line per step, so logs stay readable. `-q` turns both off
and `-v` adds each step's time (`python -m pipeline -q …`, pipeline/cli.py).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

Item = TypeVar("Item")

QUIET, NORMAL, VERBOSE = 0, 1, 2
_level = NORMAL


def set_verbosity(level: int) -> None:
    global _level
    _level = level


def verbosity() -> int:
    return _level


def interactive() -> bool:
    """A terminal a person watches, not a CI log."""
    return sys.stdout.isatty() and os.environ.get("CI", "").lower() not in ("true", "1")


def keras_verbose() -> int:
    """Keras' own epoch progress: a bar on a terminal, a line per epoch in logs, none (-q)."""
    if _level == QUIET:
        return 0
    return 1 if interactive() else 2


def steps(items: Sequence[Item], stage: str, name: Iterable[str] | None = None
          ) -> Iterator[Item]:
    """Yield `items`, showing `stage`'s progress through them; `name` labels each."""
    labels = list(name) if name is not None else [str(item) for item in items]
    if _level == QUIET or not items:
        yield from items
        return
    if interactive():
        yield from _bar(items, stage, labels)
        return
    for index, (item, label) in enumerate(zip(items, labels, strict=True), start=1):
        started = time.perf_counter()
        yield item
        took = f" {time.perf_counter() - started:.1f}s" if _level == VERBOSE else ""
        print(f"{stage:<10} {index}/{len(items)} {label}{took}", flush=True)


def _bar(items: Sequence[Item], stage: str, labels: list[str]) -> Iterator[Item]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn(f"{stage:<10}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(labels[0], total=len(items))
        for index, item in enumerate(items):
            bar.update(task, description=labels[index])
            yield item
            bar.advance(task)


@contextlib.contextmanager
def waiting(stage: str, label: str) -> Iterator[None]:
    """One long step that reports nothing until it ends (a device run, the MCU emulator): a
    spinner with the elapsed time on a terminal, a line when it ends in logs (with its time
    under -v), nothing with -q."""
    started = time.perf_counter()
    if _level != QUIET and interactive():
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = (TextColumn(f"{stage:<10}"), SpinnerColumn(), TextColumn(label),
                   TimeElapsedColumn())
        with Progress(*columns, transient=True) as spinner:
            spinner.add_task(label, total=None)
            yield
        return
    yield
    if _level == VERBOSE:
        print(f"{stage:<10} {label} {time.perf_counter() - started:.1f}s", flush=True)
