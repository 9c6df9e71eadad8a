"""Artifact sizes and conversion times for the zoo's models in every format and precision.

    .venv/bin/python benchmarks/export_sizes.py [--models seed_student resnet8] [--json]

Sizes do not depend on the weights' values, so the models are untrained and calibrated on
uniform random inputs; times are wall-clock on this machine (benchmarks only, never tests).
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


def measure(model_name: str, input_shape: tuple[int, int, int], classes: int) -> list[dict]:
    model = create_model(model_name, input_shape, classes)
    representative = np.random.default_rng(0).uniform(0, 1, (200, *input_shape))
    with tempfile.TemporaryDirectory() as folder:
        result = run_export(ExportConfig(), model, representative.astype(np.float32), Path(folder))
    by_format = {a.format: a.bytes for a in result.artifacts if a.precision == "fp32"}
    return [
        {"model": model_name, "file": a.file, "bytes": a.bytes,
         "ratio_to_fp32": round(a.bytes / by_format[a.format], 3), "seconds": a.seconds}
        for a in result.artifacts
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["seed_student", "resnet8"])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    arguments = parser.parse_args()
    rows = [row for name in arguments.models for row in measure(name, (28, 28, 1), 10)]
    if arguments.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'model':<14} {'file':<22} {'KB':>8} {'x fp32':>7} {'seconds':>8}")
    for row in rows:
        print(f"{row['model']:<14} {row['file']:<22} {row['bytes'] / 1024:>8.1f} "
              f"{row['ratio_to_fp32']:>7.3f} {row['seconds']:>8.2f}")


if __name__ == "__main__":
    main()
