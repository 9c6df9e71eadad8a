"""Runs the stage graph: asks the cache first, computes what is missing, prints one line
per stage. Every finished stage is a sealed cache entry, so a run killed mid-stage resumes
from the last finished one when started again."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pipeline.flow as flow
from devices.errors import CacheError, ConfigError
from pipeline.cache import CacheEntry, StageCache, cache_key
from pipeline.config import AS_SAVED_KEYS, ZOO_MODEL_KEYS, PipelineConfig, hashed_section
from pipeline.data import Dataset, load_dataset
from pipeline.distribute import cluster_role, strategy_for
from pipeline.model_files import cache_identity, is_model_file
from pipeline.stage import Stage, StageContext, trusting_model_code

MODEL_SECTIONS = ("teacher", "student")


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    entry: CacheEntry
    cache_hit: bool
    seconds: float

    @property
    def record(self) -> dict[str, Any]:
        return self.entry.record


@dataclass(frozen=True)
class RunResult:
    dataset: Dataset
    outcomes: dict[str, StageOutcome]
    seconds: float

    def record(self, stage: str) -> dict[str, Any]:
        return self.outcomes[stage].record


def check_model_names(config: PipelineConfig) -> None:
    from models import list_models  # deferred: the zoo imports TensorFlow

    for section in MODEL_SECTIONS:
        name = config.section(section).model
        if not is_model_file(name) and name not in list_models():
            raise ConfigError(f"{section}.model = {name!r} is not in the model zoo; expected one "
                              f"of {', '.join(list_models())}, or file:PATH for a model file "
                              "of your own")


def check_prune_source_model(config: PipelineConfig, dataset: Dataset,
                             stages: Sequence[Stage]) -> None:
    """The model the prune stage will cut, checked on its untrained architecture: a layer
    the pruner cannot take is refused by name before hours of training, not after."""
    if flow.FINAL_MODEL_STAGE not in {stage.name for stage in stages}:
        return
    from pipeline.stages.prune import check_prune_source  # deferred: TensorFlow
    from pipeline.stages.train import build_for

    source = config.section(config.prune.source)
    if config.prune.method == "channel":
        check_prune_source(config.prune, build_for(source, dataset))


def check_model_files(config: PipelineConfig, dataset: Dataset) -> None:
    """Each model file reads, holds nothing unsafe and declares the dataset's input size:
    refused before hours of teacher training, not after."""
    from pipeline.model_files.loading import check_model_file  # deferred: may load TF

    for section in MODEL_SECTIONS:
        settings = config.section(section)
        if is_model_file(settings.model):
            check_model_file(settings.model, section=section,
                             trusted=bool(settings.trust_model_code), dataset=dataset)


def trusts_model_code(config: PipelineConfig) -> bool:
    return any(config.section(section).trust_model_code for section in MODEL_SECTIONS)


def keyed_section(name: str, section: dict[str, Any]) -> dict[str, Any]:
    """A section as its stage's cache key holds it (docs/architecture.md, Contracts: the
    stage cache): a model file by its sha256, not its path, and without the keys the stage
    does not read for it (a zoo model's width; a teacher used as saved reads no training
    setting), so neither a move nor an unrelated setting re-runs what depends on it."""
    model = section.get("model")
    if not isinstance(model, str) or not is_model_file(model):
        return section
    kept = {key: value for key, value in section.items() if key not in ZOO_MODEL_KEYS}
    if name == "teacher" and not kept.get("finetune_epochs"):
        kept = {key: value for key, value in kept.items() if key in AS_SAVED_KEYS}
    return kept | {"model": cache_identity(model)}


class Runner:
    def __init__(
        self, config: PipelineConfig, build_dir: Path = Path("build"),
        force: Iterable[str] = (), echo: Callable[[str], None] = print,
        stages: Sequence[Stage] | None = None,
    ) -> None:
        self.config = config
        self.build_dir = Path(build_dir)
        self.cache = StageCache(Path(build_dir) / "cache")
        # In a cluster only the chief writes the shared cache; other workers read it (they
        # must hit and miss in lockstep with the chief) and write a private copy.
        self.role = cluster_role()
        self.write_cache = self.cache if self.role.is_chief else StageCache(
            Path(build_dir) / f"worker-{self.role.task_index}" / "cache"
        )
        self.stages = list(stages) if stages is not None else flow.stages(config)
        names = [stage.name for stage in self.stages]
        self.force = {flow.check_stage_name(name, names) for name in force}
        self.echo = echo

    def stage_key(self, stage: Stage, dataset: Dataset, keys: dict[str, str]) -> str:
        sections = {name: keyed_section(name, hashed_section(self.config.section(name)))
                    for name in stage.sections}
        extras = stage.key_extras(self.config)
        if extras:  # none: the key stays what it was before stages had extras
            sections["+extras"] = extras
        upstream = {"data": dataset.fingerprint} | {name: keys[name] for name in stage.upstream}
        return cache_key(stage.name, stage.version, sections, upstream)

    def stages_until(self, until: str | None) -> list[Stage]:
        names = [stage.name for stage in self.stages]
        last = names.index(until) if until is not None else len(names) - 1
        return self.stages[:last + 1]

    def run(self, until: str | None = None, dataset: Dataset | None = None) -> RunResult:
        """Every stage up to `until`; `dataset`: this config's data, already loaded (a study
        loads it once for all of its points)."""
        if until is not None:
            flow.check_stage_name(until, [stage.name for stage in self.stages])
        check_model_names(self.config)  # before hours of teacher training, not after
        started = time.perf_counter()
        self.strategy = strategy_for(self.config.distribute)  # before any other TF op
        dataset = dataset if dataset is not None else load_dataset(self.config.data)
        self.echo(
            f"dataset    {dataset.name}: {len(dataset.y_train)} train / {len(dataset.y_val)} "
            f"validation / {len(dataset.y_test)} test, input {dataset.input_shape}"
        )
        check_model_files(self.config, dataset)
        check_prune_source_model(self.config, dataset, self.stages_until(until))
        keys: dict[str, str] = {}
        outcomes: dict[str, StageOutcome] = {}
        forced = False
        with trusting_model_code(trusts_model_code(self.config)):
            for stage in self.stages:
                forced = forced or stage.name in self.force
                keys[stage.name] = self.stage_key(stage, dataset, keys)
                outcomes[stage.name] = self._run_stage(stage, dataset, keys[stage.name],
                                                       outcomes, forced)
                if stage.name == until:
                    break
        return RunResult(dataset, outcomes, round(time.perf_counter() - started, 3))

    def _run_stage(
        self, stage: Stage, dataset: Dataset, key: str, outcomes: dict[str, StageOutcome],
        forced: bool,
    ) -> StageOutcome:
        started = time.perf_counter()
        entry = None if forced else self._lookup(stage.name, key)
        hit = entry is not None
        if entry is None:
            with self.write_cache.lock(stage.name, key, lambda path: self.echo(
                    f"{stage.name:<10} waiting: another run is computing this entry "
                    f"(lock {path})")):
                entry = None if forced else self._lookup(stage.name, key)
                hit = entry is not None  # the run we waited for sealed it
                if entry is None:
                    entry = self._compute(stage, dataset, key, outcomes)
        seconds = round(time.perf_counter() - started, 3)
        status = "cache hit" if hit else "computed"
        self.echo(f"{stage.name:<10} {status:<9} {seconds:8.1f}s  {stage.headline(entry.record)}")
        for warning in stage.warnings(entry.record):
            self._warn(warning)
        return StageOutcome(stage.name, entry, hit, seconds)

    def _compute(self, stage: Stage, dataset: Dataset, key: str,
                 outcomes: dict[str, StageOutcome]) -> CacheEntry:
        self.echo(f"{stage.name:<10} running…")
        upstream = {name: outcomes[name].entry for name in stage.upstream}
        with self.write_cache.writer(stage.name, key) as scratch:
            context = StageContext(self.config, dataset, scratch, upstream, self.build_dir,
                                   self.echo)
            with self.strategy.scope() if stage.trains else contextlib.nullcontext():
                record = stage.run(context)
            self.write_cache.seal(scratch, stage.name, key, record)
        entry = self.write_cache.lookup(stage.name, key, warn=self._warn)
        if entry is None:
            raise CacheError(f"stage {stage.name}: the entry just written does not verify")
        return entry

    def _lookup(self, stage: str, key: str) -> CacheEntry | None:
        entry = self.cache.lookup(stage, key, warn=self._warn)
        if entry is None and self.write_cache is not self.cache:
            entry = self.write_cache.lookup(stage, key, warn=self._warn)
        return entry

    def _warn(self, message: str) -> None:
        self.echo(f"warning: {message}")
