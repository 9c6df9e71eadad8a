"""The host adapter and profile_target: a real LiteRT run through bench_runner.py."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from devices.base import REPORT_KEYS, SCHEMA, BenchmarkSettings, Budget, DeviceError
from devices.errors import ArtifactError
from devices.fsutil import sha256_file
from devices.host import RUNNER_MISSING
from devices.latency_stats import LATENCY_KEYS, run_statistics
from devices.profiles import load_profile
from devices.profiling import profile_target, settings_for
from devices.registry import create_adapter
from tests.contracts import assert_one_report_shape

SETTINGS = BenchmarkSettings(warmup=2, runs=10, threads=1)


def test_profile_target_on_host_writes_schema_valid_report(bundle_copy: Path):
    profile = load_profile("host", environ={})
    document = profile_target(profile, bundle_copy, SETTINGS)
    written = json.loads((bundle_copy / "latency_report.json").read_text())
    assert written == json.loads(json.dumps(document))
    assert set(written) == {*REPORT_KEYS, "extra"}  # the schema keys; runner facts in extra
    assert written["extra"]["outputs_dtype"] == "int8"
    assert written["schema"] == SCHEMA
    assert set(written["latency_ms"]) == set(LATENCY_KEYS)
    assert written["target"]["name"] == "host" and written["target"]["emulated"] is False
    assert written["artifact"]["file"] == "model_int8.tflite"
    assert written["artifact"]["sha256"] == sha256_file(bundle_copy / "model_int8.tflite")
    assert written["runtime"] == {"name": "litert", "version": written["runtime"]["version"],
                                  "threads": 1, "delegate": "XNNPACK"}
    # every statistic is computed from the kept raw runs
    assert len(written["runs_ms"]) == SETTINGS.runs
    assert written["latency_ms"] == pytest.approx(
        {**written["latency_ms"], **run_statistics(written["runs_ms"])})
    assert written["latency_ms"]["warmup_mean"] > 0 and written["latency_ms"]["init"] > 0
    assert 10 < written["memory"]["init_rss_mb"] <= written["memory"]["peak_rss_mb"]
    assert written["ops"] is None and written["missing"]["ops"] == RUNNER_MISSING["ops"]
    assert set(written["missing"]) == {"ops", "instructions", "memory.arena_bytes",
                                       "memory.flash_bytes"}
    assert_one_report_shape(written)
    assert written["runs"] == {"warmup": 2, "measured": 10}
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    validation_top1 = manifest["metrics"]["artifacts"]["model_int8.tflite"]["top1"]
    assert written["accuracy"]["top1"] == validation_top1
    assert written["accuracy"]["reference_top1"] == validation_top1
    assert written["accuracy"]["samples"] == 96
    assert written["budget"]["limits"]["latency_ms"] == profile.budget.latency_ms
    assert written["budget"]["passed"] is True, written["budget"]["violations"]
    assert written["memory"]["peak_rss_mb"] > 10


def test_budget_section_reports_violations(bundle_copy: Path):
    strict = replace(load_profile("host", environ={}),
                     budget=Budget(latency_ms=0.0, min_accuracy=0.99, ram_kb=1.0))
    document = profile_target(strict, bundle_copy, SETTINGS)
    assert document["budget"]["passed"] is False
    violations = " | ".join(document["budget"]["violations"])
    assert "latency median (ms)" in violations
    assert "top-1 accuracy" in violations
    assert "RAM (kB, peak RSS)" in violations


def test_onnx_artifact_on_host(bundle_copy: Path):
    profile = load_profile("host", {"artifact.format": "onnx", "artifact.precision": "fp32",
                                    "runtime.name": "onnxruntime"}, environ={})
    document = profile_target(profile, bundle_copy, settings_for(profile, warmup=1, runs=3))
    assert document["artifact"]["file"] == "model.onnx"
    assert document["runtime"]["name"] == "onnxruntime"
    assert document["runtime"]["threads"] == profile.threads


def test_settings_for_defaults_to_profile_threads():
    profile = load_profile("rpi", environ={})
    assert settings_for(profile).threads == 4
    assert settings_for(profile, threads=1).threads == 1


def test_missing_artifact_is_an_artifact_error(bundle_copy: Path):
    (bundle_copy / "model_int8.tflite").unlink()
    with pytest.raises(ArtifactError, match=r"model_int8.tflite does not exist.*make artifacts"):
        profile_target(load_profile("host", environ={}), bundle_copy, SETTINGS)


def test_tampered_artifact_is_refused(bundle_copy: Path):
    (bundle_copy / "model_int8.tflite").write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="does not match its manifest: model_int8.tflite has "
                       "8 bytes, expected"):
        profile_target(load_profile("host", environ={}), bundle_copy, SETTINGS)
    assert not (bundle_copy / "latency_report.json").exists()


def test_unsupported_runtime_fails_check():
    adapter = create_adapter(load_profile("host", {"runtime.name": "benchmark_model"},
                                          environ={}))
    with pytest.raises(DeviceError, match="host adapter cannot run runtime 'benchmark_model'"):
        adapter.check()


def test_benchmark_before_deploy_is_an_error():
    adapter = create_adapter(load_profile("host", environ={}))
    with pytest.raises(DeviceError, match=r"benchmark\(\) before deploy\(\)"):
        adapter.benchmark(SETTINGS)
