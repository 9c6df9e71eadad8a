"""JUnit XML from real budget checks (devices.budget.evaluate_budget on report dicts)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from devices.base import Budget, LatencyReport
from devices.budget import evaluate_budget
from devices.latency_stats import empty_latency
from pipeline.junit import to_junit


def _report(name: str, median: float, top1: float, emulated: bool = False) -> dict:
    return LatencyReport(
        target={"name": name, "adapter": "host", "device": {}, "emulated": emulated},
        artifact={"file": "model_int8.tflite", "sha256": "a" * 64, "bytes": 10_240,
                  "format": "tflite", "precision": "int8"},
        runtime={"name": "litert", "version": "2.3.0", "threads": 1, "delegate": None},
        runs={"warmup": 1, "measured": 5},
        latency_ms={**empty_latency(), "median": median, "p90": median * 1.2},
        memory={"init_rss_mb": 90.0, "peak_rss_mb": 100.0, "arena_bytes": None,
                "flash_bytes": None},
        accuracy={"top1": top1, "reference_top1": top1, "samples": 1000},
    ).to_dict()


def test_broken_limits_are_failures_and_the_counts_add_up() -> None:
    budget = Budget(latency_ms=1.0, min_accuracy=0.9, flash_kb=8.0)
    broken = evaluate_budget(_report("host", 2.5, 0.95), budget)  # latency and flash broken
    emulated = evaluate_budget(_report("rpi-emu", 40.0, 0.80, emulated=True), budget)
    root = ElementTree.fromstring(to_junit([broken, emulated]))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("6", "4", "1")  # host: latency, flash; rpi-emu: top-1, flash
    host, rpi = root.findall("testsuite")
    assert (host.get("name"), host.get("failures")) == ("budget host", "2")
    failures = {case.get("name"): case.find("failure") for case in host.findall("testcase")}
    assert failures["top-1 accuracy"] is None
    latency_failure = failures["latency median (ms)"]
    assert latency_failure is not None
    assert latency_failure.get("message") == "latency median (ms): 2.500 breaks <= 1"
    assert failures["flash (kB)"].get("message") == "flash (kB): 10.0 breaks <= 8"
    skipped = [case for case in rpi.findall("testcase") if case.find("skipped") is not None]
    assert [case.get("name") for case in skipped] == ["latency median (ms)"]
    assert "emulated" in skipped[0].find("skipped").get("message")
    assert all(case.get("classname") == "budget.rpi-emu" for case in rpi.findall("testcase"))


def test_a_passing_check_has_no_failures_and_escapes_text() -> None:
    result = evaluate_budget(_report("host <&>", 0.5, 0.99), Budget(latency_ms=1.0))
    text = to_junit(result)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ElementTree.fromstring(text)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "0")
    assert root.find("testsuite").get("name") == "budget host <&>"
    assert root.find("testsuite/testcase/system-out").text == (
        "limit <= 1, measured 0.500")
