"""The latency report's statistics, computed from raw run times the same way on every target.

bench_runner.py (host, Raspberry Pi) and the microcontroller firmware hand back every run's
time; the phone hands back benchmark_model's own statistics plus one warm run per bundled
sample (devices/adb.py). Percentiles are numpy's default (linear interpolation), as
benchmark_model's `median`/`p95` are within one sample of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# latency_ms keys, in report order: what happens before the measured runs, then their stats
SETUP_KEYS = ("init", "first", "warmup_mean")
RUN_KEYS = ("mean", "std", "min", "max", "median", "p90", "p95", "p99")
LATENCY_KEYS = (*SETUP_KEYS, *RUN_KEYS)
PERCENTILES = {"median": 50, "p90": 90, "p95": 95, "p99": 99}


def empty_latency() -> dict[str, float | None]:
    return {key: None for key in LATENCY_KEYS}


def run_statistics(runs_ms: Sequence[float]) -> dict[str, float | None]:
    """mean, std, min, max and the percentiles of `runs_ms`; all None when it is empty."""
    if not runs_ms:
        return {key: None for key in RUN_KEYS}
    values = np.asarray(runs_ms, dtype=np.float64)
    statistics = {"mean": values.mean(), "std": values.std(), "min": values.min(),
                  "max": values.max()}
    statistics |= {key: np.percentile(values, rank) for key, rank in PERCENTILES.items()}
    return {key: float(statistics[key]) for key in RUN_KEYS}


def latency_section(runs_ms: Sequence[float], init: float | None = None,
                    first: float | None = None, warmup_ms: Sequence[float] = ()
                    ) -> dict[str, float | None]:
    """The report's latency_ms from raw times (milliseconds)."""
    warmup_mean = float(np.mean(warmup_ms)) if len(warmup_ms) else None
    return {"init": init, "first": first, "warmup_mean": warmup_mean,
            **run_statistics(runs_ms)}


def missing_values(document: dict, reasons: dict[str, str]) -> dict[str, str]:
    """{path: reason} for every null value of the report's measured sections; a null with
    no reason in `reasons` is named with a reason that says so, so a gap is never silent."""
    nulls = [f"latency_ms.{key}" for key, value in document["latency_ms"].items()
             if value is None]
    nulls += [f"memory.{key}" for key, value in document["memory"].items() if value is None]
    nulls += [key for key in ("runs_ms", "ops", "instructions") if document.get(key) is None]
    nulls += [f"runtime.{key}" for key in ("version", "delegate")
              if document["runtime"].get(key) is None]
    nulls += [f"accuracy.{key}" for key in ("top1", "reference_top1")
              if document["accuracy"].get(key) is None]
    return {path: reasons.get(path, reasons.get(path.split(".")[0], UNEXPLAINED))
            for path in nulls}


UNEXPLAINED = "the adapter gave no value and no reason (a bug: report it)"
