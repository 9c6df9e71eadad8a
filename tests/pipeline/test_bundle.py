"""Device bundles: contents, manifest checksums against the written files, quantization
records, atomic replacement and verify_bundle's tamper detection."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from devices.bundle import verify_bundle
from devices.errors import ArtifactError, ExportError
from devices.tf_env import keras
from pipeline.bundle import write_bundle
from pipeline.config import ExportConfig, ValidateConfig
from pipeline.stages.export import run_export
from pipeline.stages.validate import run_validate
from pipeline.version import __version__

LABELS = ["zero", "one", "two"]
FIELDS = {
    "config_fingerprint": "0123456789abcdef",
    "dataset": {"name": "random", "samples": 30},
    "input": {"normalisation": {"scale": 1 / 255, "offset": 0.0}},
    "metrics": {"student": {"top1": 0.5, "params": 100, "macs": 1000, "bytes": 400}},
}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    keras.utils.set_random_seed(7)
    inputs = keras.Input((8, 8, 1), name="input")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    rng = np.random.default_rng(0)
    x_samples = rng.uniform(0, 1, (30, 8, 8, 1)).astype(np.float32)
    y_samples = rng.integers(0, 3, 30).astype(np.int64)
    folder = tmp_path_factory.mktemp("artifacts")
    config = ExportConfig(formats=("tflite", "onnx"), precisions=("fp32", "int8"))
    export = run_export(config, model, x_samples, folder)
    # Random labels: accuracy means nothing here, so the limits are wide open.
    loose = ValidateConfig(max_accuracy_drop=100.0, min_float_agreement=0.0)
    validation = run_validate(loose, model, folder, export, x_samples, y_samples)
    return {"dir": folder, "export": export, "validation": validation,
            "x": x_samples, "y": y_samples}


def _write(artifacts: dict, out_dir: Path, files: tuple[str, ...] = ("model_int8.tflite",),
           **overrides: object) -> Path:
    arguments = {
        "target": "mcu", "artifact_files": [artifacts["dir"] / f for f in files],
        "labels": LABELS, "x_samples": artifacts["x"], "y_samples": artifacts["y"],
        "manifest_fields": FIELDS, "validation": artifacts["validation"], **overrides,
    }
    return write_bundle(out_dir, **arguments)


def test_bundle_holds_artifact_labels_inputs_and_manifest(artifacts: dict, tmp_path: Path) -> None:
    bundle = _write(artifacts, tmp_path / "dist")
    assert bundle == tmp_path / "dist" / "mcu"
    assert sorted(p.name for p in bundle.iterdir()) == [
        "inputs.npz", "labels.txt", "manifest.json", "model_int8.tflite"
    ]
    assert (bundle / "labels.txt").read_text().splitlines() == LABELS
    with np.load(bundle / "inputs.npz") as inputs:
        assert inputs["x"].dtype == np.float32 and inputs["y"].dtype == np.int64
        np.testing.assert_array_equal(inputs["x"], artifacts["x"])
        np.testing.assert_array_equal(inputs["y"], artifacts["y"])
    assert (bundle / "model_int8.tflite").read_bytes() == (
        artifacts["dir"] / "model_int8.tflite"
    ).read_bytes()
    assert [p.name for p in (tmp_path / "dist").iterdir()] == ["mcu"]  # no temp folder left


def test_manifest_checksums_match_the_written_files(artifacts: dict, tmp_path: Path) -> None:
    bundle = _write(artifacts, tmp_path, files=("model_int8.tflite", "model.onnx"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    listed = {record["path"]: record for record in manifest["files"]}
    assert set(listed) == {"model_int8.tflite", "model.onnx", "labels.txt", "inputs.npz"}
    for path, record in listed.items():
        content = (bundle / path).read_bytes()
        assert record["sha256"] == hashlib.sha256(content).hexdigest()
        assert record["bytes"] == len(content)
    verify_bundle(bundle)


def test_manifest_carries_input_spec_quantization_and_metrics(
    artifacts: dict, tmp_path: Path
) -> None:
    bundle = _write(artifacts, tmp_path, files=("model_int8.tflite", "model.tflite"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["pipeline_version"] == __version__
    assert manifest["config_fingerprint"] == FIELDS["config_fingerprint"]
    assert manifest["dataset"] == FIELDS["dataset"]
    assert manifest["labels"] == LABELS
    assert manifest["input"]["shape"] == [8, 8, 1]
    assert manifest["input"]["dtype"] == "float32"
    assert manifest["input"]["normalisation"] == FIELDS["input"]["normalisation"]
    exported = artifacts["export"].artifact("model_int8.tflite")
    assert manifest["input"]["quantization"] == {
        "model_int8.tflite": exported.input_quantization.to_dict()
    }
    assert manifest["output"]["quantization"]["model_int8.tflite"]["scale"] == pytest.approx(
        exported.output_quantization.scale
    )
    assert manifest["metrics"]["student"] == FIELDS["metrics"]["student"]
    validated = {m.file: m for m in artifacts["validation"].artifacts}
    record = manifest["metrics"]["artifacts"]["model_int8.tflite"]
    assert record["top1"] == pytest.approx(validated["model_int8.tflite"].top1)
    assert record["agreement"] == pytest.approx(validated["model_int8.tflite"].agreement)
    assert (record["precision"], record["format"], record["bytes"]) == (
        "int8", "tflite", exported.bytes
    )


def test_a_folder_artifact_is_copied_and_every_file_listed(artifacts: dict, tmp_path: Path) -> None:
    sources = tmp_path / "generated" / "model"
    (sources / "include").mkdir(parents=True)
    (sources / "model.c").write_text("int main(void) { return 0; }\n")
    (sources / "include" / "model.h").write_text("#pragma once\n")
    bundle = write_bundle(
        tmp_path / "dist", target="mcu", artifact_files=[sources], labels=LABELS,
        x_samples=artifacts["x"], y_samples=artifacts["y"], manifest_fields=FIELDS,
    )
    listed = {r["path"] for r in json.loads((bundle / "manifest.json").read_text())["files"]}
    assert {"model/model.c", "model/include/model.h"} <= listed
    verify_bundle(bundle)


@pytest.mark.parametrize("tamper", ["modify", "remove", "add"])
def test_verify_bundle_catches_tampering(artifacts: dict, tmp_path: Path, tamper: str) -> None:
    bundle = _write(artifacts, tmp_path)
    artifact = bundle / "model_int8.tflite"
    expected = {
        "modify": r"model_int8\.tflite has sha256 [0-9a-f]{12}\.\.\., expected",
        "remove": r"model_int8\.tflite is missing",
        "add": r"notes\.txt is not listed in the manifest",
    }[tamper]
    if tamper == "modify":
        content = bytearray(artifact.read_bytes())
        content[100] ^= 0xFF
        artifact.write_bytes(bytes(content))
    elif tamper == "remove":
        artifact.unlink()
    else:
        (bundle / "notes.txt").write_text("extra")
    with pytest.raises(ArtifactError, match=expected):
        verify_bundle(bundle)


def test_verify_bundle_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="has no manifest.json"):
        verify_bundle(tmp_path)


def test_failed_rebuild_keeps_the_previous_bundle_intact(artifacts: dict, tmp_path: Path) -> None:
    bundle = _write(artifacts, tmp_path)
    before = (bundle / "manifest.json").read_bytes()
    with pytest.raises(ArtifactError, match=r"model_fp16\.tflite does not exist"):
        _write(artifacts, tmp_path, files=("model_int8.tflite", "model_fp16.tflite"))
    assert (bundle / "manifest.json").read_bytes() == before
    verify_bundle(bundle)
    assert [p.name for p in tmp_path.iterdir()] == ["mcu"]  # the temp folder is gone


def test_rebuild_replaces_the_whole_bundle(artifacts: dict, tmp_path: Path) -> None:
    _write(artifacts, tmp_path, files=("model_int8.tflite",))
    bundle = _write(artifacts, tmp_path, files=("model.onnx",))
    assert not (bundle / "model_int8.tflite").exists()
    assert json.loads((bundle / "manifest.json").read_text())["input"]["quantization"] == {}
    verify_bundle(bundle)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"manifest_fields": {"dataset": "x"}}, r"\['config_fingerprint'\] are missing"),
        ({"labels": ["a", "b\nc"]}, "labels must be non-empty single-line strings"),
        ({"y_samples": np.zeros(3, np.int64)}, "one label each"),
        ({"artifact_files": []}, "has no artifact"),
    ],
)
def test_bad_bundle_inputs_are_clear_errors_and_write_nothing(
    artifacts: dict, tmp_path: Path, overrides: dict, message: str
) -> None:
    with pytest.raises(ExportError, match=message):
        _write(artifacts, tmp_path / "dist", **overrides)
    dist = tmp_path / "dist"
    assert not dist.exists() or not any(dist.iterdir())  # neither the bundle nor a temp folder
