"""The advisor's decision, from arm records and a budget (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devices.artifact_kinds import model_file
from devices.base import Budget, LatencyReport, TargetProfile, empty_latency
from devices.errors import ConfigError
from pipeline.advisor import (
    ArmRecord,
    _arm_overrides,
    _last_stage,
    arm_config,
    arm_record,
    choose_arm,
    format_recommendation,
    quadratic_macs_fraction,
    read_measurement,
    solve_prune_ratio,
)
from pipeline.config import PipelineConfig

DISTILL = ArmRecord("distill", top1=0.972, params=20_010, macs=2_311_680, bytes=24_600,
                    latency_ms=640.0)
PRUNE = ArmRecord("prune", top1=0.981, params=300_000, macs=2_400_000, bytes=310_000,
                  latency_ms=665.0)
BOTH = ArmRecord("distill+prune", top1=0.965, params=6_118, macs=640_300, bytes=9_880,
                 latency_ms=180.0)
ARMS = (DISTILL, PRUNE, BOTH)


def test_picks_the_only_arm_that_meets_the_budget() -> None:
    budget = Budget(latency_ms=200.0, min_accuracy=0.9, flash_kb=256.0)
    recommendation = choose_arm(ARMS, budget, "mcu")
    assert recommendation.arm == "distill+prune" and recommendation.meets_budget
    assert recommendation.rationale.startswith("Recommended on mcu: distillation + pruning")
    assert "top-1 96.50%" in recommendation.rationale
    assert "latency median 180.0 ms vs limit <= 200.0 ms" in recommendation.rationale
    # the others are named with the limit they break
    assert "latency median 640.0 ms vs limit <= 200.0 ms: misses by 440.0 ms (220.0%)" in (
        recommendation.rationale)


def test_picks_the_most_accurate_arm_among_those_that_meet_it() -> None:
    budget = Budget(latency_ms=1000.0, flash_kb=512.0)
    recommendation = choose_arm(ARMS, budget)
    assert recommendation.arm == "prune"  # 98.1% beats 97.2% and 96.5%, all within budget
    assert set(recommendation.front) == {"prune", "distill", "distill+prune"}


def test_a_dominated_arm_is_off_the_front() -> None:
    slower_and_worse = ArmRecord("distill", top1=0.96, params=20_010, macs=2_311_680,
                                 bytes=24_600, latency_ms=700.0)
    recommendation = choose_arm((slower_and_worse, BOTH), Budget())
    assert recommendation.front == ("distill+prune",)
    assert recommendation.arm == "distill+prune"


def test_when_nothing_meets_the_budget_it_says_which_limit_and_by_how_much() -> None:
    budget = Budget(latency_ms=150.0, min_accuracy=0.97, flash_kb=16.0)
    recommendation = choose_arm(ARMS, budget, "mcu")
    assert recommendation.arm is None and not recommendation.meets_budget
    text = recommendation.rationale
    assert text.startswith("No arm meets the budget on mcu.")
    # distill+prune: 30 ms over the latency limit (20%) and 0.5 points under the accuracy one
    assert "latency median 180.0 ms vs limit <= 150.0 ms: misses by 30.0 ms (20.0%)" in text
    assert "top-1 96.50% vs limit >= 97.00%: misses by 0.50 points (0.5%)" in text
    assert "Closest: distillation + pruning" in text
    checks = {c.limit: c for c in recommendation.checks["distill+prune"]}
    assert checks["latency_ms"].excess == pytest.approx(30.0)
    assert checks["min_accuracy"].excess == pytest.approx(0.005)
    assert checks["flash_kb"].passed is True


def test_a_limit_without_a_number_is_unverified_not_broken() -> None:
    unprofiled = ArmRecord("distill", top1=0.97, params=1, macs=1, bytes=100, latency_ms=None)
    recommendation = choose_arm((unprofiled,), Budget(latency_ms=1.0, ram_kb=10.0))
    assert recommendation.arm == "distill"
    assert "Unverified for some arms (no number): RAM, latency median." in (
        recommendation.rationale)
    assert [c.passed for c in recommendation.checks["distill"]] == [None, None]


def test_to_dict_is_json_and_the_table_shows_the_arms() -> None:
    recommendation = choose_arm(ARMS, Budget(latency_ms=200.0))
    document = json.loads(json.dumps(recommendation.to_dict()))
    assert document["arm"] == "distill+prune"
    assert document["checks"]["distill"][0]["excess"] == pytest.approx(440.0)
    table = format_recommendation(recommendation)
    assert "distillation + pruning" in table and "9,880" in table


def test_an_empty_arm_list_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no arms"):
        choose_arm((), Budget())


@pytest.mark.parametrize("fraction", [0.64, 0.25, 0.2115])
def test_the_quadratic_ratio_gives_the_wanted_macs(fraction: float) -> None:
    ratio = solve_prune_ratio(fraction)
    assert quadratic_macs_fraction(ratio) == pytest.approx(fraction, abs=2e-3)
    assert ratio == pytest.approx(1 - fraction ** 0.5, abs=1e-3)


def test_the_ratio_respects_a_linear_layer_mix_and_the_bounds() -> None:
    # half the MACs in layers with one fixed side (linear), half in inner layers (quadratic)
    def mixed(ratio: float) -> float:
        return 0.5 * (1 - ratio) + 0.5 * (1 - ratio) ** 2

    ratio = solve_prune_ratio(0.3, mixed)
    assert mixed(ratio) == pytest.approx(0.3, abs=2e-3)
    assert ratio > 1 - 0.3 ** 0.5  # more pruning than the quadratic rule suggests
    assert solve_prune_ratio(1.5) == 0.0
    assert solve_prune_ratio(1e-6) == 0.95


def test_arm_config_applies_and_validates_overrides() -> None:
    config = arm_config(PipelineConfig(), {"prune.source": "teacher", "prune.ratio": 0.42})
    assert (config.prune.source, config.prune.ratio) == ("teacher", 0.42)
    assert config.fingerprint() != PipelineConfig().fingerprint()
    with pytest.raises(ConfigError, match="prune.ratio"):
        arm_config(PipelineConfig(), {"prune.ratio": 0.99})


PROFILE = TargetProfile(name="mcu", adapter="mcu", description="", artifact_format="c",
                        artifact_precision="int8", runtime="c", threads=1,
                        budget=Budget(latency_ms=150.0))
RECORDS = {
    "teacher": {"top1": 0.98, "params": 300_000, "macs": 10_000_000},
    "pruned": {"top1": 0.97, "params": 6_000, "macs": 500_000, "bytes": 40_000,
              "history": {"loss": [1.0]}},
    "export": {"artifacts": [{"file": "model_int8.tflite", "bytes": 9_000}]},
    "validate": {"artifacts": [{"file": "model_int8.tflite", "top1": 0.965}]},
}


def _dist(tmp_path: Path, fingerprint: str) -> Path:
    folder = tmp_path / "mcu"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({
        "schema": "edge-bundle-manifest/1", "pipeline_version": "test",
        "config_fingerprint": fingerprint, "dataset": {"name": "mnist5k"}, "target": "mcu",
        "labels": ["0", "1"], "artifacts": ["model_int8.tflite"],
        "input": {"shape": [28, 28, 1], "dtype": "float32", "layout": "NHWC",
                  "quantization": {}},
        "output": {"classes": 2, "dtype": "float32", "quantization": {}}, "files": [],
        "metrics": {"student": {"top1": 0.97, "macs": 2_000_000},
                    "pruned": {"top1": 0.965, "method": "channel", "macs": 1_000_000}}}))
    latency = {**empty_latency(), "median": 200.0}
    report = LatencyReport(
        target={"name": "mcu", "adapter": "mcu-qemu", "device": {}, "emulated": True},
        artifact={"file": "model_int8.tflite", "sha256": "a" * 64, "bytes": 9_000,
                  "format": "tflite", "precision": "int8"},
        runtime={"name": "c", "version": None, "threads": 1, "delegate": None},
        runs={"warmup": 0, "measured": 40}, latency_ms=latency,
        memory={"arena_bytes": 40_960, "peak_rss_mb": None, "flash_bytes": None},
        instructions={"count": 15_984_000, "per_mac": 16.0, "est_cycles": 19_980_000,
                      "est_ms": 199.8, "clock_mhz": 100.0, "cpi": 1.25},
        budget={"limits": {"latency_stat": "median"}, "passed": True, "violations": []})
    (folder / "latency_report.json").write_text(json.dumps(report.to_dict()))
    return tmp_path


def test_the_profiled_arm_gets_the_measured_numbers(tmp_path: Path) -> None:
    measurement = read_measurement(_dist(tmp_path, "abc"), "mcu")
    arm = arm_record("distill+prune", {"prune.method": "channel"}, RECORDS, PROFILE, "abc",
                     measurement)
    assert (arm.latency_ms, arm.ram_kb) == (200.0, 40.0)  # instruction estimate, arena
    assert (arm.top1, arm.bytes, arm.macs) == (0.965, 9_000, 500_000)
    assert arm.latency_source == "instruction-count estimate on mcu"
    assert arm.overrides == ("prune.method=channel",)
    assert "history" not in arm.records["pruned"]


def test_another_arm_scales_the_measured_latency_by_macs(tmp_path: Path) -> None:
    measurement = read_measurement(_dist(tmp_path, "abc"), "mcu")
    records = {**RECORDS, "export": {}, "validate": {}}
    arm = arm_record("prune", {}, records, PROFILE, "other", measurement)
    assert arm.latency_ms == pytest.approx(200.0 * 500_000 / 1_000_000)
    assert arm.ram_kb is None
    assert (arm.top1, arm.bytes) == (0.97, 6_000)  # Keras top-1, params x 1 B for int8
    assert arm.bytes_source == "estimated: 6,000 params x 1 B"


def test_without_a_latency_report_latency_is_not_profiled(tmp_path: Path) -> None:
    assert read_measurement(tmp_path, "mcu") is None
    arm = arm_record("distill", {}, RECORDS, PROFILE, "abc", None)
    assert arm.latency_ms is None and arm.latency_source == "not profiled"


def test_a_c_target_is_sized_by_its_tflite_model() -> None:
    assert model_file(PROFILE.artifact_format, PROFILE.artifact_precision) == "model_int8.tflite"


def test_the_arms_differ_only_in_their_prune_settings() -> None:
    config = arm_config(PipelineConfig(), {"prune.method": "none"})
    overrides = _arm_overrides(config)
    assert overrides["distill"] == {"prune.method": "none"}
    # a config that skips pruning still gets real pruning in the two pruning arms
    assert overrides["distill+prune"] == {"prune.method": "channel", "prune.source": "student"}
    assert overrides["prune"]["prune.source"] == "teacher"


def test_advising_without_a_prune_stage_says_how_to_fix_it() -> None:
    with pytest.raises(ConfigError, match="needs the prune stage.*teacher, student"):
        _last_stage(["teacher", "student"])
    assert _last_stage(["teacher", "student", "pruned", "export"]) == "export"
