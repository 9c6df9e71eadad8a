"""Hardware-aware pruning against uniform pruning at the same measured Cortex-M4 cost.

Per seed (`student.seed` by default: the teacher and the data split are shared), through
the CLI's own deploy to the emulated Cortex-M4 (`make deploy TARGET=mcu`, each with its own
--dist-dir, one --build-dir for the stage cache and the cost table):

  unpruned  the distilled student, prune.method = "none": its instructions and MACs
  uniform   prune.method = "channel", prune.ratio = R (default 0.5) for every layer
  budget    prune.budget = { target = "mcu", instructions = the uniform model's deployed
            count }, or with --fraction F, F x the unpruned count (uniform's ratio is then
            solved on the cost table to the same count)
  narrower  with --narrower: a student of the same cost by width (solved on the cost
            table), distilled and not pruned (no labels-only baseline beside it)

and compares each deployed int8 file's TEST top-1 with McNemar's exact test per seed and
pooled over the seeds, and the instruction cut per MAC cut (unpruned / pruned instructions
over unpruned / pruned MACs; issue 17 measured 0.67 for uniform at 0.5).

    .venv/bin/python benchmarks/budget_vs_uniform.py --build-dir /tmp/b --dist-dir /tmp/d \
        [--config configs/cifar10.toml] [--set k=v ...] [--seeds 0 1 2] [--ratio 0.5]
        [--fraction 0.5 --narrower] [--budget steps=4] [--json out.json]

`--seeds default` sets no seed: the config's own stages, so a student already trained in
that --build-dir is reused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devices.artifact_kinds import format_of
from pipeline.config import load_config
from pipeline.data import load_dataset
from pipeline.study.statistics import mcnemar_exact

ARTIFACT = "model_int8.tflite"


@dataclass(frozen=True)
class Deployed:
    variant: str
    seed: int | None
    instructions: int  # the deployed firmware's exact count (latency_report.json)
    macs: int
    keras_top1: float
    int8_top1: float  # the shipped int8 file on the whole test split
    channels: dict[str, list[int]]
    seconds: float
    budget: dict[str, Any] | None = None


def deploy(variant: str, seed: int | None, overrides: list[str], args: argparse.Namespace,
           dataset: Any) -> tuple[Deployed, np.ndarray]:
    dist = Path(args.dist_dir) / f"{variant}-seed{'default' if seed is None else seed}"
    command = [sys.executable, "-m", "pipeline", "deploy", "--targets", "mcu",
               "--build-dir", str(args.build_dir), "--dist-dir", str(dist)]
    if args.config:
        command += ["--config", args.config]
    seeded = [] if seed is None else [f"{args.seed_key}={seed}"]
    for item in [*args.set, *seeded, *overrides]:
        command += ["--set", item]
    started = time.perf_counter()
    log = dist.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as output:
        result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False)
    if result.returncode not in (0, 1):  # 1: a budget line of the target broke, still measured
        raise SystemExit(f"{variant} seed {seed}: deploy exited {result.returncode}, see {log}")
    report = json.loads((dist / "mcu" / "latency_report.json").read_text())
    manifest = json.loads((dist / "mcu" / "manifest.json").read_text())
    pruned = manifest["metrics"]["pruned"]
    correct = _correct(dist / "mcu" / ARTIFACT, dataset)
    channels = {name: [value["before"], value["after"]]
                for name, value in (pruned.get("layer_channels") or {}).items()}
    budget = pruned.get("budget")
    summary = None if not budget else {
        key: budget.get(key) for key in ("limit", "predicted", "measured", "met", "of_limit",
                                         "prediction_error")}
    return Deployed(variant, seed, int(report["instructions"]["count"]), int(pruned["macs"]),
                    float(pruned["top1"]), float(np.mean(correct)), channels,
                    round(time.perf_counter() - started, 1), summary), correct


def _correct(artifact: Path, dataset: Any) -> np.ndarray:
    from pipeline.bundle import BUNDLE_RUNNERS  # deferred: loads the runtimes

    logits = BUNDLE_RUNNERS[format_of(artifact)](artifact, dataset.x_test, "optimised")
    return np.argmax(logits, axis=-1) == np.asarray(dataset.y_test)


def solve_uniform_ratio(instructions: float, args: argparse.Namespace, dataset: Any) -> float:
    """The prune.ratio whose predicted count (cost table, untrained student, the config's
    rule) is closest to `instructions`."""
    from pipeline.hardware_cost.model_cost import model_cost, target_cost_model
    from pipeline.pruning.channel import prune_channels
    from pipeline.stages.train import build_for
    from pipeline.study.levels import solve_prune_ratio

    config = load_config(args.config, args.set)
    cost_model = target_cost_model("mcu", config, Path(args.build_dir))
    student = build_for(config.student, dataset, seed=0)
    full = model_cost(student, cost_model, dataset.x_train)

    def fraction(ratio: float) -> float:
        pruned, _ = prune_channels(student, "l1", ratio=ratio, layers=config.prune.layers,
                                   min_channels=config.prune.min_channels)
        return model_cost(pruned, cost_model, dataset.x_train) / full

    return solve_prune_ratio(instructions / full, fraction)


def solve_width(instructions: float, args: argparse.Namespace, dataset: Any) -> float:
    import dataclasses

    from pipeline.hardware_cost.model_cost import model_cost, target_cost_model
    from pipeline.stages.train import build_for
    from pipeline.study.levels import solve_width as solve

    config = load_config(args.config, args.set)
    cost_model = target_cost_model("mcu", config, Path(args.build_dir))

    def cost(width: float) -> float:
        section = dataclasses.replace(config.student, width=width)
        return model_cost(build_for(section, dataset, seed=0), cost_model, dataset.x_train)

    return solve(cost, instructions)


def compare(first: list[np.ndarray], second: list[np.ndarray]) -> dict[str, Any]:
    per_seed = [mcnemar_exact(a, b) for a, b in zip(first, second, strict=True)]
    pooled = mcnemar_exact(np.concatenate(first), np.concatenate(second))
    return {"p_per_seed": per_seed, "p_pooled": pooled,
            "first_minus_second_points": [100 * (np.mean(a) - np.mean(b))
                                          for a, b in zip(first, second, strict=True)],
            "discordant": [int(np.sum(a != b)) for a, b in zip(first, second, strict=True)]}


def cut_per_mac_cut(unpruned: Deployed, pruned: Deployed) -> float:
    return (unpruned.instructions / pruned.instructions) / (unpruned.macs / pruned.macs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"],
                        help="values of --seed-key; 'default' sets none (the config's own: "
                             "its cached stages are reused)")
    parser.add_argument("--seed-key", default="student.seed")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--fraction", type=float,
                        help="budget = this share of the unpruned student's instructions")
    parser.add_argument("--narrower", action="store_true")
    parser.add_argument("--budget", action="append", default=[],
                        help="KEY=VALUE of prune.budget for the budget variant (steps=4)")
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--dist-dir", required=True)
    parser.add_argument("--json")
    args = parser.parse_args()
    dataset = load_dataset(load_config(args.config, args.set).data)
    rows: list[Deployed] = []
    correct: dict[str, list[np.ndarray]] = {}
    for seed in [None if text == "default" else int(text) for text in args.seeds]:
        unpruned, _ = deploy("unpruned", seed, ["prune.method=none"], args, dataset)
        ratio = args.ratio if args.fraction is None else solve_uniform_ratio(
            args.fraction * unpruned.instructions, args, dataset)
        uniform, uniform_correct = deploy(
            "uniform", seed, ["prune.method=channel", f"prune.ratio={ratio}"], args, dataset)
        limit = uniform.instructions if args.fraction is None else round(
            args.fraction * unpruned.instructions)
        budget, budget_correct = deploy(
            "budget", seed, ["prune.method=channel", "prune.budget.target=mcu",
                             f"prune.budget.instructions={limit}",
                             *(f"prune.budget.{item}" for item in args.budget)], args, dataset)
        found = [unpruned, uniform, budget]
        correct.setdefault("uniform", []).append(uniform_correct)
        correct.setdefault("budget", []).append(budget_correct)
        if args.narrower:
            width = solve_width(limit, args, dataset)
            narrower, narrower_correct = deploy(
                "narrower", seed, [f"student.width={width}", "prune.method=none",
                                   "student.baseline=false"], args, dataset)
            found.append(narrower)
            correct.setdefault("narrower", []).append(narrower_correct)
        for row in found:
            rows.append(row)
            print(f"seed {seed} {row.variant:<9} {row.instructions:>12,} instr {row.macs:>11,} "
                  f"MACs  int8 test {row.int8_top1:.4f}  keras {row.keras_top1:.4f}  "
                  f"cut/MAC cut {cut_per_mac_cut(unpruned, row):.2f}  "
                  f"{ {k: v for k, v in row.channels.items() if v[0] != v[1]} }", flush=True)
        print(f"seed {seed} budget {limit:,}: deployed {budget.instructions:,} = "
              f"{100 * budget.instructions / limit:.2f}% of it", flush=True)
    comparisons = {"budget_vs_uniform": compare(correct["budget"], correct["uniform"])}
    if args.narrower:
        comparisons["budget_vs_narrower"] = compare(correct["budget"], correct["narrower"])
    print(json.dumps(comparisons, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rows": [asdict(row) for row in rows], "comparisons": comparisons}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
