"""int8 ONNX accuracy of every quantization scheme on both of onnxruntime's x86 int8 paths.

    .venv/bin/python benchmarks/onnx_int8_kernels.py [--config FILE] [--set section.key=value ...]

Takes the run's float ONNX model (every stage through the cache), quantizes it with each
scheme of pipeline.conversion.onnx_quantize plus U8S8 and U8U8 variants for comparison,
and runs devices/bench_runner.py on the test split twice per file: natively, and under
`qemu-x86_64-static -cpu Haswell`, an AVX2 CPU without AVX-512 or VNNI, where onnxruntime
takes the saturating VPMADDUBSW kernel. Prints top-1 and its drop from the float model in
images, after the validate stage's own drops (every artifact against Keras, on this host).
Needs Debian's qemu-user-static.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNNER = ROOT / "devices" / "bench_runner.py"
QEMU = "qemu-x86_64-static"
KERNEL_PATHS = {"host": [], "avx2 (qemu Haswell)": [QEMU, "-cpu", "Haswell"]}


def comparison_schemes() -> dict:
    from pipeline.conversion.onnx_int8_schemes import ONNX_INT8_SCHEMES, OnnxInt8Scheme

    variants = {
        "u8s8": OnnxInt8Scheme("uint8", "int8", True, False, "comparison"),
        "u8s8_reduce_range": OnnxInt8Scheme("uint8", "int8", True, True, "comparison"),
        "u8u8": OnnxInt8Scheme("uint8", "uint8", True, False, "comparison"),
    }
    return {**ONNX_INT8_SCHEMES, **variants}


def top1(prefix: list[str], model: Path, inputs: Path) -> float:
    completed = subprocess.run(
        [*prefix, sys.executable, str(RUNNER), "--model", str(model), "--inputs", str(inputs),
         "--warmup", "0", "--runs", "1", "--no-output-values"],
        check=True, capture_output=True, text=True,
    )
    return float(json.loads(completed.stdout)["accuracy"]["top1"])


def print_validation(record: dict) -> None:
    """The validate stage's drops, in images, of every artifact from the Keras model."""
    drops = ", ".join(f"{a['file']} {record['keras_correct'] - a['correct']:+d}"
                      for a in record["artifacts"])
    print(f"validate on this host: Keras {record['keras_correct']}/{record['samples']} right; "
          f"images lost: {drops}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    if shutil.which(QEMU) is None:
        raise SystemExit(f"{QEMU} is missing (apt-get install qemu-user-static)")
    from pipeline.config import load_config
    from pipeline.conversion.onnx_quantize import quantize_onnx_int8
    from pipeline.runner import Runner

    config = load_config(Path(args.config) if args.config else None, args.set)
    run = Runner(config, ROOT / "build", echo=lambda _: None).run(until="validate")
    print_validation(run.record("validate"))
    float_model = run.outcomes["export"].entry.path / "model.onnx"
    dataset = run.dataset
    calibration = dataset.x_train[: config.export.representative_samples]
    with tempfile.TemporaryDirectory(prefix="onnx-int8-kernels-") as folder:
        work = Path(folder)
        inputs = work / "inputs.npz"
        np.savez(inputs, x=dataset.x_test.astype(np.float32), y=dataset.y_test)
        files = {"float": float_model}
        for name, scheme in comparison_schemes().items():
            files[name] = work / f"{name}.onnx"
            files[name].write_bytes(
                quantize_onnx_int8(float_model.read_bytes(), calibration, scheme))
        samples = len(dataset.y_test)
        print(f"{len(dataset.y_test)} test images of {dataset.name}; calibration on "
              f"{len(calibration)} training images")
        print(f"{'model':<20}" + "".join(f"{path:>32}" for path in KERNEL_PATHS))
        reference = {}
        for name, model in files.items():
            cells = []
            for path, prefix in KERNEL_PATHS.items():
                accuracy = top1(prefix, model, inputs)
                reference.setdefault(path, accuracy)
                lost = round((reference[path] - accuracy) * samples)
                cells.append(f"{accuracy:.4f} ({lost:+d} lost)")
            print(f"{name:<20}" + "".join(f"{cell:>32}" for cell in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
