"""benchmark_model output parsing, on recorded outputs of each format (data/benchmark_model/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.benchmark_model_parser import (
    BenchmarkOutputError,
    RunStats,
    parse_benchmark_output,
)

RECORDED = Path(__file__).resolve().parent / "data" / "benchmark_model"


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


def test_modern_output_with_percentiles_and_info_prefix():
    result = parse_benchmark_output(recorded("modern_percentiles.txt"))
    assert (result.init_us, result.first_us, result.warmup_avg_us, result.inference_avg_us) == (
        12734.0, 1021.0, 228.204, 214.675)
    assert result.warmup == RunStats(count=2188, first=1021, curr=201, min=188, max=1402,
                                     avg=228.204, std=68)
    assert result.measured == RunStats(count=4650, first=211, curr=207, min=183, max=905,
                                       avg=214.675, std=31, p5=190, median=209, p95=251)
    assert [(entry.kind, entry.overall_mb) for entry in result.memory] == [
        ("delta", 5.10938), ("peak", 9.05859)]
    assert (result.peak_memory.init_mb, result.peak_memory.overall_mb) == (6.86719, 9.05859)
    assert result.delegate == "XNNPACK"
    assert result.latency_ms() == pytest.approx({
        "init": 12.734, "first": 1.021, "warmup_mean": 0.228204, "mean": 0.214675,
        "median": 0.209, "p90": None, "p95": 0.251, "p99": None, "min": 0.183, "max": 0.905,
        "std": 0.031})


def test_scientific_notation():
    result = parse_benchmark_output(recorded("scientific.txt"))
    assert result.init_us == 2.4315e6
    assert result.inference_avg_us == 1.41e6
    assert result.measured.median == 1.405e6
    assert result.measured.std == 17888
    assert result.warmup == RunStats(count=1, curr=1.52341e6)
    latency = result.latency_ms()
    assert latency["median"] == pytest.approx(1405.0)
    assert latency["first"] == pytest.approx(1523.41)
    assert result.peak_memory.overall_mb == 188.5


def test_legacy_average_line_and_no_percentiles():
    result = parse_benchmark_output(recorded("legacy.txt"))
    assert (result.init_us, result.warmup_avg_us, result.inference_avg_us) == (
        4123.0, 1873.0, 421.34)
    assert result.first_us is None
    assert result.measured == RunStats(count=50, first=562, curr=401, min=377, max=702,
                                       avg=421.34, std=61)
    latency = result.latency_ms()
    assert latency["first"] == pytest.approx(1.873)  # the single warm-up run
    assert latency["median"] is None
    assert latency["mean"] == pytest.approx(0.42134)
    assert latency["warmup_mean"] == pytest.approx(1.873)  # from the average line
    assert result.memory == ()
    assert result.peak_memory is None
    assert result.delegate is None  # this release logs none


def test_op_profiling_tables():
    result = parse_benchmark_output(recorded("op_profiling.txt"))
    # the "Timings (microseconds): count=..." profiler lines are not run statistics
    assert result.measured.count == 12345 and result.measured.avg == 45.3
    assert result.warmup.count == 5734
    assert len(result.operators) == 3  # regular runs only, not the initialization table
    conv = result.operators[0]
    assert conv["node_type"] == "CONV_2D"
    assert conv["avg_ms"] == 0.022 and conv["percent"] == 52.381
    assert conv["times_called"] == 1
    assert conv["name"] == ("[sequential/conv2d/Relu;sequential/conv2d/BiasAdd;"
                            "sequential/conv2d/Conv2D]:0")
    assert [row["node_type"] for row in result.node_types] == [
        "CONV_2D", "FULLY_CONNECTED", "RESHAPE"]
    assert result.node_types[1] == {"node_type": "FULLY_CONNECTED", "count": 1, "avg_ms": 0.018,
                                    "avg_percent": 42.857, "cdf_percent": 95.238,
                                    "mem_kb": 0.0, "times_called": 1}
    assert result.peak_memory.overall_mb == 5.0625


def test_a_single_run_is_read_from_its_curr_value():
    """The accuracy pass runs `--num_runs=1`: the measured line is `count=1 curr=...`."""
    result = parse_benchmark_output("count=1 curr=900\n\ncount=1 curr=317\n")
    assert result.single_run_ms() == pytest.approx(0.317)
    assert result.warmup.curr == 900


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Inference timings in us: Init: 1e3, First inference: 2.5E+02, "
         "Warmup (avg): .5, Inference (avg): 7", (1000.0, 250.0, 0.5, 7.0)),
        ("INFO: Inference timings in us: Init: 3274, First inference: 102, "
         "Warmup (avg): 78.5, Inference (avg): 45.3", (3274.0, 102.0, 78.5, 45.3)),
    ],
)
def test_summary_line_variants(line: str, expected: tuple):
    result = parse_benchmark_output(line + "\n")
    assert (result.init_us, result.first_us, result.warmup_avg_us,
            result.inference_avg_us) == expected
    assert result.measured is None
    assert result.latency_ms()["mean"] == pytest.approx(expected[3] / 1000)


def test_space_separated_table_rows():
    text = ("count=10 first=5 curr=4 min=3 max=6 avg=4.5 std=1\n"
            "Operator-wise Profiling Info for Regular Benchmark Runs:\n"
            "============================== Run Order ==============================\n"
            "  [node type]  [start]  [first]  [avg ms]  [%]  [cdf%]  [mem KB]  [times called]"
            "  [Name]\n"
            "  CONV_2D  0.000  0.031  0.022  52.381%  52.381%  0.000  1  conv with spaces:0\n")
    rows = parse_benchmark_output(text).operators
    assert rows == ({"node_type": "CONV_2D", "start_ms": 0.0, "first_ms": 0.031, "avg_ms": 0.022,
                     "percent": 52.381, "cdf_percent": 52.381, "mem_kb": 0.0,
                     "times_called": 1, "name": "conv with spaces:0"},)


def test_unrelated_output_is_rejected():
    with pytest.raises(BenchmarkOutputError, match="no `Inference timings in us:` line"):
        parse_benchmark_output("/system/bin/sh: benchmark_model: not found\n")
