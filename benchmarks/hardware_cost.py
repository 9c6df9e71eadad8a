"""The cost model against the target: predicted (the cost table: one-op models summed, plus
the invoke) against measured whole-model cost, for pruned models.

For each zoo model (random weights: a cost is the shapes', not the weights'), the unpruned
model and `--random` models with random per-layer keep counts, plus any int8 files given
with `--files` (e.g. the budget search's deployed models, dist/*/mcu/model_int8.tflite):

  mcu   exact instruction counts of the deploy's firmware on the emulated Cortex-M4; the
        prediction should be within 1% (it is within a timer tick per op)
  host  LiteRT's invoke latency at each of `--host-threads` (timed as bench_runner.py does,
        interleaved blocks; the spread is the lowest and highest block median)

    .venv/bin/python benchmarks/hardware_cost.py [--models seed_student ds_cifar resnet8]
        [--random 4] [--targets mcu host] [--host-threads 1 2] [--files a.tflite ...]
        [--build-dir /tmp/hw-cost] [--json out.json]

Exit 1 when an mcu prediction is off by 1% or more.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prune_latency import MODELS, randomise  # noqa: E402

from devices.mcu.graph import parse_graph  # noqa: E402
from devices.op_signature import io_signature, op_signatures  # noqa: E402
from devices.profiles import load_profile  # noqa: E402
from pipeline.hardware_cost.cost_model import CostModel  # noqa: E402
from pipeline.hardware_cost.measurers import CostMeasurer, measurer_class  # noqa: E402
from pipeline.hardware_cost.table import TABLE_FOLDER, CostTable  # noqa: E402

MCU_TOLERANCE = 0.01


@dataclass(frozen=True)
class Row:
    target: str
    model: str
    variant: str
    predicted: float
    measured: float
    error: float  # predicted / measured - 1
    low: float | None = None  # timings: the fastest and slowest block medians
    high: float | None = None


def variants(name: str, count: int, seed: int) -> list[tuple[str, bytes, np.ndarray]]:
    """(label, int8 flatbuffer, samples): the unpruned model and random per-layer keeps."""
    import models
    from pipeline.conversion.tflite_converter import convert_tflite
    from pipeline.pruning.graph import analyse
    from pipeline.pruning.surgery import apply_keep

    model_name, shape, options = MODELS[name]
    base = randomise(models.create_model(model_name, shape, 10, **options), seed)
    samples = np.random.default_rng(seed).normal(size=(64, *shape)).astype(np.float32)
    graph = analyse(base)
    rng = np.random.default_rng(seed + 1)
    found = [("unpruned", convert_tflite(base, "int8", samples), samples)]
    for index in range(count):
        keep, counts = {}, []
        for group in graph.prunable_groups():
            kept = int(rng.integers(max(1, group.channels // 8), group.channels + 1))
            keep[group.index] = np.sort(rng.choice(group.channels, kept, replace=False))
            counts.append(f"{kept}/{group.channels}")
        pruned = apply_keep(base, graph, keep)
        found.append((f"random {index + 1} ({' '.join(counts)})",
                      convert_tflite(pruned, "int8", samples), samples))
    return found


def measurer_for(target: str, threads: int | None) -> CostMeasurer:
    profile = load_profile(target)
    if threads is not None:
        profile = dataclasses.replace(profile, threads=threads)
    return measurer_class(profile.adapter)(profile)


def compare(target: str, measurer: CostMeasurer, build_dir: Path, model: str, variant: str,
            content: bytes, samples: np.ndarray) -> Row:
    cost_model = CostModel(measurer, CostTable(build_dir / TABLE_FOLDER, measurer.settings()),
                           lambda _: None)
    graph = parse_graph(content)
    predicted = cost_model.predict(op_signatures(graph), io_signature(graph)).total
    measured = measurer.measure_model(content, samples)
    spread = measured.spread or {}
    return Row(target, model, variant, predicted, measured.value,
               predicted / measured.value - 1.0, spread.get("low"), spread.get("high"))


def file_variants(paths: list[str]) -> list[tuple[str, str, bytes, np.ndarray]]:
    found = []
    for path in paths:
        content = Path(path).read_bytes()
        graph = parse_graph(content)
        source = graph.tensor(graph.inputs[0])
        samples = np.zeros((1, *source.shape[1:]), np.float32)
        found.append(("file", path, content, samples))
    return found


def print_rows(rows: list[Row]) -> None:
    print(f"{'target':<10} {'model':<13} {'variant':<44} {'predicted':>14} {'measured':>14} "
          f"{'error':>8} {'spread (block medians)':>24}")
    for row in rows:
        spread = ("" if row.low is None else f"{row.low:.4f}..{row.high:.4f}")
        number = "{:>14,.0f}" if row.target == "mcu" else "{:>14.4f}"
        print(f"{row.target:<10} {row.model:<13} {row.variant[:44]:<44} "
              f"{number.format(row.predicted)} {number.format(row.measured)} "
              f"{100 * row.error:>7.2f}% {spread:>24}")
    for target in sorted({row.target for row in rows}):
        errors = [abs(row.error) for row in rows if row.target == target]
        print(f"{target}: |error| median {100 * statistics.median(errors):.2f}%, largest "
              f"{100 * max(errors):.2f}% over {len(errors)} models")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--random", type=int, default=4)
    parser.add_argument("--targets", nargs="+", default=["mcu", "host"])
    parser.add_argument("--host-threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--files", nargs="*", default=[])
    parser.add_argument("--build-dir", type=Path, default=Path("/tmp/hardware-cost-benchmark"))
    parser.add_argument("--json")
    args = parser.parse_args()
    made = [(name, label, content, samples) for name in args.models
            for label, content, samples in variants(name, args.random, seed=0)]
    made += file_variants(args.files)
    rows = []
    for target in args.targets:
        threads = args.host_threads if target == "host" else [None]
        for count in threads:
            measurer = measurer_for(target, count)
            label = target if count is None else f"{target}/{count}t"
            for name, variant, content, samples in made:
                rows.append(compare(label, measurer, args.build_dir, name, variant, content,
                                    samples))
                print(f"{label} {name} {variant}: error {100 * rows[-1].error:+.2f}%",
                      flush=True)
    print_rows(rows)
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    worst = max((abs(r.error) for r in rows if r.target == "mcu"), default=0.0)
    return 1 if worst >= MCU_TOLERANCE else 0


if __name__ == "__main__":
    raise SystemExit(main())
