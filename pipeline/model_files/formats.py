"""The model file formats, by name: how to read a file's saved architecture without
deserialising anything (for `safety.py`), which Keras wrote it, and how to load it.

A format is picked by the path (`.keras`, `.h5` / `.hdf5`, a folder), as Keras picks it;
each reader then checks the bytes, so a truncated, empty or foreign file is a ModelError
(exit 2) that names the file, never a library's traceback.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.errors import ModelError, PipelineError

KERAS3 = "keras3"  # the `keras` package, version 3: rebuilt in tf_keras (rebuild.py)
TF_KERAS = "tf_keras"  # Keras 2 (tf_keras, or TensorFlow's own before 2.16): loaded as it is
SAVE_HINT = 'hint: save the model again with model.save("m.keras")'


@dataclass(frozen=True)
class SavedArchitecture:
    """What a file says about its model before anything is built from it."""

    format: str
    flavour: str  # KERAS3 or TF_KERAS
    saved_by: str  # e.g. "keras 3.15.1"
    configs: tuple[dict[str, Any], ...]  # the architecture documents (a SavedModel has many)


Loader = Callable[[Path, bool], Any]  # (path, trust_model_code) -> a Keras model


@dataclass(frozen=True)
class ModelFormat:
    name: str
    description: str
    matches: Callable[[Path], bool]
    read: Callable[[Path], SavedArchitecture]
    loaders: dict[str, Loader]  # by flavour


def _flavour(version: str, path: Path) -> str:
    major = version.split(".", 1)[0]
    flavours = {"2": TF_KERAS, "3": KERAS3}
    if major not in flavours:
        raise ModelError(f"{path} was saved by Keras {version or '(no version recorded)'}; "
                         f"expected Keras 2 (tf_keras) or Keras 3 ({SAVE_HINT})")
    return flavours[major]


def _json(text: str | bytes, path: Path, what: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: its {what} is not readable JSON ({exc}); the file is "
                         f"damaged ({SAVE_HINT})") from exc
    if not isinstance(document, dict):
        raise ModelError(f"{path}: its {what} is not a Keras model description ({SAVE_HINT})")
    return document


def _read_keras_archive(path: Path) -> SavedArchitecture:
    """A `.keras` file: a zip of config.json, metadata.json and the weights."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise ModelError(f"{path} is a zip file without config.json: not a Keras model "
                                 f"archive ({SAVE_HINT})")
            config = _json(archive.read("config.json"), path, "config.json")
            metadata = (_json(archive.read("metadata.json"), path, "metadata.json")
                        if "metadata.json" in names else {})
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise ModelError(f"{path} is not a readable .keras archive (a zip file): it is "
                         f"truncated, empty or another kind of file ({exc}) ({SAVE_HINT})"
                         ) from exc
    version = str(metadata.get("keras_version", ""))
    return SavedArchitecture("keras", _flavour(version, path), f"keras {version}", (config,))


def _read_hdf5(path: Path) -> SavedArchitecture:
    """A `.h5` file: the architecture is the JSON attribute `model_config`, read with h5py
    before any Keras code sees it (tf_keras' HDF5 loader has no safe_mode)."""
    import h5py  # deferred: only HDF5 model files need it

    try:
        with h5py.File(path, "r") as handle:
            attributes = dict(handle.attrs)
    except OSError as exc:
        raise ModelError(f"{path} is not a readable HDF5 file: it is truncated, empty or "
                         f"another kind of file ({exc}) ({SAVE_HINT})") from exc
    if "model_config" not in attributes:
        raise ModelError(f"{path} holds weights only (saved with save_weights): there is no "
                         f"architecture to build the model from ({SAVE_HINT})")
    config = _json(attributes["model_config"], path, "model_config attribute")
    version = attributes.get("keras_version", b"")
    version = version.decode() if isinstance(version, bytes) else str(version)
    return SavedArchitecture("h5", _flavour(version, path), f"keras {version}", (config,))


def _read_saved_model(path: Path) -> SavedArchitecture:
    """A SavedModel folder from tf_keras' model.save: keras_metadata.pb holds one JSON
    document per saved object (the model and each layer), read before loading."""
    if not (path / "saved_model.pb").is_file():
        raise ModelError(f"{path} is a folder without saved_model.pb: not a SavedModel "
                         f"(hint: a .keras or .h5 file, or the folder tf_keras' model.save wrote)")
    metadata_path = path / "keras_metadata.pb"
    if not metadata_path.is_file():
        raise ModelError(
            f"{path} is a SavedModel without Keras metadata (keras_metadata.pb), as Keras 3's "
            "model.export and tf.saved_model.save write: it holds a graph for inference, not "
            f"the layers the pipeline trains and prunes ({SAVE_HINT})")
    from devices.tf_env import tf  # noqa: F401 - sets TF_USE_LEGACY_KERAS before tf_keras loads

    # isort: split
    from google.protobuf.message import DecodeError
    from tf_keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    try:
        metadata.ParseFromString(metadata_path.read_bytes())
    except DecodeError as exc:
        raise ModelError(f"{metadata_path} is damaged ({exc}) ({SAVE_HINT})") from exc
    documents = tuple(_json(node.metadata, metadata_path, f"entry {node.node_path}")
                      for node in metadata.nodes if node.metadata)
    if not documents:
        raise ModelError(f"{metadata_path} describes no Keras object ({SAVE_HINT})")
    root = next((node for node in metadata.nodes if node.node_path == "root"), None)
    if root is None or not root.metadata:
        raise ModelError(f"{metadata_path} has no entry for the model itself ({SAVE_HINT})")
    root_document = _json(root.metadata, metadata_path, "root entry")
    version = str(root_document.get("keras_version", ""))
    return SavedArchitecture("savedmodel", _flavour(version, path), f"keras {version}",
                             (root_document, *documents))


def _keras3_loader(path: Path, trusted: bool) -> Any:
    import keras  # deferred: Keras 3 (the `keras` package) loads only for a Keras 3 file

    return keras.saving.load_model(path, compile=False, safe_mode=not trusted)


def _tf_keras_archive_loader(path: Path, trusted: bool) -> Any:
    from devices.tf_env import keras  # deferred: TensorFlow only to load a model

    return keras.models.load_model(path, compile=False, safe_mode=not trusted)


def _tf_keras_loader(path: Path, trusted: bool) -> Any:
    from devices.tf_env import keras  # deferred: TensorFlow only to load a model

    # HDF5 and SavedModel have no safe_mode in tf_keras: safety.py has read them first
    return keras.models.load_model(path, compile=False)


MODEL_FORMATS: dict[str, ModelFormat] = {
    "keras": ModelFormat(
        "keras", "a .keras archive (Keras 3 or tf_keras)",
        lambda path: path.is_file() and path.suffix.lower() == ".keras",
        _read_keras_archive, {KERAS3: _keras3_loader, TF_KERAS: _tf_keras_archive_loader}),
    "h5": ModelFormat(
        "h5", "an HDF5 file, .h5 or .hdf5 (Keras 3 or tf_keras)",
        lambda path: path.is_file() and path.suffix.lower() in (".h5", ".hdf5"),
        _read_hdf5, {KERAS3: _keras3_loader, TF_KERAS: _tf_keras_loader}),
    "savedmodel": ModelFormat(
        "savedmodel", "a SavedModel folder written by tf_keras' model.save",
        lambda path: path.is_dir(), _read_saved_model, {TF_KERAS: _tf_keras_loader}),
}


def format_of(path: Path, setting: str) -> ModelFormat:
    if not path.exists():
        raise ModelError(f"{setting}: model file {path} does not exist (hint: check the path "
                         "after file:, relative to the folder the command runs in)")
    for model_format in MODEL_FORMATS.values():
        if model_format.matches(path):
            return model_format
    expected = "; ".join(f.description for f in MODEL_FORMATS.values())
    raise ModelError(f"{setting}: {path} is not a model file the pipeline reads; expected "
                     f"{expected}")


def load_saved_model(model_format: ModelFormat, architecture: SavedArchitecture, path: Path,
                     trusted: bool) -> Any:
    """The model object, as the Keras that wrote the file builds it."""
    loader = model_format.loaders.get(architecture.flavour)
    if loader is None:
        raise ModelError(f"{path}: a {model_format.name} file from {architecture.saved_by} "
                         f"cannot be loaded ({SAVE_HINT})")
    try:
        return loader(path, trusted)
    except PipelineError:
        raise
    except Exception as exc:  # deserialisers raise many types for a damaged or foreign file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} could not be loaded by {architecture.saved_by}: "
                         f"{type(exc).__name__}: {reason} ({SAVE_HINT})") from exc
