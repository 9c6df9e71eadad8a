import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from devices.errors import DataError
from pipeline.config import DataConfig
from pipeline.data import list_datasets, load_dataset


def test_mnist5k_is_shuffled_stratified_and_normalised() -> None:
    data = load_dataset(DataConfig(name="mnist5k", seed=0, validation_split=0.1, test_split=0.2))
    assert data.input_shape == (28, 28, 1) and data.num_classes == 10
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (3600, 400, 1000)
    assert np.bincount(data.y_test).tolist() == [100] * 10  # stratified
    assert np.bincount(data.y_val).tolist() == [40] * 10
    assert not np.all(np.diff(data.y_train) >= 0)  # the source is sorted by class: shuffled
    assert data.x_train.dtype == np.float32 and 0.0 <= data.x_train.min() < data.x_train.max() <= 1.0
    assert data.normalisation["std"] == [255.0] and data.normalisation["mean"] == [0.0]


def test_splits_are_deterministic_per_seed_and_disjoint() -> None:
    first = load_dataset(DataConfig(seed=3))
    again = load_dataset(DataConfig(seed=3))
    other = load_dataset(DataConfig(seed=4))
    assert np.array_equal(first.x_test, again.x_test)
    assert not np.array_equal(first.x_test, other.x_test)
    assert first.fingerprint == again.fingerprint != other.fingerprint
    train_rows = {row.tobytes() for row in first.x_train}
    overlap = sum(row.tobytes() in train_rows for row in first.x_test)
    assert overlap <= 2  # MNIST holds a few duplicate digits, never a shared split


def test_digits_from_scikit_learn() -> None:
    data = load_dataset(DataConfig(name="digits"))
    assert data.input_shape == (8, 8, 1)
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 1797
    assert data.normalisation["std"] == [16.0] and data.x_train.max() == pytest.approx(1.0)


def _write_cifar_cache(root: Path, per_batch: int) -> None:
    folder = root / "datasets" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in np.arange(per_batch) % 10],
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)


def test_cifar10_reads_the_keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small made-up batches in Keras' cache layout: the real download needs a network."""
    _write_cifar_cache(tmp_path, per_batch=20)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    data = load_dataset(DataConfig(name="cifar10", validation_split=0.1))
    assert data.input_shape == (32, 32, 3)
    assert len(data.y_test) == 20 and len(data.y_train) + len(data.y_val) == 100
    assert data.labels[0] == "airplane" and data.labels[9] == "truck"


def _write_npz(path: Path, **overrides: np.ndarray) -> Path:
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (60, 12, 12, 3), dtype=np.uint8),
        "y_train": np.arange(60) % 3,
        "x_test": rng.integers(0, 256, (15, 12, 12, 3), dtype=np.uint8),
        "y_test": np.arange(15) % 3,
    }
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


def test_npz_uint8_and_float_images(tmp_path: Path) -> None:
    data = load_dataset(DataConfig(name=f"npz:{_write_npz(tmp_path / 'a.npz')}"))
    assert data.input_shape == (12, 12, 3) and data.num_classes == 3
    assert len(data.y_test) == 15 and data.normalisation["std"] == [255.0] * 3
    floats = np.random.default_rng(2).random((60, 10, 10)).astype(np.float32)
    path = _write_npz(tmp_path / "b.npz", x_train=floats, x_test=floats[:15])
    data = load_dataset(DataConfig(name=f"npz:{path}"))
    assert data.input_shape == (10, 10, 1)  # HW grayscale gets a channel axis
    assert data.normalisation["std"] == [1.0]
    assert np.isclose(np.sort(data.x_test.ravel()), np.sort(floats[:15].ravel())).all()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"y_train": np.arange(59) % 3}, "x has 60 images but y has shape"),
        ({"y_train": np.zeros(60, dtype=np.int64)}, "fewer than two classes"),
        ({"x_test": np.zeros((15, 12, 12, 3, 1), dtype=np.uint8)}, "x_test must hold HWC images"),
        # accepted before, and wrong (issue 16, finding 7)
        ({"x_train": np.full((60, 4, 4, 1), np.nan, np.float32),
          "x_test": np.zeros((15, 4, 4, 1), np.float32)}, "x holds 960 non-finite pixel"),
        ({"x_train": np.zeros((60, 4, 4, 1), np.float32),
          "x_test": np.full((15, 4, 4, 1), np.inf, np.float32)}, "x_test holds 240 non-finite"),
        ({"x_train": np.full((60, 4, 4, 1), 255.0, np.float32),
          "x_test": np.zeros((15, 4, 4, 1), np.float32)},
         r"float images in x must lie in \[0, 1\]; found 255 to 255"),
        ({"x_test": np.zeros((15, 10, 12, 3), np.uint8)},
         r"x_test images are \(10, 12, 3\) but x's are \(12, 12, 3\)"),
        ({"y_train": np.r_[np.arange(59) % 3, 10**9]}, "label 1000000000 in y_train"),
        ({"y_test": np.arange(15) % 3 - 1}, "y_test must hold non-negative integer class ids"),
        ({"y_train": np.array([object()] * 60)}, "holds Python objects"),
    ],
)
def test_npz_errors(tmp_path: Path, overrides: dict, message: str) -> None:
    path = _write_npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(DataError, match=message):
        load_dataset(DataConfig(name=f"npz:{path}"))


def test_npz_missing_file_and_wrong_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="npz dataset .*missing.npz does not exist"):
        load_dataset(DataConfig(name=f"npz:{tmp_path / 'missing.npz'}"))
    np.savez(tmp_path / "names.npz", images=np.zeros((2, 2, 2)), labels=np.zeros(2))
    with pytest.raises(DataError, match="lacks arrays x_train, y_train, x_test, y_test"):
        load_dataset(DataConfig(name=f"npz:{tmp_path / 'names.npz'}"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz archive"):
        load_dataset(DataConfig(name=f"npz:{tmp_path / 'junk.npz'}"))


def _write_folder(root: Path, classes: dict[str, int]) -> Path:
    rng = np.random.default_rng(3)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            pixels = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    return root


def test_folder_of_class_subfolders(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "set", {"cat": 10, "dog": 10})
    data = load_dataset(DataConfig(name=f"folder:{root}", test_split=0.2, validation_split=0.1))
    assert data.labels == ("cat", "dog")
    assert data.input_shape == (9, 7, 3)
    assert np.bincount(data.y_test).tolist() == [2, 2]


def test_a_path_dataset_is_summarised_without_its_folders(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "home" / "someone" / "train", {"cat": 4, "dog": 4})
    data = load_dataset(DataConfig(name=f"folder:{root}"))
    assert data.summary()["name"] == "folder:…/train"
    assert "someone" not in json.dumps(data.summary())


def test_hidden_folders_and_files_are_not_classes(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "set", {"cat": 10, "dog": 10, ".ipynb_checkpoints": 3})
    Image.fromarray(np.zeros((9, 7, 3), np.uint8)).save(root / "cat" / ".thumb.png")
    data = load_dataset(DataConfig(name=f"folder:{root}", test_split=0.2, validation_split=0.1))
    assert data.labels == ("cat", "dog")
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 20


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="image folder .*nowhere does not exist"):
        load_dataset(DataConfig(name=f"folder:{tmp_path / 'nowhere'}"))
    root = _write_folder(tmp_path / "one", {"only": 4})
    with pytest.raises(DataError, match="needs at least two class sub-folders"):
        load_dataset(DataConfig(name=f"folder:{root}"))


def test_unknown_source_and_missing_path() -> None:
    assert {"mnist5k", "digits", "cifar10", "npz", "folder"} <= set(list_datasets())
    with pytest.raises(DataError, match="unknown dataset 'imagenet'"):
        load_dataset(DataConfig(name="imagenet"))
    with pytest.raises(DataError, match="needs a path, e.g. npz:/data/my_set"):
        load_dataset(DataConfig(name="npz:"))


class _Payload:
    """Pickles to a call of `os.system`: what a tampered cache file could hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_cifar_cache_file_that_calls_code_is_refused_unrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _write_cifar_cache(tmp_path, per_batch=10)
    marker = tmp_path / "ran"
    batch = tmp_path / "datasets" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({b"data": _Payload(marker), b"labels": [0]}))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(DataError, match=r"data_batch_3 .*posix.system.* not a CIFAR-10 batch"):
        load_dataset(DataConfig(name="cifar10"))
    assert not marker.exists()
