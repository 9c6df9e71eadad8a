"""LiteRT's reference kernels on the host: the ground truth the C kernels must match."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devices.errors import RuntimeNotFoundError


def reference_outputs(model: Path | bytes, samples: np.ndarray) -> np.ndarray:
    """Run int8 `samples` (batch of model inputs) through BUILTIN_REF, one at a time."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType  # deferred: optional
    except ImportError as exc:  # pragma: no cover - ai-edge-litert is a dependency
        raise RuntimeNotFoundError(
            "ai-edge-litert is not installed; it provides the reference kernels the MCU "
            "outputs are checked against (hint: pip install ai-edge-litert)"
        ) from exc
    kwargs = {"model_content": model} if isinstance(model, bytes) else {
        "model_path": str(model)}
    interpreter = Interpreter(**kwargs,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    shape = tuple(source["shape"])
    outputs = []
    for sample in np.asarray(samples):
        interpreter.set_tensor(source["index"], sample.reshape(shape).astype(source["dtype"]))
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_tensor(target["index"])).reshape(-1))
    return np.stack(outputs) if outputs else np.zeros((0, 0), dtype=np.int8)
