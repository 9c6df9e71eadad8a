"""Several TFLite models timed in this process on LiteRT, as devices/bench_runner.py times
one (its session and its `time_invoke`: the invoke alone, input set before the clock).

Timings on a shared machine drift, so the models are measured in interleaved blocks: every
model's block of runs, then the next round; load from other processes then hits every
model alike. Each model gets the median of all its runs and, as its spread, the lowest and
highest of its blocks' medians.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devices.base import DeviceError
from devices.bench_runner import RunnerError, open_session, time_invoke


@dataclass(frozen=True)
class Timing:
    median_ms: float
    low_ms: float  # the fastest block's median
    high_ms: float  # the slowest block's median
    runs: int

    def to_dict(self) -> dict[str, float | int]:
        return {"median_ms": self.median_ms, "low_ms": self.low_ms, "high_ms": self.high_ms,
                "runs": self.runs}


def _sample(session: object) -> np.ndarray:
    detail = session.input  # type: ignore[attr-defined]
    dtype = np.dtype(detail["dtype"])
    rng = np.random.default_rng(0)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, detail["shape"]).astype(dtype)
    return rng.normal(size=detail["shape"]).astype(dtype)


def time_models(models: list[bytes], threads: int, *, rounds: int = 10, block: int = 20,
                warmup: int = 20) -> list[Timing]:
    """Each model's invoke time, `rounds` interleaved blocks of `block` runs."""
    with tempfile.TemporaryDirectory() as temp:
        sessions = []
        for index, content in enumerate(models):
            path = Path(temp) / f"model{index}.tflite"
            path.write_bytes(content)
            try:
                session, _, _ = open_session(str(path), threads)
            except RunnerError as exc:
                raise DeviceError(f"LiteRT could not open model {index} of {len(models)}: "
                                  f"{exc} (hint: {exc.hint or 'pip install ai-edge-litert'})"
                                  ) from exc
            sessions.append((session, _sample(session)))
        for session, sample in sessions:
            for _ in range(warmup):
                time_invoke(session, sample)
        blocks: list[list[list[float]]] = [[] for _ in sessions]
        for _ in range(max(1, rounds)):
            for position, (session, sample) in enumerate(sessions):
                blocks[position].append([time_invoke(session, sample) for _ in range(block)])
    timings = []
    for runs in blocks:
        medians = [statistics.median(one) for one in runs]
        every = [value for one in runs for value in one]
        timings.append(Timing(statistics.median(every), min(medians), max(medians), len(every)))
    return timings
