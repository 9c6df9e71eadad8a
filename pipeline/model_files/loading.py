"""`model = "file:PATH"` to a checked tf_keras model that returns logits: the steps of the
package in order (its __init__ says which module does what)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devices.errors import ModelError
from pipeline.data import Dataset
from pipeline.model_files import model_digest, model_file_path, model_label
from pipeline.model_files.compatibility import (
    as_logits,
    check_against_dataset,
    check_input_shape,
    declared_input_shape,
)
from pipeline.model_files.equivalence import prove_same_outputs
from pipeline.model_files.formats import (
    KERAS3,
    ModelFormat,
    SavedArchitecture,
    format_of,
    load_saved_model,
)
from pipeline.model_files.rebuild import rebuild_in_tf_keras
from pipeline.model_files.safety import check_architecture

PROOF_SAMPLES = 64  # test images both models run for the rebuild's proof


@dataclass(frozen=True)
class FileModelRecord:
    """What a stage's record says about the file it read."""

    file: str  # model_label: the file's name, not its folders
    sha256: str
    format: str
    saved_by: str
    rebuilt: bool  # a Keras 3 model rebuilt in tf_keras
    equivalence: dict[str, Any] | None  # the rebuild's proof (equivalence.Equivalence)
    softmax_removed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FileModel:
    model: Any  # tf_keras, uncompiled, returns logits
    record: FileModelRecord


@dataclass(frozen=True)
class ModelFileReading:
    path: Path
    model_format: ModelFormat
    architecture: SavedArchitecture


def read_model_file(model: str, *, section: str, trusted: bool) -> ModelFileReading:
    """The file's format and architecture, checked for what loading would run: nothing is
    deserialised yet."""
    path = model_file_path(model)
    model_format = format_of(path, f"{section}.model = {model!r}")
    try:
        architecture = model_format.read(path)
    except ModelError as exc:  # the reader names the file; the message names the setting
        raise ModelError(f"{section}.model: {exc}") from exc
    check_architecture(architecture, label=f"{section}.model {model_label(model)}",
                       trust_setting=f"{section}.trust_model_code", trusted=trusted)
    return ModelFileReading(path, model_format, architecture)


def check_model_file(model: str, *, section: str, trusted: bool, dataset: Dataset) -> None:
    """What can be checked before any stage runs: the file reads, loads nothing unsafe, and
    its declared input fits the dataset."""
    reading = read_model_file(model, section=section, trusted=trusted)
    declared = declared_input_shape(reading.architecture.configs)
    if declared is not None:
        check_input_shape(declared, dataset.input_shape,
                          label=f"{section}.model {model_label(model)}",
                          dataset_name=dataset.summary()["name"])


def load_file_model(model: str, *, section: str, trusted: bool, dataset: Dataset) -> FileModel:
    """The user's model as a tf_keras model returning logits, checked against `dataset`."""
    label = f"{section}.model {model_label(model)}"
    reading = read_model_file(model, section=section, trusted=trusted)
    architecture = reading.architecture
    try:
        loaded = load_saved_model(reading.model_format, architecture, reading.path, trusted)
    except ModelError as exc:
        raise ModelError(f"{section}.model: {exc}") from exc
    candidate = (rebuild_in_tf_keras(loaded, label) if architecture.flavour == KERAS3
                 else loaded)
    check_against_dataset(candidate, input_shape=dataset.input_shape, classes=dataset.num_classes,
                          label=label, dataset_name=dataset.summary()["name"])
    equivalence = None
    if candidate is not loaded:  # data.test_split is at least 0.05: there are test images
        samples = np.asarray(dataset.x_test[:PROOF_SAMPLES])
        equivalence = prove_same_outputs(loaded, candidate, samples, label).to_dict()
    logits, softmax_removed = as_logits(candidate)
    return FileModel(logits, FileModelRecord(
        file=model_label(model), sha256=model_digest(reading.path),
        format=reading.model_format.name, saved_by=architecture.saved_by,
        rebuilt=architecture.flavour == KERAS3, equivalence=equivalence,
        softmax_removed=softmax_removed,
    ))
