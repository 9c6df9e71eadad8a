"""Artifact sizes and conversion times for the zoo's models in every format and precision,
with each file split into tensor data ("weights") and format overhead.

    .venv/bin/python benchmarks/export_sizes.py [--variants seed_student seed_student@0.5] [--json]

A variant is `model[@width]`; `seed_student@0.5` (with batch norm) has exactly the shape the
default config ships: its student after channel pruning at ratio 0.5. The models are
untrained, with random values in place of their all-zero initial biases and batch-norm
offsets (converters store equal constants once, which would make the files look smaller
than trained ones), and calibrated on uniform random inputs; times are wall-clock on this
machine (benchmarks only, never tests).

Why the int8/fp32 file ratio of a tiny model is far above the ~0.26 of its weights: every
int8 file also carries per-channel scales (float32) and zero points (int64) for each
weight and bias tensor, tensor names and tables — a few KB whatever the model's size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import create_model  # noqa: E402
from pipeline.config import ExportConfig  # noqa: E402
from pipeline.stages.export import run_export  # noqa: E402

DEFAULT_VARIANTS = ("seed_student", "seed_student@0.5", "resnet8")


def build_variant(variant: str, input_shape: tuple[int, int, int], classes: int):
    name, _, width = variant.partition("@")
    options = {"width": float(width or 1.0)}
    if name.startswith("seed_"):  # batch norm as in the default config; resnet8 always has it
        options["batch_norm"] = True
    return create_model(name, input_shape, classes, **options)


def measure(variant: str, input_shape: tuple[int, int, int], classes: int) -> list[dict]:
    model = build_variant(variant, input_shape, classes)
    rng = np.random.default_rng(0)
    for weight in model.weights:
        if not np.any(weight.numpy()):
            weight.assign(rng.normal(0, 0.05, weight.shape).astype(np.float32))
    representative = rng.uniform(0, 1, (200, *input_shape))
    with tempfile.TemporaryDirectory() as folder:
        result = run_export(ExportConfig(), model, representative.astype(np.float32), Path(folder))
    fp32 = {a.format: a for a in result.artifacts if a.precision == "fp32"}
    return [
        {"variant": variant, "params": model.count_params(), "file": a.file, "bytes": a.bytes,
         "weight_bytes": a.weight_bytes, "overhead_bytes": a.bytes - a.weight_bytes,
         "ratio_to_fp32": round(a.bytes / fp32[a.format].bytes, 3),
         "weights_ratio_to_fp32": round(a.weight_bytes / fp32[a.format].weight_bytes, 3),
         "seconds": a.seconds}
        for a in result.artifacts
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    arguments = parser.parse_args()
    rows = [row for variant in arguments.variants for row in measure(variant, (28, 28, 1), 10)]
    if arguments.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'variant':<18} {'params':>7} {'file':<22} {'KB':>7} {'weights':>8} "
          f"{'overhead':>9} {'x fp32':>7} {'weights x fp32':>15} {'seconds':>8}")
    for row in rows:
        print(f"{row['variant']:<18} {row['params']:>7,} {row['file']:<22} "
              f"{row['bytes'] / 1024:>7.1f} {row['weight_bytes'] / 1024:>8.1f} "
              f"{row['overhead_bytes'] / 1024:>9.1f} {row['ratio_to_fp32']:>7.3f} "
              f"{row['weights_ratio_to_fp32']:>15.3f} {row['seconds']:>8.2f}")


if __name__ == "__main__":
    main()
