"""Which precision an ONNX file holds, and how many bytes its weights take."""

from __future__ import annotations

import onnx
from onnx import numpy_helper

QUANTIZED_OP_TYPES = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
     "MatMulInteger", "DynamicQuantizeLinear"}
)


def onnx_precision(model: onnx.ModelProto) -> str:
    """int8 when any quantization op is present, fp16 for float16 weights, else fp32."""
    if any(node.op_type in QUANTIZED_OP_TYPES for node in model.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


def constant_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the graph's initializers (weights, biases, scales and zero points)."""
    return sum(numpy_helper.to_array(tensor).nbytes for tensor in model.graph.initializer)
