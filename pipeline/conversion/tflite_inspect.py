"""Read a .tflite flatbuffer with the `tflite` schema package (no TensorFlow needed).

Answers four questions: which ops use float tensors (a full-integer model must have
none), what the input/output quantization parameters are, which precision a file was
converted with, and how many of its bytes are tensor data rather than format overhead.
"""

from __future__ import annotations

from dataclasses import dataclass

import tflite

from devices.errors import ArtifactError, ExportError
from devices.tflite_file import open_model, operator_name, tensor_type_name
from pipeline.conversion.quantization import Quantization

FLOAT_TYPES = frozenset({"float32", "float16", "float64", "bfloat16"})


@dataclass(frozen=True)
class TfliteOp:
    index: int
    name: str
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]

    @property
    def uses_float(self) -> bool:
        return any(t in FLOAT_TYPES for t in self.input_types + self.output_types)


def _tensor_type(subgraph: tflite.SubGraph, tensor_index: int) -> str:
    return tensor_type_name(subgraph.Tensors(tensor_index).Type()).lower()


def list_ops(content: bytes, label: str = "model") -> list[TfliteOp]:
    """Every operator of every subgraph, with the types of its tensors (-1 = no input)."""
    model = open_model(content, label)
    ops: list[TfliteOp] = []
    try:
        for subgraph_index in range(model.SubgraphsLength()):
            subgraph = model.Subgraphs(subgraph_index)
            for op_index in range(subgraph.OperatorsLength()):
                op = subgraph.Operators(op_index)
                inputs = [int(t) for t in op.InputsAsNumpy() if t >= 0] if op.InputsLength() else []
                outputs = [int(t) for t in op.OutputsAsNumpy()] if op.OutputsLength() else []
                ops.append(TfliteOp(
                    len(ops), operator_name(model.OperatorCodes(op.OpcodeIndex())),
                    tuple(_tensor_type(subgraph, t) for t in inputs),
                    tuple(_tensor_type(subgraph, t) for t in outputs),
                ))
    except (IndexError, ValueError, TypeError, AttributeError) as exc:
        raise ArtifactError(
            f"{label}: the TFLite flatbuffer cannot be parsed: {exc} (hint: the file is "
            "corrupt or truncated)"
        ) from exc
    return ops


def float_ops(content: bytes, label: str = "model") -> list[TfliteOp]:
    return [op for op in list_ops(content, label) if op.uses_float]


def check_fully_integer(content: bytes, label: str = "model") -> None:
    """ExportError naming every op that still reads or writes a float tensor."""
    leftovers = float_ops(content, label)
    if leftovers:
        names = ", ".join(f"{op.name} (op {op.index})" for op in leftovers)
        raise ExportError(
            f"{label}: full-integer conversion left {len(leftovers)} float op(s): {names}; "
            "expected every tensor to be int8/int32 (hint: replace the layer behind these ops "
            "with one that has an int8 kernel, or export precision 'dynamic' instead)"
        )


def _quantization(subgraph: tflite.SubGraph, tensor_index: int) -> Quantization | None:
    tensor = subgraph.Tensors(tensor_index)
    dtype = tensor_type_name(tensor.Type()).lower()
    parameters = tensor.Quantization()
    if dtype in FLOAT_TYPES or parameters is None or parameters.ScaleLength() != 1:
        return None
    return Quantization(float(parameters.Scale(0)), int(parameters.ZeroPoint(0)), dtype)


def io_quantization(
    content: bytes, label: str = "model"
) -> tuple[Quantization | None, Quantization | None]:
    """(input, output) quantization of the main subgraph; None for float tensors."""
    subgraph = open_model(content, label).Subgraphs(0)
    return (
        _quantization(subgraph, int(subgraph.Inputs(0))),
        _quantization(subgraph, int(subgraph.Outputs(0))),
    )


def _constant_types(model: tflite.Model) -> set[str]:
    """Types of tensors backed by a non-empty buffer, i.e. the weights."""
    types: set[str] = set()
    for subgraph_index in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(subgraph_index)
        for tensor_index in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(tensor_index)
            buffer = model.Buffers(tensor.Buffer())
            if buffer is not None and (buffer.DataLength() > 0 or buffer.Size() > 0):
                types.add(tensor_type_name(tensor.Type()).lower())
    return types


def tflite_precision(content: bytes, label: str = "model") -> str:
    """fp32 | fp16 | dynamic | int8, judged from the tensors rather than the file name."""
    input_quantization, _ = io_quantization(content, label)
    if input_quantization is not None:
        return "int8"
    weights = _constant_types(open_model(content, label))
    if "float16" in weights:
        return "fp16"
    if "int8" in weights:
        return "dynamic"
    return "fp32"


def constant_bytes(content: bytes, label: str = "model") -> int:
    """Bytes of constant tensor data (weights, biases, shapes), each buffer counted once.

    The rest of a file is format overhead: tensor and op tables, tensor names, the
    signature, and per-channel quantization scales and zero points. It is a few KB
    whatever the model's size, so it dominates the int8/fp32 file ratio of tiny models.
    """
    model = open_model(content, label)
    buffers: set[int] = set()
    for subgraph_index in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(subgraph_index)
        buffers.update(subgraph.Tensors(t).Buffer() for t in range(subgraph.TensorsLength()))
    return sum(model.Buffers(b).DataLength() for b in buffers if model.Buffers(b) is not None)
