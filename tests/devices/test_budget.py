"""Budget checks: rows, violations, baseline regression, the table, report files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devices.accuracy_estimate import AccuracyEstimate
from devices.base import SCHEMA, Budget
from devices.budget import (
    check_report_file,
    evaluate_budget,
    format_check_table,
    parse_max_regression,
)
from devices.errors import ArtifactError, ConfigError
from devices.profiles import load_profile


def make_report(median=10.0, p90=12.0, top1=0.9, peak_rss_mb=50.0, emulated=False,
                arena_bytes=None, flash_bytes=None, artifact_bytes=2048, extra=None,
                samples=2000) -> dict:
    report = {
        "schema": SCHEMA, "created": "2026-01-01T00:00:00+00:00",
        "target": {"name": "rpi", "adapter": "ssh", "device": {}, "emulated": emulated},
        "artifact": {"file": "model_int8.tflite", "sha256": "0" * 64, "bytes": artifact_bytes,
                     "format": "tflite", "precision": "int8"},
        "runtime": {"name": "litert", "version": "2.3.0", "threads": 4, "delegate": None},
        "runs": {"warmup": 1, "measured": 5},
        "latency_ms": {"init": 1.0, "first": 2.0, "warmup_mean": 1.5, "mean": median,
                       "median": median, "p90": p90, "p95": p90, "p99": p90, "min": median,
                       "max": p90, "std": 0.1},
        "runs_ms": None,
        "memory": {"init_rss_mb": None, "peak_rss_mb": peak_rss_mb, "arena_bytes": arena_bytes,
                   "flash_bytes": flash_bytes},
        "instructions": None,
        "ops": None,
        "accuracy": {"top1": top1, "reference_top1": top1, "samples": samples},
        "budget": {"limits": {}, "passed": None, "violations": []},
        "missing": {},
    }
    if extra:
        report["extra"] = extra
    return report


def test_within_budget_passes():
    result = evaluate_budget(make_report(), Budget(latency_ms=25, min_accuracy=0.8, ram_kb=65536))
    assert result.passed
    assert [row.passed for row in result.rows] == [True, True, True]
    assert result.budget_section() == {
        "limits": {"latency_ms": 25, "min_accuracy": 0.8, "ram_kb": 65536,
                   "latency_stat": "median"},
        "passed": True, "violations": []}


def test_each_limit_can_break():
    budget = Budget(latency_ms=11, latency_stat="p90", min_accuracy=0.95, ram_kb=1024,
                    flash_kb=1)
    result = evaluate_budget(make_report(median=10, p90=12, top1=0.9, peak_rss_mb=2.0), budget)
    assert not result.passed
    assert result.violations == [
        "latency p90 (ms): 12.0 breaks <= 11",
        "top-1 accuracy: 0.9000 on 2,000 samples (95% CI 0.886-0.912) breaks >= 0.95",
        "RAM (kB, peak RSS): 2048.0 breaks <= 1024",
        "flash (kB): 2.000 breaks <= 1",
    ]


def test_wilson_interval_matches_the_textbook_values():
    low, high = AccuracyEstimate(0.5, 100, "test").interval()
    assert (low, high) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    low, high = AccuracyEstimate(1.0, 20, "test").interval()  # all right: not a zero width
    assert high == 1.0 and low == pytest.approx(0.8389, abs=1e-4)


def test_a_200_sample_estimate_near_the_line_is_undecided_not_broken():
    """The CIFAR-10 case: 0.795 on the 200 bundled samples against a 0.80 line."""
    result = evaluate_budget(make_report(top1=0.795, samples=200), Budget(min_accuracy=0.8))
    row = result.rows[0]
    assert result.passed and result.violations == []
    assert (row.passed, row.undecided, row.status) == (None, True, "undecided")
    assert row.measured == "0.7950 on 200 samples (95% CI 0.734-0.845)"
    # z^2 * 0.795 * 0.205 / 0.005^2 = 25,043 samples (z = 1.95996) would put the interval clear of it
    assert row.note == ("the 95% interval holds the line; about 25,043 samples would "
                        "decide it")
    table = format_check_table(result)
    assert "undecided - the 95% interval holds the line" in table
    assert table.splitlines()[-1] == "PASSED (1 undecided)"


def test_the_whole_test_split_decides_where_the_bundled_samples_cannot():
    """The host's report carries the validate stage's top-1 on all 10,000 test images."""
    split = {"top1": 0.8275, "samples": 10_000, "source": "the validate stage"}
    report = make_report(top1=0.795, samples=200, extra={"test_split_accuracy": split})
    row = evaluate_budget(report, Budget(min_accuracy=0.8)).rows[0]
    assert (row.passed, row.status) == (True, "ok")
    assert row.measured == "0.8275 on 10,000 samples (95% CI 0.820-0.835)"
    below = make_report(top1=0.795, samples=200, extra={"test_split_accuracy": {
        **split, "top1": 0.7900}})
    assert evaluate_budget(below, Budget(min_accuracy=0.8)).violations == [
        "top-1 accuracy: 0.7900 on 10,000 samples (95% CI 0.782-0.798) breaks >= 0.8"]


def test_an_estimate_clearly_below_the_line_is_broken_even_on_few_samples():
    result = evaluate_budget(make_report(top1=0.70, samples=200), Budget(min_accuracy=0.8))
    assert not result.passed and result.rows[0].status == "BROKEN"


def test_median_stat_uses_median():
    assert evaluate_budget(make_report(median=10, p90=30), Budget(latency_ms=11)).passed


def test_microcontroller_arena_and_flash_are_used():
    report = make_report(peak_rss_mb=None, arena_bytes=20 * 1024, flash_bytes=100 * 1024)
    result = evaluate_budget(report, Budget(ram_kb=16, flash_kb=128))
    assert result.violations == ["RAM (kB, arena): 20.0 breaks <= 16"]


def test_unmeasured_limit_is_a_violation():
    result = evaluate_budget(make_report(top1=None), Budget(min_accuracy=0.5))
    assert result.violations == ["top-1 accuracy: not measured breaks >= 0.5 "
                                 "(the report has no value for this limit)"]


def test_emulated_latency_is_skipped_not_passed():
    result = evaluate_budget(make_report(median=1000, emulated=True), Budget(latency_ms=1))
    assert result.passed
    assert result.rows[0].passed is None
    assert "emulated" in result.rows[0].note


def test_bit_identity_row_from_extra():
    result = evaluate_budget(make_report(extra={"bit_identical_to_host": False}), Budget())
    assert result.violations == ["outputs bit-identical to x86 host: different breaks identical"]


@pytest.mark.parametrize(("current", "passed"), [(10.9, True), (11.1, False)])
def test_baseline_regression(current: float, passed: bool):
    result = evaluate_budget(make_report(median=current), Budget(), baseline=make_report(
        median=10.0), max_regression=0.10)
    assert result.passed is passed
    assert result.limits["max_regression"] == 0.10


def test_baseline_regression_defaults_to_ten_percent_or_the_budget():
    baseline = make_report(median=10.0)
    assert not evaluate_budget(make_report(median=10.5), Budget(max_regression=0.01),
                               baseline).passed
    assert evaluate_budget(make_report(median=10.5), Budget(), baseline).passed


@pytest.mark.parametrize(("text", "value"), [("10%", 0.10), ("0.25", 0.25), ("ten%", None)])
def test_parse_max_regression(text: str, value: float | None):
    if value is None:
        with pytest.raises(ConfigError, match="is not a number"):
            parse_max_regression(text)
    else:
        assert parse_max_regression(text) == pytest.approx(value)


def test_format_check_table():
    result = evaluate_budget(make_report(median=30), Budget(latency_ms=25, min_accuracy=0.8))
    table = format_check_table(result)
    lines = table.splitlines()
    assert lines[0] == "budget check: rpi"
    assert lines[1].split() == ["check", "limit", "measured", "status"]
    assert any(line.startswith("latency median (ms)") and line.endswith("BROKEN")
               for line in lines)
    assert any(line.startswith("top-1 accuracy") and line.endswith("ok") for line in lines)
    assert lines[-1] == "BROKEN (1 violation(s))"


def test_check_report_file_with_baseline(tmp_path: Path):
    report_path, baseline_path = tmp_path / "report.json", tmp_path / "baseline.json"
    report_path.write_text(json.dumps(make_report(median=20.0)))
    baseline_path.write_text(json.dumps(make_report(median=10.0)))
    profile = load_profile("rpi", environ={})
    result = check_report_file(report_path, profile, baseline_path, "10%")
    assert result.violations == ["latency median vs baseline: +100.0% (10.000 -> 20.000 ms) "
                                 "breaks <= +10%"]
    assert check_report_file(report_path, profile).passed


def test_check_report_file_errors(tmp_path: Path):
    profile = load_profile("rpi", environ={})
    with pytest.raises(ArtifactError, match="no latency report at .*make deploy"):
        check_report_file(tmp_path / "missing.json", profile)
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "other/1"}')
    with pytest.raises(ArtifactError, match="has schema 'other/1', expected 'edge-latency"):
        check_report_file(bad, profile)
    bad.write_text("{")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        check_report_file(bad, profile)
    with pytest.raises(ConfigError, match="--max-regression needs --baseline"):
        check_report_file(bad, profile, None, "10%")
