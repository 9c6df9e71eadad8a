"""The cross-target report: numbers equal the manifests and latency reports it reads.

The dist/ folders are written by the fixture below following the manifest contract (docs/architecture.md) and the
edge-latency-report/2 schema (devices.base.LatencyReport.to_dict), so the test needs no
training; a real bundle from `make deploy` has the same shape.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from devices.base import LatencyReport
from devices.errors import ArtifactError
from devices.fsutil import atomic_write_json
from devices.latency_stats import empty_latency
from pipeline.plots import PNG_SIGNATURE, ParetoPoint, non_dominated, pareto_front
from pipeline.report import (
    format_count,
    format_ms,
    format_top1,
    hot_spots,
    target_latency,
    write_reports,
)

FINGERPRINT = "3f9a1c2b7d4e5f60"


def _history(first: float, epochs: int = 4) -> dict[str, list[float]]:
    return {"loss": [first / (epoch + 1) for epoch in range(epochs)],
            "val_loss": [first / (epoch + 1) + 0.05 for epoch in range(epochs)],
            "accuracy": [0.5 + 0.1 * epoch for epoch in range(epochs)],
            "val_accuracy": [0.45 + 0.1 * epoch for epoch in range(epochs)]}


METRICS: dict[str, Any] = {
    "teacher": {"model": "seed_teacher", "top1": 0.9875, "params": 1_250_858,
                "macs": 10_931_200, "bytes": 5_036_112, "history": _history(1.2)},
    "student_scratch": {"model": "seed_student", "top1": 0.9610, "params": 20_010,
                        "macs": 2_311_680, "bytes": 104_440, "history": _history(1.5)},
    "student": {"model": "seed_student", "top1": 0.9720, "params": 20_010,
                "macs": 2_311_680, "bytes": 104_440, "history": _history(1.4)},
    "pruned": {"method": "channel", "source": "student", "top1": 0.9680,
               "top1_before_finetune": 0.8810, "top1_before_pruning": 0.9720,
               "params": 6_118, "macs": 640_300, "bytes": 49_180,
               "params_before": 20_010, "params_after": 6_118, "macs_before": 2_311_680,
               "macs_after": 640_300, "bytes_before": 104_440, "bytes_after": 49_180,
               "history": _history(0.6, 3)},
    "artifacts": {
        "model.tflite": {"top1": 0.9680, "agreement": 1.0, "bytes": 27_104,
                         "weight_bytes": 23_712, "precision": "fp32", "format": "tflite"},
        "model_int8.tflite": {"top1": 0.9655, "agreement": 0.993, "bytes": 9_880,
                              "weight_bytes": 6_112, "precision": "int8", "format": "tflite"},
        "model.onnx": {"top1": 0.9680, "agreement": 1.0, "bytes": 26_512,
                       "weight_bytes": 23_720, "precision": "fp32", "format": "onnx"},
    },
}


def _manifest(target: str, artifacts: list[str]) -> dict[str, Any]:
    return {
        "schema": "edge-bundle-manifest/1",
        "pipeline_version": "0.1.0", "config_fingerprint": FINGERPRINT,
        "dataset": {"name": "mnist5k"},
        "target": target, "labels": [str(d) for d in range(10)], "artifacts": artifacts,
        "input": {"shape": [28, 28, 1], "dtype": "float32", "layout": "NHWC",
                  "normalisation": {"scale": 1 / 255.0, "offset": 0.0},
                  "quantization": {"model_int8.tflite": {"scale": 0.003921, "zero_point": -128}}},
        "output": {"classes": 10, "dtype": "float32", "quantization": {}},
        "files": [{"path": name, "sha256": "0" * 64, "bytes": 1} for name in artifacts],
        "metrics": METRICS,
    }


def _report(target: str, adapter: str, file: str, fmt: str, median: float, p90: float,
            top1: float, *, emulated: bool = False, instructions: dict | None = None,
            memory: dict | None = None, budget: dict | None = None,
            ops: list | None = None) -> dict[str, Any]:
    report = LatencyReport(
        target={"name": target, "adapter": adapter, "device": {"machine": "x86_64"},
                "emulated": emulated},
        artifact={"file": file, "sha256": "a" * 64, "bytes": 9_880, "format": fmt,
                  "precision": "int8"},
        runtime={"name": "litert", "version": "2.3.0", "threads": 2, "delegate": None},
        runs={"warmup": 10, "measured": 50},
        latency_ms={"init": 4.1, "first": 0.9, "warmup_mean": 0.5, "mean": median * 1.02,
                    "median": median, "p90": p90, "p95": p90 * 1.05, "p99": p90 * 1.1,
                    "min": median * 0.9, "max": p90 * 1.3, "std": 0.01},
        memory=memory or {"init_rss_mb": 120.0, "peak_rss_mb": 142.5, "arena_bytes": None,
                          "flash_bytes": None},
        instructions=instructions,
        ops=ops,
        accuracy={"top1": top1, "reference_top1": 0.9655, "samples": 200},
        budget=budget or {"limits": {"latency_ms": 50.0, "latency_stat": "median"},
                          "passed": True, "violations": []},
    )
    return report.to_dict()


def write_dist(root: Path) -> Path:
    dist = root / "dist"
    bundles = {
        "host": ["model_int8.tflite"], "mcu": ["model"], "phone": ["model_int8.tflite"],
        "rpi": ["model_int8.tflite"],
    }
    for target, artifacts in bundles.items():
        atomic_write_json(dist / target / "manifest.json", _manifest(target, artifacts))
    atomic_write_json(dist / "host" / "latency_report.json", _report(
        "host", "host", "model_int8.tflite", "tflite", 0.2315, 0.2587, 0.9655))
    atomic_write_json(dist / "mcu" / "latency_report.json", _report(
        "mcu", "mcu-qemu", "model", "c", 180.0, 181.5, 0.9650, emulated=True,
        instructions={"count": 24_000_000, "per_mac": 37.48, "est_cycles": 28_800_000,
                      "est_ms": 180.0, "clock_mhz": 160.0, "cpi": 1.2},
        memory={"init_rss_mb": None, "peak_rss_mb": None, "arena_bytes": 38_912,
                "flash_bytes": 61_440},
        budget={"limits": {"latency_ms": 150.0, "latency_stat": "median", "flash_kb": 256.0},
                "passed": False, "violations": ["latency median (ms): 180.000 breaks <= 150"]}))
    atomic_write_json(dist / "phone" / "latency_report.json", _report(
        "phone", "adb", "model_int8.tflite", "tflite", 0.0871, 0.0871, 0.9655,
        ops=[{"name": "conv_1", "type": "CONV_2D", "ms": 0.061, "instructions": None,
              "share": 0.70},
             {"name": "dense", "type": "FULLY_CONNECTED", "ms": 0.017, "instructions": None,
              "share": 0.195},
             {"name": "pool_1", "type": "MAX_POOL_2D", "ms": 0.009, "instructions": None,
              "share": 0.105}]))
    return dist


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, dict[str, Any]]:
    dist = write_dist(tmp_path_factory.mktemp("report"))
    result = write_reports(dist)
    return dist, result, json.loads(result.json.read_text())


def _variant(document: dict[str, Any], key: str) -> dict[str, Any]:
    return next(v for v in document["variants"] if v["key"] == key)


def test_every_stage_and_artifact_number_equals_the_manifest(written: Any) -> None:
    _, _, document = written
    for stage in ("teacher", "student_scratch", "student", "pruned"):
        variant = _variant(document, stage)
        for key in ("top1", "params", "macs", "bytes"):
            assert variant[key] == METRICS[stage][key], (stage, key)
    for file, record in METRICS["artifacts"].items():
        variant = _variant(document, file)
        for key in ("top1", "agreement", "bytes", "weight_bytes", "precision", "format"):
            assert variant[key] == record[key], (file, key)
        assert (variant["params"], variant["macs"]) == (6_118, 640_300)  # the pruned model


def test_latencies_equal_the_latency_reports(written: Any) -> None:
    dist, _, document = written
    host = json.loads((dist / "host" / "latency_report.json").read_text())
    int8 = _variant(document, "model_int8.tflite")
    assert int8["latency_ms"]["host"] == host["latency_ms"]["median"] == 0.2315
    assert int8["latency_ms"]["phone"] == 0.0871
    assert "rpi" not in int8["latency_ms"]  # bundled, never profiled
    # a microcontroller's latency_ms are instruction-count estimates, labelled so
    mcu = _variant(document, "model")
    assert mcu["latency_ms"] == {"mcu": 180.0}
    assert mcu["latency_source"] == {"mcu": "instruction-count estimate"}
    assert (mcu["top1"], mcu["bytes"], mcu["format"]) == (0.9650, 9_880, "c")
    targets = {t["name"]: t for t in document["targets"]}
    assert targets["mcu"]["budget"]["passed"] is False
    assert targets["host"]["latency_ms"]["p90"] == 0.2587
    assert targets["rpi"]["profiled"] is False


def test_effects_are_differences_and_ratios_of_manifest_numbers(written: Any) -> None:
    _, _, document = written
    effects = {e["change"]: e for e in document["effects"]}
    distillation = effects["distillation"]
    assert distillation["top1_points"] == pytest.approx(100 * (0.9720 - 0.9610))
    assert distillation["macs_ratio"] == 1.0
    pruning = effects["pruning (channel) + fine-tuning"]
    assert pruning["macs_ratio"] == pytest.approx(640_300 / 2_311_680)
    assert pruning["bytes_ratio"] == pytest.approx(49_180 / 104_440)
    assert pruning["top1_points"] == pytest.approx(100 * (0.9680 - 0.9720))
    assert effects["fine-tuning after pruning"]["top1_points"] == pytest.approx(
        100 * (0.9680 - 0.8810))
    quantization = effects["int8 quantization (tflite)"]
    assert quantization["bytes_ratio"] == pytest.approx(9_880 / 27_104)
    assert quantization["latency_ratio"] is None  # fp32 never profiled


def test_markdown_shows_the_same_numbers(written: Any) -> None:
    _, result, _ = written
    markdown = result.markdown.read_text()
    int8_row = next(line for line in markdown.splitlines()
                    if line.startswith("| pruned · model_int8.tflite |"))
    cells = [cell.strip() for cell in int8_row.strip("|").split("|")]
    assert cells[3:] == [format_top1(0.9655), format_count(6_118), format_count(640_300),
                         format_count(9_880), format_count(6_112), format_ms(0.2315), "–",
                         format_ms(0.0871)]
    assert ("| teacher | keras | fp32 | 98.75% | 1,250,858 | 10,931,200 | 5,036,112 | – |"
            in markdown)
    assert "BROKEN: latency median (ms): 180.000 breaks <= 150" in markdown
    assert "| conv_1 | CONV_2D | 0.061 ms | 70.0% |" in markdown


def test_plots_are_valid_pngs_and_the_html_embeds_them(written: Any) -> None:
    dist, result, document = written
    names = {path.name for path in result.plots}
    assert names == {"pareto.png", "pareto_host.png", "pareto_mcu.png", "pareto_phone.png",
                     "curves_teacher.png", "curves_student_scratch.png",
                     "curves_student.png", "curves_pruned.png"}
    assert document["plots"][0] == "pareto.png" and set(document["plots"]) == names
    page = result.html.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(names)
    for path in result.plots:
        content = path.read_bytes()
        assert content.startswith(PNG_SIGNATURE) and len(content) > 2_000
        assert base64.b64encode(content).decode() in embedded
    assert "src=\"http" not in page and "<link" not in page  # self-contained
    assert "98.75%" in page


def test_estimates_scale_the_measured_latency_by_macs(written: Any) -> None:
    _, _, document = written
    estimates = {e["label"]: e for e in document["estimates"]["host"]}
    assert set(estimates) == {"teacher", "student, no teacher", "student, distilled"}
    assert estimates["teacher"]["latency_ms"] == pytest.approx(0.2315 * 10_931_200 / 640_300)
    assert estimates["teacher"]["top1"] == 0.9875


def test_hot_spots_rank_ops_by_cost() -> None:
    """The report's `ops`: ms on the phone, instructions on the MCU."""
    timed = [{"name": "add_1", "type": "ADD", "ms": 1.0, "instructions": None, "share": 0.25},
             {"name": "conv_1", "type": "CONV_2D", "ms": 3.0, "instructions": None,
              "share": 0.75}]
    assert hot_spots({"ops": timed}) == [
        {"op": "conv_1", "type": "CONV_2D", "cost": 3.0, "unit": "ms", "share": 0.75},
        {"op": "add_1", "type": "ADD", "cost": 1.0, "unit": "ms", "share": 0.25}]
    counted = [{"name": "#0 CONV_2D", "type": "CONV_2D", "ms": None, "instructions": 900,
                "share": 0.9}, {"name": "#1 ADD", "type": "ADD", "ms": None,
                                "instructions": 100, "share": 0.1}]
    assert [(row["cost"], row["unit"]) for row in hot_spots({"ops": counted})] == [
        (900.0, "instructions"), (100.0, "instructions")]
    assert hot_spots({"ops": None}) == [] == hot_spots({})


def test_latency_of_a_plain_report_is_its_budget_stat() -> None:
    p90_budget = {"limits": {"latency_stat": "p90"}, "passed": True, "violations": []}
    report = _report("rpi", "ssh", "model_int8.tflite", "tflite", 2.0, 3.0, 0.96,
                     budget=p90_budget)
    assert target_latency(report) == (3.0, "measured")
    emulated = _report("rpi-emu", "ssh", "model_int8.tflite", "tflite", 9.0, 9.5, 0.96,
                       emulated=True, budget={"limits": {}, "passed": None, "violations": []})
    assert target_latency(emulated) == (9.0, "emulated")
    estimated_only = {**emulated, "latency_ms": empty_latency(),
                      "instructions": {"count": 4_500, "per_mac": 4.5, "est_cycles": 4_500,
                                       "est_ms": 4.5, "clock_mhz": 1.0, "cpi": 1.0}}
    assert target_latency(estimated_only) == (4.5, "instruction-count estimate")


def test_front_keeps_only_undominated_points() -> None:
    points = [ParetoPoint("a", 1.0, 0.90, 10, True), ParetoPoint("b", 2.0, 0.95, 10, True),
              ParetoPoint("c", 3.0, 0.93, 10, True), ParetoPoint("d", 1.0, 0.90, 5, True)]
    assert pareto_front(points) == [0, 1, 3]
    assert non_dominated([(1, None), (2, 2)], (lambda p: p[0], lambda p: p[1])) == [1]


def test_an_empty_dist_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no bundle with a manifest.json"):
        write_reports(tmp_path)


def test_a_killed_runs_hidden_scratch_folder_is_not_a_target(tmp_path: Path) -> None:
    import shutil

    dist = write_dist(tmp_path)
    shutil.copytree(dist / "host", dist / ".host.pid123.abc.tmp")  # atomic_directory's scratch
    names = [t["name"] for t in json.loads(write_reports(dist).json.read_text())["targets"]]
    assert ".host.pid123.abc.tmp" not in names and "host" in names
