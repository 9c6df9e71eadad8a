"""Instructions per MAC of int8 ResNet-8 (MLPerf Tiny shape, 32x32x3, 10 classes) on the
emulated Cortex-M4 with and without the SIMD (SMLAD) kernels, and on the Cortex-M7.

    .venv/bin/python benchmarks/mcu_instructions.py [--model resnet8] [--width 1.0] [--layers]

Counts are exact (qemu -icount shift=0) and do not depend on the inputs; weights are
random, which changes a count only through each channel's requantization shift (one outside
1..23 takes the general rounding path). For reference, MLPerf Tiny results
imply ~6.8 cycles/MAC for TFLite Micro's reference kernels and ~2.2 for an optimised
library on a Cortex-M4.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from devices.mcu.codegen import generate_sources
from devices.mcu.firmware_run import calibrate
from devices.mcu.layer_profile import layer_rows, layer_table
from devices.mcu.protocol import parse_output
from devices.mcu.qemu_runner import run_firmware
from devices.mcu.readiness import analyse
from devices.mcu.reference import reference_outputs
from devices.mcu.report import instructions_from_ticks
from devices.mcu.toolchain import build_firmware
from devices.runtimes import quantize_input

MACHINES = {"cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500"}


INPUT_SHAPES = {"resnet8": (32, 32, 3), "ds_cifar": (32, 32, 3), "seed_student": (28, 28, 1)}


def convert(name: str, width: float, folder: Path) -> tuple[Path, np.ndarray]:
    from devices.tf_env import tf
    from models.registry import create_model

    tf.keras.utils.set_random_seed(0)
    shape = INPUT_SHAPES[name]
    model = create_model(name, shape, 10, width=width)
    samples = np.random.default_rng(0).uniform(0, 1, (16, *shape)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path = folder / f"{name}_int8.tflite"
    path.write_bytes(converter.convert())
    return path, samples[:2]


def run(generated, model: Path, folder: Path, cpu: str, simd: bool, expected: np.ndarray
        ) -> tuple[int, list[dict]]:
    """Median instructions per inference and the per-layer rows of one firmware build,
    whose outputs must equal LiteRT's reference kernels' bit for bit."""
    machine = MACHINES[cpu]
    per_tick = calibrate(machine, cpu, folder)
    firmware = build_firmware(generated, folder / f"build-{cpu}-{simd}", cpu=cpu, simd=simd)
    output = parse_output(run_firmware(firmware.elf, machine, timeout_s=600))
    if not np.array_equal(output.output_matrix(), expected):
        raise SystemExit(f"{cpu} simd={simd}: outputs differ from LiteRT's reference kernels")
    counts = instructions_from_ticks(output.ticks, output.overhead_ticks, per_tick)
    return int(np.median(counts)), layer_rows(model, output.layer_ticks, per_tick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(INPUT_SHAPES), default="resnet8")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--layers", action="store_true", help="print the Cortex-M4 SIMD "
                        "build's instructions per layer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        model, samples = convert(args.model, args.width, folder)
        macs = analyse(model, None, None).macs
        generated = generate_sources(model, folder / "model", inputs=samples)
        quantized = quantize_input(samples, generated.input_scale, generated.input_zero_point,
                                   np.int8).reshape(len(samples), -1)
        expected = reference_outputs(model, quantized)
        print(f"{args.model} width {args.width:g} int8: {macs:,} MACs per inference; every build "
              "below is bit-exact with LiteRT's reference kernels")
        for cpu, simd in (("cortex-m4", False), ("cortex-m4", True), ("cortex-m7", True)):
            count, rows = run(generated, model, folder, cpu, simd, expected)
            label = f"{cpu} {'SIMD (SMLAD)' if simd else 'portable C  '}"
            print(f"  {label}: {count:>12,} instructions  {count / macs:6.2f} per MAC")
            if args.layers and cpu == "cortex-m4" and simd:
                print("\n".join(layer_table(rows)))


if __name__ == "__main__":
    main()
