"""TEST DOUBLE helper: what benchmark_model's `--output_filepath` writes, computed with LiteRT.

No Android benchmark_model runs here, so the phone double (tests/devices/conftest.py) asks
this script for the output a real one would write: the model run once on the raw input
bytes it was given, the output tensor's raw bytes written to a file (atomically, as several
tests share the cache it goes to).

    python litert_output.py MODEL INPUT_FILE OUTPUT_FILE
"""

from __future__ import annotations

import os
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def main(model: str, input_file: str, output_file: str) -> int:
    interpreter = Interpreter(model_path=model, num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    with open(input_file, "rb") as handle:
        raw = handle.read()
    sample = np.frombuffer(raw, dtype=detail["dtype"]).reshape(detail["shape"])
    interpreter.set_tensor(detail["index"], sample)
    interpreter.invoke()
    output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    partial = f"{output_file}.{os.getpid()}"
    with open(partial, "wb") as handle:
        handle.write(np.ascontiguousarray(output).tobytes())
    os.replace(partial, output_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
