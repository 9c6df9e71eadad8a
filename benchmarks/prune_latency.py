"""Does channel pruning make int8 models faster? Unpruned vs. channel-pruned vs. magnitude.

For the seed student (28x28x1) and resnet8 (32x32x3), with random weights and inputs
(timing does not depend on what the weights learned), this converts each variant to a
full-int8 TFLite model and prints MACs, file bytes and the LiteRT one-thread median latency
on this host, side by side:

    unpruned | channel r, r round_to 8, r round_to 16 (r = 0.5, 0.6) | magnitude 0.5

(At 0.5 the zoo's 16/32/64 channels halve to multiples of 8 anyway; 0.6 shows rounding.)

Expected (issue 3): on this host, small int8 models run near the core's peak, so fixed
per-op costs dominate and the speed-up is smaller than the MAC ratio; the magnitude model
(same shapes, zeros only) shows no speed-up. With `--mcu` each variant is also compiled
by devices/mcu and run on the emulated Cortex-M4 (qemu, exact instruction counts, SIMD
kernels), with the per-layer bound: how far instructions could fall if every layer kept
its unpruned instructions per MAC.

    .venv/bin/python benchmarks/prune_latency.py [--runs 300] [--ratios 0.5 0.6] [--mcu]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

import models
from devices.tf_env import keras
from models.complexity import count_macs
from pipeline.conversion.tflite_converter import convert_tflite
from pipeline.pruning import magnitude, prune_channels

MODELS: dict[str, tuple[str, tuple[int, int, int], dict[str, Any]]] = {
    "seed_student": ("seed_student", (28, 28, 1), {"batch_norm": True}),
    "resnet8": ("resnet8", (32, 32, 3), {}),
}


@dataclass(frozen=True)
class Row:
    model: str
    variant: str
    channels: int
    macs: int
    mac_ratio: float
    int8_bytes: int
    median_us: float
    speedup: float
    mcu_instructions: int | None = None
    mcu_ratio: float | None = None
    mcu_bound: float | None = None  # instr x if each layer kept its unpruned instr per MAC


def randomise(model: Any, seed: int) -> Any:
    """Random trained-looking weights; BN variances positive."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = [
            rng.uniform(0.5, 1.5, tuple(v.shape)) if "variance" in v.name
            else rng.normal(0.0, 0.3, tuple(v.shape))
            for v in layer.weights
        ]
        if values:
            layer.set_weights([value.astype(np.float32) for value in values])
    return model


def conv_channels(model: Any) -> int:
    return sum(int(layer.output.shape[-1]) for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense))


def make_interpreter(content: bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    sample = np.random.default_rng(0).integers(-128, 128, detail["shape"], dtype=np.int8)
    interpreter.set_tensor(detail["index"], sample.astype(detail["dtype"]))
    return interpreter


def interleaved_medians_us(contents: list[bytes], runs: int, block: int = 25) -> list[float]:
    """One-thread LiteRT medians, measured in interleaved blocks so that load from other
    processes on a shared machine hits every variant alike."""
    interpreters = [make_interpreter(content) for content in contents]
    timings: list[list[float]] = [[] for _ in interpreters]
    for interpreter in interpreters:  # warm-up
        for _ in range(block):
            interpreter.invoke()
    for _ in range(max(1, runs // block)):
        for position, interpreter in enumerate(interpreters):
            for _ in range(block):
                started = time.perf_counter_ns()
                interpreter.invoke()
                timings[position].append((time.perf_counter_ns() - started) / 1000.0)
    return [statistics.median(values) for values in timings]


def variants(ratios: list[float]) -> dict[str, Callable[[Any], Any]]:
    def channel(ratio: float, round_to: int) -> Callable[[Any], Any]:
        return lambda model: prune_channels(model, "l1", ratio=ratio, round_to=round_to)[0]

    table: dict[str, Callable[[Any], Any]] = {"unpruned": lambda model: model}
    for ratio in ratios:
        for round_to in (1, 8, 16):
            suffix = f" round_to {round_to}" if round_to > 1 else ""
            table[f"channel {ratio}{suffix}"] = channel(ratio, round_to)
    mode = magnitude.get_mode("magnitude")
    table[f"magnitude {ratios[0]}"] = lambda model: magnitude.prune_one_shot(
        model, mode, magnitude.target_sparsities(model, mode, ratio=ratios[0]))
    return table


def measure(name: str, ratios: list[float], runs: int, mcu: bool) -> list[Row]:
    model_name, input_shape, options = MODELS[name]
    base = randomise(models.create_model(model_name, input_shape, 10, **options), seed=0)
    representative = np.random.default_rng(1).normal(size=(32, *input_shape)).astype(np.float32)
    built = {variant: make(base) for variant, make in variants(ratios).items()}
    contents = [convert_tflite(model, "int8", representative) for model in built.values()]
    medians = interleaved_medians_us(contents, runs)
    base_macs = count_macs(base)
    rows = [
        Row(model=name, variant=variant, channels=conv_channels(model), macs=count_macs(model),
            mac_ratio=count_macs(model) / base_macs, int8_bytes=len(content),
            median_us=median, speedup=medians[0] / median)
        for (variant, model), content, median in zip(built.items(), contents, medians,
                                                     strict=True)
    ]
    return with_mcu(rows, contents, representative[:2]) if mcu else rows


def mcu_instructions(contents: list[bytes], samples: np.ndarray, cpu: str = "cortex-m4",
                     machine: str = "mps2-an386") -> list[tuple[int, list[dict[str, Any]]]]:
    """Median instructions per inference of each int8 model on the emulated Cortex-M4, and
    its per-layer rows (devices/mcu/instruction_counts.py, the library's one source)."""
    from devices.mcu.instruction_counts import Core, model_instructions

    return [(count.instructions, count.rows)
            for count in model_instructions(contents, samples, Core(cpu, machine, simd=True))]


def proportional_instructions(base: list[dict[str, Any]], variant: list[dict[str, Any]]
                              ) -> float:
    """The variant's instructions if every layer kept the unpruned model's instructions per
    MAC (per output element for layers without MACs): what pruning could buy at best with
    these layers, however fast the kernels' fixed costs."""
    total = 0.0
    for unpruned, pruned in zip(base, variant, strict=True):
        if unpruned["macs"]:
            scale = pruned["macs"] / unpruned["macs"]
        else:
            scale = float(np.prod(pruned["output_shape"])) / float(
                np.prod(unpruned["output_shape"]) or 1)
        total += unpruned["instructions"] * scale
    return total


def with_mcu(rows: list[Row], contents: list[bytes], samples: np.ndarray) -> list[Row]:
    measured = mcu_instructions(contents, samples)
    base_count, base_layers = measured[0]
    return [replace(row, mcu_instructions=count, mcu_ratio=count / base_count,
                    mcu_bound=proportional_instructions(base_layers, layers) / base_count)
            for row, (count, layers) in zip(rows, measured, strict=True)]


def print_table(rows: list[Row]) -> None:
    header = (f"{'model':<13} {'variant':<28} {'channels':>8} {'MACs':>11} {'MAC x':>6} "
              f"{'int8 bytes':>10} {'median us':>10} {'speed-up':>8} {'M4 instr':>12} "
              f"{'instr x':>7} {'MAC x/instr x':>13} {'at best':>7}")
    print(header)
    print("-" * len(header))
    for row in rows:
        instructions = f"{row.mcu_instructions:,}" if row.mcu_instructions else "-"
        ratio = f"{row.mcu_ratio:.2f}" if row.mcu_ratio else "-"
        # 1.0 = instructions fall exactly as fast as MACs; "at best" is the same figure if
        # every layer kept its unpruned instructions per MAC (layers whose MACs fall less,
        # such as a first conv over one input channel, keep it below 1)
        tracking = f"{row.mac_ratio / row.mcu_ratio:.2f}" if row.mcu_ratio else "-"
        best = f"{row.mac_ratio / row.mcu_bound:.2f}" if row.mcu_bound else "-"
        print(f"{row.model:<13} {row.variant:<28} {row.channels:>8} {row.macs:>11,} "
              f"{row.mac_ratio:>6.2f} {row.int8_bytes:>10,} {row.median_us:>10.1f} "
              f"{row.speedup:>8.2f} {instructions:>12} {ratio:>7} {tracking:>13} {best:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.6])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--mcu", action="store_true",
                        help="also count Cortex-M4 instructions (needs qemu-system-arm and "
                             "arm-none-eabi-gcc; slow)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    arguments = parser.parse_args()
    rows = [row for name in arguments.models
            for row in measure(name, arguments.ratios, arguments.runs, arguments.mcu)]
    print_table(rows)
    if arguments.json:
        with open(arguments.json, "w", encoding="utf-8") as handle:
            json.dump([asdict(row) for row in rows], handle, indent=2)


if __name__ == "__main__":
    main()
