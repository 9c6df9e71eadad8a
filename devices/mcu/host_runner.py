"""Compile generated sources for the host (gcc, shared library) and call model_invoke.

A fast check of the generated C without the emulator; the kernel tests use it.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

from devices.errors import RuntimeNotFoundError, StageError
from devices.mcu.codegen import GeneratedSources

HOST_FLAGS = ("-std=c99", "-O1", "-fPIC", "-shared", "-ffp-contract=off", "-Wall", "-Werror")


def host_compiler() -> str:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeNotFoundError(
            "no host C compiler (gcc/cc) on PATH; it compiles the generated model for host "
            "checks (hint: apt-get install gcc)"
        )
    return compiler


class HostModel:
    """The generated model as a host shared library."""

    def __init__(self, generated: GeneratedSources, build_dir: Path) -> None:
        build_dir.mkdir(parents=True, exist_ok=True)
        library = build_dir / "libmodel.so"
        sources = [str(p) for p in generated.sources() if p.name != "model_samples.c"]
        command = [host_compiler(), *HOST_FLAGS, "-I", str(generated.directory), *sources,
                   "-o", str(library)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StageError(
                f"host build of the generated model failed:\n{result.stderr[-4000:]}\n"
                "(hint: this is a code generator bug; report it with the model)"
            )
        self._library = ctypes.CDLL(str(library))
        self._library.model_invoke.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._library.model_invoke.restype = None
        self.input_bytes = generated.input_bytes
        self.output_bytes = generated.output_bytes

    def invoke(self, samples: np.ndarray) -> np.ndarray:
        samples = np.ascontiguousarray(np.asarray(samples, dtype=np.int8).reshape(
            -1, self.input_bytes))
        outputs = np.zeros((samples.shape[0], self.output_bytes), dtype=np.int8)
        for index in range(samples.shape[0]):
            row = np.ascontiguousarray(samples[index])
            result = outputs[index]
            self._library.model_invoke(row.ctypes.data, result.ctypes.data)
        return outputs
