"""The phone's accuracy pass: every bundled sample through benchmark_model, outputs read back.

benchmark_model times a model on random inputs; two of its own flags make it run real ones:
`--input_layer_value_files=NAME:FILE` feeds a file of raw tensor bytes to the input, and
`--output_filepath=FILE` writes the output tensor's raw bytes when the run ends. So the
adapter writes one input file per bundled sample on this machine (quantised with the model's
own input scale, exactly as bench_runner.py does on the Pi), runs benchmark_model once per
file on the phone in one shell loop, appends each output to one file and pulls it back.
Each of those runs is timed after one warm-up run on the same input: the report keeps those
times as `runs_ms`, the source of the percentiles benchmark_model does not print (p90, p99).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devices.base import DeviceError
from devices.bench_runner import load_inputs, load_litert, prepare_samples

INPUT_NAME = "input"  # benchmark_model matches --input_layer names by position, not by name
SAMPLES_FOLDER = "samples"
OUTPUTS_FILE = "outputs.bin"
WARMUP_RUNS = 1  # per sample: one warm-up run on the same input, then the timed run
SAMPLE_MARKER = "__edge_sample__"

# $1: the working folder; the rest: the benchmark_model command line without its input and
# output flags. One run per sample file, each output appended to outputs.bin.
LOOP = (f'cd "$1" || exit 66; shift; rm -f {OUTPUTS_FILE}; '
        f'for sample in {SAMPLES_FOLDER}/*.bin; do echo "{SAMPLE_MARKER} $sample"; '
        'rm -f out.bin; "$@" --input_layer_value_files="' + INPUT_NAME + ':$sample" '
        '--output_filepath=out.bin || exit $?; '
        '[ -f out.bin ] || { echo "benchmark_model wrote no output for $sample" >&2; exit 65; }; '
        f'cat out.bin >> {OUTPUTS_FILE}; done')


@dataclass(frozen=True)
class SampleSet:
    """The sample files of one bundle and what reading the outputs back needs."""

    files: tuple[Path, ...]
    input_shape: tuple[int, ...]
    output_dtype: np.dtype
    labels: np.ndarray | None

    def flags(self) -> list[str]:
        shape = ",".join(str(size) for size in self.input_shape)
        return [f"--input_layer={INPUT_NAME}", f"--input_layer_shape={shape}",
                "--num_runs=1", f"--warmup_runs={WARMUP_RUNS}", "--min_secs=0",
                "--warmup_min_secs=0"]

    def outputs(self, blob: bytes) -> np.ndarray:
        """One row of raw outputs per sample; a DeviceError when the phone wrote too few."""
        values = np.frombuffer(blob, dtype=self.output_dtype)
        if len(self.files) == 0 or values.size % len(self.files):
            raise DeviceError(f"benchmark_model wrote {len(blob)} output bytes for "
                              f"{len(self.files)} samples (hint: run it by hand with "
                              "--output_filepath)")
        return values.reshape(len(self.files), -1)

    def top1(self, outputs: np.ndarray) -> float | None:
        if self.labels is None:
            return None
        return float((outputs.argmax(axis=1) == self.labels[: len(outputs)]).mean())


def write_sample_files(model: Path, inputs: Path, folder: Path) -> SampleSet:
    """One file of raw input-tensor bytes per bundled sample, in sample order."""
    features, labels = load_inputs(str(inputs))
    session, _, _ = load_litert(str(model), 1)
    samples = prepare_samples(features, session)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, sample in enumerate(samples):
        path = folder / f"s{index:05d}.bin"
        path.write_bytes(np.ascontiguousarray(sample).tobytes())
        files.append(path)
    output_dtype = np.dtype(session.output["dtype"])
    return SampleSet(tuple(files), tuple(int(size) for size in samples[0].shape),
                     output_dtype, labels)

