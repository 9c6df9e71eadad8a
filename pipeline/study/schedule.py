"""Which points may start now on a cluster, so that every cache entry is computed once.

A point's chain is the (stage, key) of each of its stages, computed as the runner computes
them (keys need no stage to have run). Points share entries: every point the teacher, the
prune arms the distill arm's student, prune and prune+kd the pruned teacher. The first
point to need a missing entry computes it; a point needing an entry that a running point
is computing waits for it, then gets it from the head's cache. So the teacher is trained
once, and the points fan out after it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.config import PipelineConfig
from pipeline.data import Dataset
from pipeline.runner import Runner

EntryName = tuple[str, str]  # (stage, key)


def chain_entries(config: PipelineConfig, dataset: Dataset) -> tuple[EntryName, ...]:
    """The (stage, key) of every stage the point's config runs, in run order."""
    runner = Runner(config, echo=lambda line: None)
    keys: dict[str, str] = {}
    for stage in runner.stages:
        keys[stage.name] = runner.stage_key(stage, dataset, keys)
    return tuple(keys.items())


@dataclass
class Schedule:
    chains: list[tuple[EntryName, ...]]
    waiting: list[int] = field(default_factory=list)
    claims: dict[EntryName, int] = field(default_factory=dict)  # entry -> point computing it

    def __post_init__(self) -> None:
        self.waiting = list(range(len(self.chains)))

    def startable(self, present: Callable[[EntryName], bool]) -> list[tuple[int, list[EntryName]]]:
        """(point, its missing entries) for each point that may start now, in study order;
        each one's missing entries are claimed by it until `finished`."""
        started = []
        for index in list(self.waiting):
            missing = [name for name in self.chains[index] if not present(name)]
            if any(name in self.claims for name in missing):
                continue
            self.waiting.remove(index)
            self.claims |= {name: index for name in missing}
            started.append((index, missing))
        return started

    def finished(self, index: int) -> None:
        self.claims = {name: owner for name, owner in self.claims.items() if owner != index}

    @property
    def done(self) -> bool:
        return not self.waiting
