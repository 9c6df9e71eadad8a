"""`profile --model FILE` and `artifacts --model FILE` (pipeline/file_bundle.py): a user's
TFLite or ONNX file, not built by this repository (tests/user_models.py), bundled alone and
profiled on the host with the deploy's report; what cannot run is refused before any
device is touched, exit 2, with nothing written in dist/. The device targets (Pi over
sshd, phone over adb, Cortex-M in qemu) are in tests/devices/test_file_bundle_targets.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from devices.budget import check_report_file
from devices.profiles import load_profile
from pipeline.config import load_config
from pipeline.file_bundle import build_file_artifacts, profile_model_file
from tests.contracts import assert_follows_schemas, assert_one_report_shape
from tests.user_models import IMAGE_SHAPE, write_user_models

ROOT = Path(__file__).resolve().parent.parent.parent
QUICK = ["profile.runs=5", "profile.warmup=1", "data.bundle_samples=24"]


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_user_models(tmp_path_factory.mktemp("user-models"))


def _quiet(_: str) -> None:
    pass


def _read(bundle: Path, name: str) -> dict:
    return json.loads((bundle / name).read_text(encoding="utf-8"))


def _cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *arguments], cwd=cwd,
                          capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                               "HOME": str(cwd)})


@pytest.mark.parametrize(("file", "runtime", "shipped"), [
    ("int8", "litert", "model_int8.tflite"),
    ("onnx", "onnxruntime", "model.onnx"),
])
def test_a_file_alone_profiles_on_the_host_with_a_deploys_report(
    user_files: dict[str, Path], tmp_path: Path, file: str, runtime: str, shipped: str,
) -> None:
    """No data: seeded random inputs of the file's shape, no labels, so the top-1 is null
    with its reason, and the accuracy limit is not judged (not failed), by the profile and
    by a later `check` alike."""
    config = load_config(overrides=QUICK)
    outcome = profile_model_file(config, user_files[file], "host", dist_dir=tmp_path,
                                 labelled=False, echo=_quiet)
    report = outcome.report
    assert_one_report_shape(report)
    assert_follows_schemas(outcome.bundle)
    assert report["artifact"]["file"] == shipped and report["runtime"]["name"] == runtime
    assert report["accuracy"] == {"top1": None, "reference_top1": None, "samples": 24}
    assert report["missing"]["accuracy.top1"] == "the bundle's inputs.npz has no labels"
    assert report["budget"]["passed"] is True and outcome.passed
    check = check_report_file(outcome.bundle / "latency_report.json", load_profile("host"))
    accuracy = next(row for row in check.rows if row.check == "top-1 accuracy")
    assert check.passed and accuracy.status == "skipped" and "not judged" in accuracy.note
    manifest = _read(outcome.bundle, "manifest.json")
    assert "artifacts" not in manifest["metrics"]  # nobody validated the file
    assert manifest["metrics"]["model_file"]["file"] == user_files[file].name
    assert manifest["dataset"]["name"] == "random" and manifest["input"]["shape"] == [8, 8, 1]
    with np.load(outcome.bundle / "inputs.npz") as inputs:
        assert sorted(inputs.files) == ["x"] and inputs["x"].shape == (24, *IMAGE_SHAPE)


def test_labelled_data_measures_the_files_top1_on_the_device(
    user_files: dict[str, Path], tmp_path: Path,
) -> None:
    """`--set data.name=…`: the test split as the pipeline normalises it, and the device's
    top-1 equal to the file's own, measured in this process on the same samples."""
    config = load_config(overrides=[*QUICK, f"data.name=npz:{user_files['dataset']}"])
    outcome = profile_model_file(config, user_files["fp32"], "host", dist_dir=tmp_path,
                                 labelled=True, echo=_quiet)
    assert_one_report_shape(outcome.report)
    assert_follows_schemas(outcome.bundle)
    record = _read(outcome.bundle, "manifest.json")["metrics"]["artifacts"]["model.tflite"]
    accuracy = outcome.report["accuracy"]
    assert accuracy["top1"] == accuracy["reference_top1"] == record["bundle_top1"]
    assert record["bundle_samples"] == accuracy["samples"] == 24
    assert record["top1"] > 0.5 and record["test_samples"] == 60  # trained, not chance
    with np.load(user_files["dataset"]) as split, np.load(outcome.bundle / "inputs.npz") as bundled:
        np.testing.assert_array_equal(bundled["x"], split["x_test"][:24])
        np.testing.assert_array_equal(bundled["y"], split["y_test"][:24])


def test_artifacts_builds_every_targets_bundle_from_the_file_without_a_device(
    user_files: dict[str, Path], tmp_path: Path,
) -> None:
    config = load_config(overrides=QUICK)
    bundles = build_file_artifacts(config, user_files["int8"], ["host", "rpi", "phone", "mcu"],
                                   dist_dir=tmp_path, labelled=False, echo=_quiet)
    assert sorted(bundles) == ["host", "mcu", "phone", "rpi"]
    for bundle in bundles.values():
        manifest = _read(bundle, "manifest.json")
        assert "model_int8.tflite" in manifest["artifacts"]
        assert not (bundle / "latency_report.json").exists()
    assert (bundles["mcu"] / "model" / "model.c").is_file()  # the generated C


@pytest.mark.parametrize(("file", "arguments", "says"), [
    ("truncated", ("profile",), "truncated.tflite cannot be loaded by LiteRT"),
    ("not_a_model", ("profile",), "notes.tflite is not a TFLite flatbuffer"),
    ("tanh_int8", ("profile", "--target", "mcu"), "op #4 TANH: not in TFLite Micro"),
    ("fp32", ("profile", "--target", "mcu"), "cannot run user_cnn_fp32.tflite, a fp32 tflite"),
    ("onnx", ("profile", "--target", "phone"), "cannot run user_cnn.onnx, a fp32 onnx"),
    ("fp32", ("profile", "--set", "prune.ratio=0.5"), "prune.ratio would change nothing"),
    ("fp32", ("artifacts", "--force", "teacher"), "--force teacher would recompute nothing"),
    ("fp32", ("profile", "--set", "data.name=mnist5k"), "but mnist5k's images are [28, 28, 1]"),
    ("fp32", ("profile", "--set", "data.name=digits"), "gives 3 classes, digits has 10"),
])
def test_what_cannot_run_is_refused_before_any_device_with_exit_2(
    user_files: dict[str, Path], tmp_path: Path, file: str, arguments: tuple[str, ...],
    says: str,
) -> None:
    """No device is reached (the Cortex-M and phone refusals need neither qemu nor adb) and
    dist/ is never created."""
    dist = tmp_path / "dist"
    result = _cli(*arguments, "--model", str(user_files[file]), "--dist-dir", str(dist),
                  cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert not dist.exists()


def test_a_file_that_crashes_tflite_micro_is_refused_not_fatal(
    user_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tflite-micro wheel aborts the process on some models (a MobileNetV2 int8 file,
    measured); a user's file is loaded in a child first, so the abort becomes a refusal.
    The child here aborts as that wheel does."""
    from devices.mcu import tflm
    from devices.mcu.readiness import UnsupportedOperatorError

    if not tflm.tflm_installed():
        pytest.skip("tflite-micro is not installed (its wheel exists for Linux x86-64)")
    monkeypatch.setattr(tflm, "_CRASH_PROBE", "import os; os.abort()")
    with pytest.raises(UnsupportedOperatorError, match=r"user_cnn_int8.tflite: TensorFlow "
                       r"Lite Micro .* crashed loading it \(signal SIGABRT\)") as refused:
        build_file_artifacts(load_config(overrides=QUICK), user_files["int8"], ["mcu"],
                             dist_dir=tmp_path / "dist", labelled=False, echo=_quiet)
    assert refused.value.exit_code == 2 and not (tmp_path / "dist").exists()
