"""The whole flow on colour images: 2,000 of the real CIFAR-10 training JPEGs (200 a class,
from ../shared/data, where the project's CI lays it), or, in a clone without it, 2,000
generated 32x32 colour JPEGs of ten colour-coded classes; one or two epochs. Covers
3-channel normalisation, colour augmentation (flips) in real training, int8 export and
validation on the host; where the microcontroller's tools are installed, the readiness
check and the generated C for 32x32x3 inputs, bit-exact on the emulated Cortex-M4; and the
schemas of what ships."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.deploy import deploy
from tests.contracts import assert_follows_schemas
from tests.system_tools import NEEDS_MCU

ARCHIVE = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-train-jpeg.tar.gz"
PER_CLASS = 200
OVERRIDES = (
    "teacher.epochs=2", "student.epochs=2", "teacher.width=0.5", "student.width=0.5",
    "prune.finetune_epochs=1", "data.bundle_samples=20", "profile.runs=3", "profile.warmup=1",
    "data.test_split=0.2", "data.validation_split=0.1",
    # ten classes from 1,600 images in two epochs: a weak model, many near-ties for int8
    "validate.max_accuracy_drop=5.0",
)


def _generate_images(folder: Path) -> Path:
    """Ten classes told apart by colour and a bright square's place, with noise, as JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(10):
        hue = np.array([label % 3, (label // 3) % 3, label % 2], np.float32) * 90 + 40
        (folder / f"class{label}").mkdir(parents=True)
        for index in range(PER_CLASS):
            image = rng.normal(hue, 40, (32, 32, 3))
            row, column = divmod(label % 4, 2)
            image[row * 16:row * 16 + 12, column * 16:column * 16 + 12] += 80
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
                folder / f"class{label}" / f"{index:04d}.jpg")
    return folder


def _extract_slice(folder: Path) -> Path:
    """The first PER_CLASS JPEGs of every class folder, as `folder:` reads them."""
    taken: dict[str, int] = {}
    with tarfile.open(ARCHIVE) as archive:
        for member in archive:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3 or parts[0] != "train":
                continue
            if taken.get(parts[1], 0) < PER_CLASS:
                taken[parts[1]] = taken.get(parts[1], 0) + 1
                target = folder / parts[1] / parts[2]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
    assert sorted(taken.values()) == [PER_CLASS] * 10
    return folder


@pytest.fixture(scope="module")
def colour(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every stage on the colour images, deployed to the host."""
    source = _extract_slice if ARCHIVE.is_file() else _generate_images
    images = source(tmp_path_factory.mktemp("colour-images"))
    config = load_config(overrides=[*OVERRIDES, f"data.name=folder:{images}"])
    root = tmp_path_factory.mktemp("colour")
    outcome = deploy(config, "host", build_dir=root / "build", dist_dir=root / "dist",
                     echo=lambda _: None)
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    return {"outcome": outcome, "manifest": manifest, "config": config, "root": root}


@pytest.mark.slow
def test_colour_images_flow_through_every_stage(colour: dict[str, Any]) -> None:
    outcome, manifest = colour["outcome"], colour["manifest"]
    assert_follows_schemas(outcome.bundle)
    assert manifest["input"]["shape"] == [32, 32, 3]
    normalisation = manifest["input"]["normalisation"]
    assert normalisation["mean"] == [0.0] * 3 and normalisation["std"] == [255.0] * 3
    shipped = np.load(outcome.bundle / "inputs.npz")["x"]  # (raw - mean) / std, per channel
    assert shipped.shape == (20, 32, 32, 3) and 0.0 <= shipped.min() < shipped.max() <= 1.0
    assert len({float(shipped[..., channel].mean()) for channel in range(3)}) == 3
    assert len(manifest["labels"]) == 10
    if ARCHIVE.is_file():
        assert manifest["labels"][:2] == ["airplane", "automobile"]
    assert manifest["dataset"]["train"] + manifest["dataset"]["validation"] \
        + manifest["dataset"]["test"] == 10 * PER_CLASS
    teacher = manifest["metrics"]["teacher"]
    assert teacher["top1"] > 0.15  # it learnt something in two epochs (chance: 0.10)
    artifact = manifest["metrics"]["artifacts"]["model_int8.tflite"]
    assert outcome.report["accuracy"]["top1"] == artifact["bundle_top1"]
    assert outcome.report["accuracy"]["samples"] == 20


@pytest.mark.slow
@NEEDS_MCU
def test_colour_images_reach_the_microcontroller_bit_exact(colour: dict[str, Any]) -> None:
    """The same trained stages (from the cache) bundled for the emulated Cortex-M4."""
    root = colour["root"]
    outcome = deploy(colour["config"], "mcu", build_dir=root / "build", dist_dir=root / "dist",
                     echo=lambda _: None)
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    assert_follows_schemas(outcome.bundle)
    report = outcome.report
    assert report["extra"]["readiness"]["ready"] is True
    assert report["extra"]["bit_exactness"]["mismatches"] == 0
    assert report["accuracy"]["top1"] == report["accuracy"]["reference_top1"]
    assert report["accuracy"]["samples"] == 20
    assert report["instructions"]["count"] > manifest["metrics"]["pruned"]["macs"]
    files = {entry["path"] for entry in manifest["files"]}
    assert {"model/model.c", "model/model.h", "model_int8.tflite"} <= files
    assert "#define MODEL_INPUT_BYTES 3072" in (outcome.bundle / "model" / "model.h").read_text()
