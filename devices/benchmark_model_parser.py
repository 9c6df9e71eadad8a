"""Parse the text TFLite's `benchmark_model` prints into numbers for a latency report.

Formats seen across TensorFlow/LiteRT releases, all handled:
- `Inference timings in us: Init: 3274, First inference: 102, Warmup (avg): 78.5,
  Inference (avg): 45.3` (numbers may be in scientific notation: `1.2345e+06`),
- the old `Average inference timings in us: Warmup: 83.5, Init: 3274, no stats: 45.3`,
- `count=50 first=102 curr=45 min=40 max=120 avg=50.1 std=7` run statistics, with or
  without `p5= median= p95=` (the first block is the warm-up, the last the measured runs),
- `Peak memory footprint (MB): init=4.2 overall=5.1` and the older
  `Memory footprint delta from the start of the tool (MB): init=2.5 overall=3.1`,
- the `--enable_op_profiling` tables: "Run Order" per operator and "Summary by node type",
- the delegate it applied (`Created TensorFlow Lite XNNPACK delegate for CPU.`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

SUMMARY_LINE = re.compile(r"Inference timings in us:(?P<body>.*)$", re.MULTILINE)
OLD_SUMMARY_LINE = re.compile(r"Average inference timings in us:(?P<body>.*)$", re.MULTILINE)
SUMMARY_FIELD = re.compile(rf"(?P<key>[A-Za-z][A-Za-z ()]*?):\s*(?P<value>{NUMBER})")
LOG_PREFIX = r"[ \t]*(?:INFO:[ \t]+)?"  # newer releases prefix every line with "INFO: "
STATS_LINE = re.compile(
    rf"^{LOG_PREFIX}count=(?P<count>\d+)(?P<rest>(?:[ \t]+\w+={NUMBER})*)[ \t]*$", re.MULTILINE)
STATS_FIELD = re.compile(rf"(?P<key>\w+)=(?P<value>{NUMBER})")
MEMORY_LINE = re.compile(
    rf"^{LOG_PREFIX}(?P<kind>Peak memory footprint"
    rf"|Memory footprint delta from the start of the tool) \(MB\):"
    rf"\s*init=(?P<init>{NUMBER})\s+overall=(?P<overall>{NUMBER})", re.MULTILINE)
RUN_ORDER_SECTION = "Operator-wise Profiling Info for Regular Benchmark Runs"
# the log line a delegate prints when benchmark_model applies it -> the delegate's name
DELEGATE_LINES = {
    "Created TensorFlow Lite XNNPACK delegate": "XNNPACK",
    "Created TensorFlow Lite delegate for GPU": "GPU",
    "Created TensorFlow Lite delegate for NNAPI": "NNAPI",
    "Hexagon delegate: ": "Hexagon",
}

# summary key -> our field name (new and old spellings)
SUMMARY_KEYS = {
    "Init": "init_us",
    "First inference": "first_us",
    "Warmup (avg)": "warmup_avg_us",
    "Inference (avg)": "inference_avg_us",
    "Warmup": "warmup_avg_us",
    "no stats": "inference_avg_us",
}


class BenchmarkOutputError(ValueError):
    """The text is not benchmark_model output we understand."""


@dataclass(frozen=True)
class RunStats:
    """One `count= first= ...` line; all times in microseconds."""

    count: int
    first: float | None = None
    curr: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None
    p5: float | None = None
    median: float | None = None
    p95: float | None = None


@dataclass(frozen=True)
class Memory:
    kind: str  # "peak" or "delta"
    init_mb: float
    overall_mb: float


@dataclass(frozen=True)
class BenchmarkModelResult:
    init_us: float | None
    first_us: float | None
    warmup_avg_us: float | None
    inference_avg_us: float | None
    warmup: RunStats | None
    measured: RunStats | None
    memory: tuple[Memory, ...] = ()
    operators: tuple[dict, ...] = ()
    node_types: tuple[dict, ...] = ()
    delegate: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def peak_memory(self) -> Memory | None:
        """The last `Peak memory footprint (MB): init= overall=` line; older releases print
        only the footprint delta, which is not a peak."""
        peaks = [entry for entry in self.memory if entry.kind == "peak"]
        return peaks[-1] if peaks else None

    def latency_ms(self) -> dict[str, float | None]:
        """The report's latency_ms as benchmark_model prints it (microseconds -> ms); p90 and
        p99 are not among its statistics (the adapter adds them from per-sample runs)."""
        measured = self.measured

        def ms(value: float | None) -> float | None:
            return None if value is None else value / 1000.0

        def stat(name: str) -> float | None:
            return ms(getattr(measured, name)) if measured else None

        first = self.first_us
        if first is None and self.warmup is not None:  # old releases: warm-up line only
            first = self.warmup.first if self.warmup.count > 1 else self.warmup.curr
        warmup_mean = self.warmup_avg_us
        if warmup_mean is None and self.warmup is not None:
            warmup_mean = self.warmup.avg if self.warmup.avg is not None else self.warmup.curr
        mean = measured.avg if measured and measured.avg is not None else self.inference_avg_us
        return {
            "init": ms(self.init_us), "first": ms(first), "warmup_mean": ms(warmup_mean),
            "mean": ms(mean), "std": stat("std"), "min": stat("min"), "max": stat("max"),
            "median": stat("median"), "p90": None, "p95": stat("p95"), "p99": None,
        }

    def single_run_ms(self) -> float | None:
        """The time of a `--num_runs=1` run: its measured line is `count=1 curr=...`."""
        measured = self.measured
        if measured is None:
            return None
        value = measured.curr if measured.curr is not None else measured.avg
        return None if value is None else value / 1000.0


def _summary(text: str) -> dict[str, float]:
    match = SUMMARY_LINE.search(text) or OLD_SUMMARY_LINE.search(text)
    if match is None:
        return {}
    values = {}
    for field_match in SUMMARY_FIELD.finditer(match.group("body")):
        key = field_match.group("key").strip()
        if key in SUMMARY_KEYS:
            values[SUMMARY_KEYS[key]] = float(field_match.group("value"))
    return values


def _run_stats(text: str) -> list[RunStats]:
    stats = []
    for match in STATS_LINE.finditer(text):  # not "Timings (microseconds): count=..."
        values = {item.group("key"): float(item.group("value"))
                  for item in STATS_FIELD.finditer(match.group("rest"))}
        known = {key: value for key, value in values.items()
                 if key in RunStats.__dataclass_fields__}
        stats.append(RunStats(count=int(match.group("count")), **known))
    return stats


def _memory(text: str) -> tuple[Memory, ...]:
    return tuple(
        Memory(kind="peak" if match.group("kind").startswith("Peak") else "delta",
               init_mb=float(match.group("init")), overall_mb=float(match.group("overall")))
        for match in MEMORY_LINE.finditer(text))


def _table_after(text: str, title: str, section: str | None = None) -> list[dict]:
    """Rows of the `====== title ======` table (optionally inside `section`)."""
    start = 0
    if section is not None:
        start = text.find(section)
        if start < 0:
            return []
    marker = re.compile(rf"^=+ {re.escape(title)} =+\s*$", re.MULTILINE)
    match = marker.search(text, start)
    if match is None:
        return []
    lines = text[match.end():].lstrip("\n").splitlines()
    if not lines or "[" not in lines[0]:
        return []
    columns = [_column_name(name) for name in re.findall(r"\[([^\]]+)\]", lines[0])]
    rows = []
    for line in lines[1:]:
        if not line.strip() or line.lstrip().startswith("="):
            break
        cells = [cell.strip() for cell in line.strip().split("\t") if cell.strip()]
        if len(cells) < len(columns):  # space-separated: the name (last column) may hold spaces
            parts = line.split()
            cells = parts[: len(columns) - 1] + [" ".join(parts[len(columns) - 1:])]
        pairs = zip(columns, cells, strict=False)
        rows.append({column: _cell(column, cell) for column, cell in pairs})
    return rows


def _column_name(header: str) -> str:
    return {"node type": "node_type", "Node type": "node_type", "avg ms": "avg_ms",
            "%": "percent", "cdf%": "cdf_percent", "avg %": "avg_percent",
            "cdf %": "cdf_percent", "mem KB": "mem_kb", "times called": "times_called",
            "start": "start_ms", "first": "first_ms", "Name": "name", "count": "count"}.get(
        header.strip(), header.strip().lower().replace(" ", "_"))


INTEGER_COLUMNS = {"count", "times_called"}


def _cell(column: str, text: str) -> float | int | str:
    cleaned = text.rstrip("%")
    try:
        return int(float(cleaned)) if column in INTEGER_COLUMNS else float(cleaned)
    except ValueError:
        return text


def parse_benchmark_output(text: str) -> BenchmarkModelResult:
    summary = _summary(text)
    stats = _run_stats(text)
    if not summary and not stats:
        raise BenchmarkOutputError(
            "no `Inference timings in us:` line and no `count=` statistics in the output")
    return BenchmarkModelResult(
        init_us=summary.get("init_us"),
        first_us=summary.get("first_us"),
        warmup_avg_us=summary.get("warmup_avg_us"),
        inference_avg_us=summary.get("inference_avg_us"),
        warmup=stats[0] if len(stats) > 1 else None,
        measured=stats[-1] if stats else None,
        memory=_memory(text),
        operators=tuple(_table_after(text, "Run Order", RUN_ORDER_SECTION)),
        node_types=tuple(_table_after(text, "Summary by node type", RUN_ORDER_SECTION)),
        delegate=next((name for line, name in DELEGATE_LINES.items() if line in text), None),
    )
