"""What a stage is: a typed function from its config sections and upstream artifacts to an
artifact folder plus a small result record (a JSON-able dict)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.cache import CacheEntry
from pipeline.config import PipelineConfig
from pipeline.data import Dataset

MODEL_FILE = "model.keras"


@dataclass(frozen=True)
class StageContext:
    config: PipelineConfig
    dataset: Dataset
    out_dir: Path  # the stage writes its files here; it becomes the cache entry
    upstream: dict[str, CacheEntry]
    build_dir: Path = Path("build")  # the run's build folder (measurement caches beside the cache)
    echo: Callable[[str], None] = print  # progress lines of a long stage


def no_key_extras(config: PipelineConfig) -> dict[str, Any]:
    return {}


def no_warnings(record: dict[str, Any]) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Stage:
    name: str
    version: int  # bump when the stage's code changes what it produces
    sections: tuple[str, ...]  # config sections it reads (part of its cache key)
    upstream: tuple[str, ...]
    run: Callable[[StageContext], dict[str, Any]]
    headline: Callable[[dict[str, Any]], str]
    trains: bool = False  # builds and trains models: runs inside the distribution strategy
    # what the runner prints after the stage's line, cache hit or not (e.g. a file teacher
    # scoring near chance)
    warnings: Callable[[dict[str, Any]], tuple[str, ...]] = no_warnings
    # what else the result depends on, outside the config's sections (e.g. the settings of
    # the target a prune budget is measured on); empty: the key is the sections' alone
    key_extras: Callable[[PipelineConfig], dict[str, Any]] = no_key_extras


# True while a run whose config trusts a model file's code (trust_model_code) loads its own
# entries: they hold the file's Lambda layers, which safe_mode would refuse
_TRUSTED_CODE: ContextVar[bool] = ContextVar("trusted_model_code", default=False)


@contextmanager
def trusting_model_code(trusted: bool) -> Iterator[None]:
    token = _TRUSTED_CODE.set(trusted)
    try:
        yield
    finally:
        _TRUSTED_CODE.reset(token)


def uncompiled_copy(model: Any) -> Any:
    """Same architecture and weights, no optimizer: saved, it is a third of the size, and
    nothing downstream resumes training from it (the .keras format has no switch for it)."""
    from devices.tf_env import keras  # deferred: TensorFlow only to save or load a model

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def save_model(model: Any, out_dir: Path) -> Path:
    path = out_dir / MODEL_FILE
    uncompiled_copy(model).save(path)
    return path


def load_model(entry_dir: Path) -> Any:
    from devices.tf_env import keras  # deferred: TensorFlow only to save or load a model

    return keras.models.load_model(entry_dir / MODEL_FILE, compile=False,
                                   safe_mode=not _TRUSTED_CODE.get())


def top1_headline(record: dict[str, Any]) -> str:
    return f"top1={record['top1']:.4f} params={record['params']:,} macs={record['macs']:,}"
