"""End to end on a tiny config: every stage, bundles for the host (and the emulated
Cortex-M4 where its tools are installed), profiling, budget checks (table and JUnit) and
the cross-target report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devices.bench_runner import cpu_facts
from devices.errors import ArtifactError
from devices.fsutil import sha256_file
from pipeline.config import load_config
from pipeline.conversion.tflite_inspect import constant_bytes
from pipeline.deploy import build_artifacts, deploy
from pipeline.report import write_reports
from tests.contracts import assert_follows_schemas
from tests.system_tools import NEEDS_MCU


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_build: dict) -> dict[str, Any]:
    """The tiny flow deployed to the host; `mcu_workspace` adds the microcontroller."""
    root = tmp_path_factory.mktemp("deploy")
    config, build_dir = tiny_build["config"], tiny_build["build_dir"]
    lines: list[str] = []
    outcomes = {"host": deploy(config, "host", build_dir=build_dir, dist_dir=root / "dist",
                               echo=lines.append)}
    return {"root": root, "config": config, "build_dir": build_dir, "outcomes": outcomes,
            "lines": lines, "overrides": tiny_build["overrides"]}


@pytest.fixture(scope="module")
def mcu_workspace(workspace: dict[str, Any]) -> dict[str, Any]:
    """`workspace` with the emulated Cortex-M4 deployed beside the host."""
    lines: list[str] = []
    workspace["outcomes"]["mcu"] = deploy(
        workspace["config"], "mcu", build_dir=workspace["build_dir"],
        dist_dir=workspace["root"] / "dist", echo=lines.append)
    return {**workspace, "mcu_lines": lines}


def _manifest(workspace: dict[str, Any], target: str) -> dict[str, Any]:
    return json.loads((workspace["root"] / "dist" / target / "manifest.json").read_text())


@pytest.mark.slow
def test_bundles_match_their_manifests(workspace: dict[str, Any]) -> None:
    for target in workspace["outcomes"]:
        folder = workspace["root"] / "dist" / target
        assert_follows_schemas(folder)
        manifest = _manifest(workspace, target)
        listed = {entry["path"]: entry for entry in manifest["files"]}
        assert "model_int8.tflite" in listed
        assert listed["model_int8.tflite"]["sha256"] == sha256_file(
            folder / "model_int8.tflite")
        assert set(manifest["metrics"]) >= {"teacher", "student", "pruned", "artifacts"}
        assert manifest["config_fingerprint"] == workspace["config"].fingerprint()
        assert manifest["dataset"]["name"] == "mnist5k"
        samples = np.load(folder / "inputs.npz")
        assert samples["x"].shape == (40, 28, 28, 1) and samples["y"].shape == (40,)
        shipped = manifest["metrics"]["artifacts"]["model_int8.tflite"]
        assert shipped["weight_bytes"] == constant_bytes((folder / "model_int8.tflite").read_bytes())
        assert 0 < shipped["weight_bytes"] < shipped["bytes"] == listed["model_int8.tflite"]["bytes"]
        onnx_int8 = manifest["metrics"]["artifacts"]["model_int8.onnx"]["quantization_scheme"]
        assert onnx_int8["name"] == "portable" and onnx_int8["reduce_range"] is True
        assert "quantization_scheme" not in manifest["metrics"]["artifacts"]["model_int8.tflite"]
        for stage in ("export", "validate"):  # the CPUs whose kernels made these numbers
            assert manifest["machines"][stage] == cpu_facts()


@pytest.mark.slow
def test_device_accuracy_equals_the_validation_of_the_same_samples(
    workspace: dict[str, Any],
) -> None:
    report = workspace["outcomes"]["host"].report
    artifact = _manifest(workspace, "host")["metrics"]["artifacts"]["model_int8.tflite"]
    assert report["schema"] == "edge-latency-report/2"
    assert report["accuracy"]["samples"] == 40 == artifact["bundle_samples"]
    on_disk = json.loads((workspace["outcomes"]["host"].bundle / "latency_report.json").read_text())
    assert on_disk == report
    assert (workspace["outcomes"]["host"].bundle / "report.md").read_text().startswith("# host: ")
    # The host runs the validation's runtime (LiteRT's optimised kernels): the same top-1.
    assert report["accuracy"]["top1"] == artifact["bundle_top1"]
    assert report["accuracy"]["reference_top1"] == artifact["bundle_top1"]
    # ... so its accuracy line is judged on the validate stage's whole test split
    test_images = _manifest(workspace, "host")["dataset"]["test"]
    split = report["extra"]["test_split_accuracy"]
    assert (split["top1"], split["samples"]) == (artifact["top1"], test_images)
    judged = report["extra"]["accuracy_judged"]
    assert (judged["top1"], judged["samples"], judged["source"]) == (
        artifact["top1"], test_images, split["source"])
    low, high = judged["interval_95"]
    assert low < artifact["top1"] < high and high - low < 0.07  # 1,000 images: about ±3 points


@pytest.mark.slow
@NEEDS_MCU
def test_the_microcontroller_matches_its_reference_kernels_and_counts_every_layer(
    mcu_workspace: dict[str, Any],
) -> None:
    """The microcontroller's C kernels are bit-exact with LiteRT's *reference* kernels,
    which may round a near-tie differently from the optimised ones: its reference is those."""
    workspace = mcu_workspace
    folder = workspace["root"] / "dist" / "mcu"
    assert_follows_schemas(folder)
    mcu_files = {entry["path"] for entry in _manifest(workspace, "mcu")["files"]}
    assert {"model/model.c", "model/model.h"} <= mcu_files  # the generated C sources
    mcu = workspace["outcomes"]["mcu"].report
    mcu_artifact = _manifest(workspace, "mcu")["metrics"]["artifacts"]["model_int8.tflite"]
    assert mcu["accuracy"]["samples"] == 40 == mcu_artifact["bundle_samples"]
    assert mcu["extra"]["bit_exactness"]["mismatches"] == 0
    assert mcu_artifact["bundle_kernels"] == "reference"
    assert mcu["accuracy"]["top1"] == mcu["accuracy"]["reference_top1"]
    assert mcu["accuracy"]["top1"] == mcu_artifact["bundle_top1"]
    instructions = mcu["instructions"]
    pruned_macs = _manifest(workspace, "mcu")["metrics"]["pruned"]["macs"]
    assert instructions["count"] > pruned_macs  # at least one instruction per MAC
    assert instructions["per_mac"] == pytest.approx(instructions["count"] / pruned_macs, abs=1e-3)
    assert any("TFLite Micro readiness" in line for line in workspace["mcu_lines"])
    layers = mcu["ops"]
    assert sum(row["macs"] for row in layers) == pruned_macs
    log = "\n".join(workspace["mcu_lines"])
    assert "layers     instructions per op" in log
    assert all(row["name"] in log for row in layers)  # the per-layer table is printed


@pytest.mark.slow
@NEEDS_MCU
def test_cross_target_report_numbers_equal_the_bundles(mcu_workspace: dict[str, Any]) -> None:
    workspace = mcu_workspace
    result = write_reports(workspace["root"] / "dist")
    document = json.loads(result.json.read_text())
    assert result.markdown.is_file() and result.html.is_file()
    assert (workspace["root"] / "dist" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = json.dumps(document)
    host_median = workspace["outcomes"]["host"].report["latency_ms"]["median"]
    assert repr(host_median) in text or str(host_median) in text
    teacher_top1 = _manifest(workspace, "host")["metrics"]["teacher"]["top1"]
    assert str(teacher_top1) in text
    mcu_layers = workspace["outcomes"]["mcu"].report["ops"]
    costliest = max(mcu_layers, key=lambda row: row["instructions"])
    hot = document["hot_spots"]["mcu"][0]
    assert (hot["op"], hot["cost"], hot["unit"]) == (
        costliest["name"], costliest["instructions"], "instructions")
    assert f"{costliest['instructions']:,} instructions" in result.markdown.read_text()


def _cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *arguments], cwd=cwd,
                          capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_check_passes_breaks_and_speaks_junit(workspace: dict[str, Any]) -> None:
    dist = str(workspace["root"] / "dist")
    # The tiny models are not accurate enough for the shipped budget; only latency is tested.
    passed = _cli("check", "--target", "host", "--dist-dir", dist,
                  "--set", "target.budget.min_accuracy=0.0", cwd=workspace["root"])
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "PASSED" in passed.stdout
    broken = _cli("check", "--target", "host", "--dist-dir", dist,
                  "--set", "target.budget.min_accuracy=0.0",
                  "--set", "target.budget.latency_ms=0.000001", cwd=workspace["root"])
    assert broken.returncode == 1
    assert "BROKEN" in broken.stdout and "latency median" in broken.stdout
    junit = _cli("check", "--target", "host", "--dist-dir", dist, "--format", "junit",
                 "--set", "target.budget.min_accuracy=0.0",
                 "--set", "target.budget.latency_ms=0.000001", cwd=workspace["root"])
    assert junit.returncode == 1 and 'failures="1"' in junit.stdout


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_bundle_artifact_is_refused_before_profiling(
    workspace: dict[str, Any], tmp_path: Path, damage: str
) -> None:
    """Through the CLI: exit 2 (an input error), the file named, no latency report written."""
    dist = tmp_path / "dist"
    shutil.copytree(workspace["root"] / "dist" / "host", dist / "host")
    for stale in ("latency_report.json", "report.md"):
        (dist / "host" / stale).unlink()
    model = dist / "host" / "model_int8.tflite"
    content = model.read_bytes()
    model.write_bytes(content[: len(content) // 2] if damage == "truncated"
                      else content[:64] + bytes(64) + content[128:])
    result = _cli("profile", "--target", "host", "--dist-dir", str(dist),
                  cwd=workspace["root"])
    assert result.returncode == 2, result.stderr
    assert "model_int8.tflite" in result.stderr
    assert sorted(p.name for p in (dist / "host").iterdir()) == sorted(
        ["inputs.npz", "labels.txt", "manifest.json", "model_int8.tflite"])


@pytest.mark.slow
def test_a_target_whose_artifact_was_not_exported_is_refused_cleanly(
    workspace: dict[str, Any],
) -> None:
    config = load_config(overrides=[*workspace["overrides"], "export.precisions=fp32"])
    dist = workspace["root"] / "dist-missing"
    with pytest.raises(ArtifactError, match="target host runs model_int8.tflite, which the "
                       "export stage did not produce"):
        build_artifacts(config, ["host"], build_dir=workspace["build_dir"], dist_dir=dist,
                        echo=lambda _: None)
    # nothing half-written: at most the lock folder (dist/.locks, hidden, never a bundle)
    assert not dist.exists() or [p.name for p in dist.iterdir()] in ([], [".locks"])
