"""`profile --model FILE` on the device targets (pipeline/file_bundle.py), with files this
repository did not build (tests/user_models.py): the Raspberry Pi through a real sshd, the
phone through the real adb client and server with a device double, the Cortex-M4 as
generated C in qemu. Each report has the deploy's one shape; with labelled data the
device's top-1 is the file's own on the bundled samples, measured in-process."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.config import PipelineConfig, load_config
from pipeline.file_bundle import profile_model_file
from tests.contracts import assert_follows_schemas, assert_one_report_shape
from tests.system_tools import NEEDS_ADB, NEEDS_MCU, NEEDS_SSHD
from tests.user_models import write_user_models

QUICK = ["profile.runs=5", "profile.warmup=1", "data.bundle_samples=24"]


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_user_models(tmp_path_factory.mktemp("user-models"))


def _config(user_files: dict[str, Path], labelled: bool,
            target: dict[str, str] | None = None) -> PipelineConfig:
    data = [f"data.name=npz:{user_files['dataset']}"] if labelled else []
    config = load_config(overrides=[*QUICK, *data])
    return replace(config, target_overrides=tuple((target or {}).items()))


def _shipped_record(bundle: Path, file: str) -> dict:
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    return manifest["metrics"]["artifacts"][file]


@NEEDS_SSHD
@pytest.mark.parametrize(("file", "labelled", "shipped"), [
    ("int8", True, "model_int8.tflite"),
    ("onnx", False, "model.onnx"),
])
def test_profile_model_on_the_pi_through_a_real_sshd(
    user_files: dict[str, Path], sshd, tmp_path: Path, file: str, labelled: bool, shipped: str,
) -> None:
    overrides = sshd.overrides(**{"extra.python": json.dumps([sys.executable])})
    outcome = profile_model_file(_config(user_files, labelled, overrides), user_files[file],
                                 "rpi", dist_dir=tmp_path, labelled=labelled,
                                 echo=lambda _: None)
    report = outcome.report
    assert_one_report_shape(report)
    assert_follows_schemas(outcome.bundle)
    assert report["target"]["adapter"] == "ssh" and report["artifact"]["file"] == shipped
    assert report["runtime"]["name"] == ("litert" if file == "int8" else "onnxruntime")
    if labelled:
        assert report["accuracy"]["top1"] == _shipped_record(outcome.bundle,
                                                             shipped)["bundle_top1"]
    else:
        assert report["accuracy"]["top1"] is None and "accuracy.top1" in report["missing"]


@NEEDS_ADB
def test_profile_model_on_the_phone_through_real_adb(
    user_files: dict[str, Path], fake_phone, fake_benchmark_model,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("ADB_SERIAL", fake_phone().serial)
    monkeypatch.setenv("BENCHMARK_MODEL", str(fake_benchmark_model[0]))
    config = _config(user_files, True, {"connection.taskset_mask": "1"})
    outcome = profile_model_file(config, user_files["int8"], "phone", dist_dir=tmp_path,
                                 labelled=True, echo=lambda _: None)
    report = outcome.report
    assert_one_report_shape(report)
    assert_follows_schemas(outcome.bundle)
    assert report["target"]["adapter"] == "adb"
    assert report["runtime"]["name"] == "benchmark_model"
    shipped = _shipped_record(outcome.bundle, "model_int8.tflite")
    assert report["accuracy"]["reference_top1"] == shipped["bundle_top1"]
    assert report["accuracy"]["top1"] == shipped["bundle_top1"]


@NEEDS_MCU
@pytest.mark.parametrize("labelled", [True, False])
def test_profile_model_on_the_emulated_cortex_m4(
    user_files: dict[str, Path], tmp_path: Path, labelled: bool,
) -> None:
    """Readiness first, then the generated C of the file, built and run in qemu: arena,
    flash, exact instruction counts per layer, outputs bit-exact with LiteRT's reference
    kernels, whose top-1 on the bundled samples the manifest carries."""
    said: list[str] = []
    outcome = profile_model_file(_config(user_files, labelled), user_files["int8"], "mcu",
                                 dist_dir=tmp_path, labelled=labelled, echo=said.append)
    report = outcome.report
    assert_one_report_shape(report)
    assert_follows_schemas(outcome.bundle)
    assert any(line.startswith("TFLite Micro readiness of") for line in said)
    assert report["memory"]["arena_bytes"] > 0 and report["memory"]["flash_bytes"] > 0
    assert report["instructions"]["count"] > 0
    assert [op["type"] for op in report["ops"]][:2] == ["CONV_2D", "MAX_POOL_2D"]
    assert report["extra"]["bit_exactness"]["referee"] == "litert"
    assert report["accuracy"]["samples"] == 24
    if labelled:
        shipped = _shipped_record(outcome.bundle, "model_int8.tflite")
        assert shipped["bundle_kernels"] == "reference"
        assert report["accuracy"]["top1"] == shipped["bundle_top1"]
    else:
        assert report["accuracy"]["top1"] is None
        assert report["missing"]["accuracy.top1"] == "the bundle's inputs.npz has no labels"
