"""Fidelity of devices/bench_runner.py: its median vs LiteRT's own benchmark tool.

    .venv/bin/python benchmarks/bench_runner_fidelity.py [--model FILE.tflite] [--threads 1]

Runs bench_runner.py and ai_edge_litert/tools/benchmark_litert_model.py on the same model,
threads and run count, interleaved (A B A B ...) in the same session so machine load hits
both alike, and prints both medians and their ratio. Exit 0 when the ratio is within
±10% (the acceptance bar), 1 otherwise. Without --model it builds a small int8 CNN whose
median is a few milliseconds (LiteRT's tool rounds to 0.01 ms, so tiny models can't be
compared). Timings are never asserted in tests; this is the place for them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devices.latency_stats import run_statistics  # noqa: E402 - after the path insert

RUNNER = ROOT / "devices" / "bench_runner.py"
TOLERANCE = 0.10


def litert_tool() -> Path:
    import ai_edge_litert

    tool = Path(ai_edge_litert.__file__).parent / "tools" / "benchmark_litert_model.py"
    if not tool.is_file():
        raise SystemExit(f"LiteRT's benchmark tool is missing: {tool} (pip install ai-edge-litert)")
    return tool


def build_model(folder: Path, size: int = 96) -> tuple[Path, Path]:
    """A small int8 CNN (3 conv blocks) + random normalised inputs."""
    from devices.tf_env import keras
    from pipeline.conversion.tflite_converter import convert_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((size, size, 3))])
    for filters in (32, 64, 128):
        model.add(keras.layers.Conv2D(filters, 3, padding="same", activation="relu"))
        model.add(keras.layers.MaxPooling2D())
    model.add(keras.layers.GlobalAveragePooling2D())
    model.add(keras.layers.Dense(10))
    images = np.random.default_rng(0).uniform(0, 1, (64, size, size, 3)).astype(np.float32)
    model_path = folder / "model_int8.tflite"
    model_path.write_bytes(convert_tflite(model, "int8", images[:32]))
    inputs_path = folder / "inputs.npz"
    np.savez(inputs_path, x=images, y=np.zeros(len(images), dtype=np.int64))
    return model_path, inputs_path


def runner_median(model: Path, inputs: Path, threads: int, runs: int, warmup: int) -> float:
    command = [sys.executable, str(RUNNER), "--model", str(model), "--inputs", str(inputs),
               "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup),
               "--no-output-values"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return run_statistics(json.loads(result.stdout)["times_ms"]["runs"])["median"]


def litert_median(tool: Path, model: Path, threads: int, runs: int, warmup: int,
                  folder: Path) -> float:
    output = folder / "litert_result.json"
    command = [sys.executable, str(tool), "--model", str(model), "--num_threads", str(threads),
               "--num_runs", str(runs), "--warmup_runs", str(warmup),
               "--result_json", str(output)]
    subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(output.read_text())["latency"]["median_ms"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a .tflite file (default: build a CNN)")
    parser.add_argument("--inputs", type=Path, help="inputs.npz for --model (x = float32)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved A/B rounds")
    args = parser.parse_args(argv)
    tool = litert_tool()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        if args.model is None:
            model, inputs = build_model(folder)
        else:
            model = args.model
            inputs = args.inputs or model.with_name("inputs.npz")
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(runner_median(model, inputs, args.threads, args.runs, args.warmup))
            theirs.append(litert_median(tool, model, args.threads, args.runs, args.warmup,
                                        folder))
    runner, litert = statistics.median(ours), statistics.median(theirs)
    ratio = runner / litert
    within = abs(ratio - 1.0) <= TOLERANCE
    print(f"model: {model.name}  threads: {args.threads}  runs: {args.runs}  "
          f"rounds: {args.rounds}")
    print(f"bench_runner.py median:            {runner:.3f} ms  (rounds: "
          f"{', '.join(f'{value:.3f}' for value in ours)})")
    print(f"benchmark_litert_model.py median:  {litert:.3f} ms  (rounds: "
          f"{', '.join(f'{value:.2f}' for value in theirs)})")
    print(f"ratio: {ratio:.3f}  ({'within' if within else 'OUTSIDE'} ±{TOLERANCE:.0%})")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
