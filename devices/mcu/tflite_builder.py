"""Write small int8 TFLite flatbuffers directly (no converter), for kernel tests and benchmarks.

The converter picks its own scales and zero points; kernel tests need arbitrary ones
(odd zero points, per-channel scales, channel counts not divisible by 4), so they
describe a graph here and LiteRT's reference kernels run it as any other model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np
import tflite

_TYPE_CODES = {
    np.dtype(np.float32): tflite.TensorType.FLOAT32,
    np.dtype(np.int8): tflite.TensorType.INT8,
    np.dtype(np.int32): tflite.TensorType.INT32,
    np.dtype(np.int64): tflite.TensorType.INT64,
}

OptionsWriter = Callable[[flatbuffers.Builder], int]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: Any = np.int8
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0
    data: np.ndarray | None = None


@dataclass(frozen=True)
class OpSpec:
    code: int  # tflite.BuiltinOperator value
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options_type: int = 0  # tflite.BuiltinOptions value
    options: OptionsWriter | None = None


def build_model(
    tensors: list[TensorSpec], ops: list[OpSpec], inputs: list[int], outputs: list[int]
) -> bytes:
    builder = flatbuffers.Builder(4096)
    buffer_offsets = [_write_buffer(builder, None)]  # buffer 0 is the empty buffer
    tensor_buffers = []
    for spec in tensors:
        if spec.data is None:
            tensor_buffers.append(0)
        else:
            tensor_buffers.append(len(buffer_offsets))
            buffer_offsets.append(_write_buffer(builder, spec.data))
    tensor_offsets = [
        _write_tensor(builder, spec, buffer)
        for spec, buffer in zip(tensors, tensor_buffers, strict=True)
    ]
    codes = sorted({op.code for op in ops})
    operator_offsets = [_write_operator(builder, op, codes.index(op.code)) for op in ops]
    code_offsets = [_write_operator_code(builder, code) for code in codes]

    tensors_vector = _offset_vector(builder, tflite.SubGraphStartTensorsVector, tensor_offsets)
    operators_vector = _offset_vector(builder, tflite.SubGraphStartOperatorsVector,
                                      operator_offsets)
    inputs_vector = builder.CreateNumpyVector(np.asarray(inputs, dtype=np.int32))
    outputs_vector = builder.CreateNumpyVector(np.asarray(outputs, dtype=np.int32))
    tflite.SubGraphStart(builder)
    tflite.SubGraphAddTensors(builder, tensors_vector)
    tflite.SubGraphAddOperators(builder, operators_vector)
    tflite.SubGraphAddInputs(builder, inputs_vector)
    tflite.SubGraphAddOutputs(builder, outputs_vector)
    subgraph = tflite.SubGraphEnd(builder)

    subgraphs_vector = _offset_vector(builder, tflite.ModelStartSubgraphsVector, [subgraph])
    codes_vector = _offset_vector(builder, tflite.ModelStartOperatorCodesVector, code_offsets)
    buffers_vector = _offset_vector(builder, tflite.ModelStartBuffersVector, buffer_offsets)
    description = builder.CreateString("devices.mcu.tflite_builder")
    tflite.ModelStart(builder)
    tflite.ModelAddVersion(builder, 3)
    tflite.ModelAddOperatorCodes(builder, codes_vector)
    tflite.ModelAddSubgraphs(builder, subgraphs_vector)
    tflite.ModelAddBuffers(builder, buffers_vector)
    tflite.ModelAddDescription(builder, description)
    model = tflite.ModelEnd(builder)
    builder.Finish(model, file_identifier=b"TFL3")
    return bytes(builder.Output())


def _offset_vector(builder: flatbuffers.Builder, start: Callable[..., Any],
                   offsets: list[int]) -> int:
    start(builder, len(offsets))
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _write_buffer(builder: flatbuffers.Builder, data: np.ndarray | None) -> int:
    data_vector = None
    if data is not None:
        raw = np.ascontiguousarray(data).tobytes()
        builder.StartVector(1, len(raw), 16)
        builder.head = builder.head - len(raw)
        builder.Bytes[builder.head:builder.head + len(raw)] = raw
        data_vector = builder.EndVector()
    tflite.BufferStart(builder)
    if data_vector is not None:
        tflite.BufferAddData(builder, data_vector)
    return tflite.BufferEnd(builder)


def _write_tensor(builder: flatbuffers.Builder, spec: TensorSpec, buffer: int) -> int:
    name = builder.CreateString(spec.name)
    shape = builder.CreateNumpyVector(np.asarray(spec.shape, dtype=np.int32))
    quantization = None
    if spec.scales:
        scales = builder.CreateNumpyVector(np.asarray(spec.scales, dtype=np.float32))
        zero_points = builder.CreateNumpyVector(np.asarray(spec.zero_points, dtype=np.int64))
        tflite.QuantizationParametersStart(builder)
        tflite.QuantizationParametersAddScale(builder, scales)
        tflite.QuantizationParametersAddZeroPoint(builder, zero_points)
        tflite.QuantizationParametersAddQuantizedDimension(builder, spec.quantized_dimension)
        quantization = tflite.QuantizationParametersEnd(builder)
    tflite.TensorStart(builder)
    tflite.TensorAddShape(builder, shape)
    tflite.TensorAddType(builder, _TYPE_CODES[np.dtype(spec.dtype)])
    tflite.TensorAddBuffer(builder, buffer)
    tflite.TensorAddName(builder, name)
    if quantization is not None:
        tflite.TensorAddQuantization(builder, quantization)
    return tflite.TensorEnd(builder)


def _write_operator(builder: flatbuffers.Builder, op: OpSpec, opcode_index: int) -> int:
    inputs = builder.CreateNumpyVector(np.asarray(op.inputs, dtype=np.int32))
    outputs = builder.CreateNumpyVector(np.asarray(op.outputs, dtype=np.int32))
    options = op.options(builder) if op.options is not None else None
    tflite.OperatorStart(builder)
    tflite.OperatorAddOpcodeIndex(builder, opcode_index)
    tflite.OperatorAddInputs(builder, inputs)
    tflite.OperatorAddOutputs(builder, outputs)
    if options is not None:
        tflite.OperatorAddBuiltinOptionsType(builder, op.options_type)
        tflite.OperatorAddBuiltinOptions(builder, options)
    return tflite.OperatorEnd(builder)


def _write_operator_code(builder: flatbuffers.Builder, code: int) -> int:
    tflite.OperatorCodeStart(builder)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(builder, min(code, 127))
    tflite.OperatorCodeAddBuiltinCode(builder, code)
    tflite.OperatorCodeAddVersion(builder, 1)
    return tflite.OperatorCodeEnd(builder)


# Options writers for the ops the kernels cover.
def conv_options(padding: int, stride: tuple[int, int], activation: int = 0,
                 dilation: tuple[int, int] = (1, 1)) -> OptionsWriter:
    def write(builder: flatbuffers.Builder) -> int:
        tflite.Conv2DOptionsStart(builder)
        tflite.Conv2DOptionsAddPadding(builder, padding)
        tflite.Conv2DOptionsAddStrideH(builder, stride[0])
        tflite.Conv2DOptionsAddStrideW(builder, stride[1])
        tflite.Conv2DOptionsAddFusedActivationFunction(builder, activation)
        tflite.Conv2DOptionsAddDilationHFactor(builder, dilation[0])
        tflite.Conv2DOptionsAddDilationWFactor(builder, dilation[1])
        return tflite.Conv2DOptionsEnd(builder)
    return write


def depthwise_options(padding: int, stride: tuple[int, int], multiplier: int,
                      activation: int = 0, dilation: tuple[int, int] = (1, 1)) -> OptionsWriter:
    def write(builder: flatbuffers.Builder) -> int:
        tflite.DepthwiseConv2DOptionsStart(builder)
        tflite.DepthwiseConv2DOptionsAddPadding(builder, padding)
        tflite.DepthwiseConv2DOptionsAddStrideH(builder, stride[0])
        tflite.DepthwiseConv2DOptionsAddStrideW(builder, stride[1])
        tflite.DepthwiseConv2DOptionsAddDepthMultiplier(builder, multiplier)
        tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(builder, activation)
        tflite.DepthwiseConv2DOptionsAddDilationHFactor(builder, dilation[0])
        tflite.DepthwiseConv2DOptionsAddDilationWFactor(builder, dilation[1])
        return tflite.DepthwiseConv2DOptionsEnd(builder)
    return write


def fully_connected_options(activation: int = 0, keep_num_dims: bool = False) -> OptionsWriter:
    def write(builder: flatbuffers.Builder) -> int:
        tflite.FullyConnectedOptionsStart(builder)
        tflite.FullyConnectedOptionsAddFusedActivationFunction(builder, activation)
        tflite.FullyConnectedOptionsAddKeepNumDims(builder, keep_num_dims)
        return tflite.FullyConnectedOptionsEnd(builder)
    return write


def pool_options(padding: int, stride: tuple[int, int], size: tuple[int, int],
                 activation: int = 0) -> OptionsWriter:
    def write(builder: flatbuffers.Builder) -> int:
        tflite.Pool2DOptionsStart(builder)
        tflite.Pool2DOptionsAddPadding(builder, padding)
        tflite.Pool2DOptionsAddStrideH(builder, stride[0])
        tflite.Pool2DOptionsAddStrideW(builder, stride[1])
        tflite.Pool2DOptionsAddFilterHeight(builder, size[0])
        tflite.Pool2DOptionsAddFilterWidth(builder, size[1])
        tflite.Pool2DOptionsAddFusedActivationFunction(builder, activation)
        return tflite.Pool2DOptionsEnd(builder)
    return write


def add_options(activation: int = 0) -> OptionsWriter:
    def write(builder: flatbuffers.Builder) -> int:
        tflite.AddOptionsStart(builder)
        tflite.AddOptionsAddFusedActivationFunction(builder, activation)
        return tflite.AddOptionsEnd(builder)
    return write


def reducer_options(keep_dims: bool) -> OptionsWriter:
    def write(builder: flatbuffers.Builder) -> int:
        tflite.ReducerOptionsStart(builder)
        tflite.ReducerOptionsAddKeepDims(builder, keep_dims)
        return tflite.ReducerOptionsEnd(builder)
    return write


def reshape_options(new_shape: tuple[int, ...]) -> OptionsWriter:
    def write(builder: flatbuffers.Builder) -> int:
        shape = builder.CreateNumpyVector(np.asarray(new_shape, dtype=np.int32))
        tflite.ReshapeOptionsStart(builder)
        tflite.ReshapeOptionsAddNewShape(builder, shape)
        return tflite.ReshapeOptionsEnd(builder)
    return write
