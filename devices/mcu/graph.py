"""A TFLite flatbuffer read into plain dataclasses: tensors, operators, constant data.

Everything downstream (readiness, memory plan, MAC count, code generation) works on this
small view instead of the generated flatbuffer accessors.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tflite

from devices.errors import ArtifactError
from devices.tflite_file import open_model, operator_name, tensor_type_name

# TensorType enum of the schema -> numpy dtype (only the types an int8 CNN graph holds).
_TENSOR_DTYPES: dict[int, Any] = {
    tflite.TensorType.FLOAT32: np.float32,
    tflite.TensorType.INT8: np.int8,
    tflite.TensorType.UINT8: np.uint8,
    tflite.TensorType.INT16: np.int16,
    tflite.TensorType.INT32: np.int32,
    tflite.TensorType.INT64: np.int64,
    tflite.TensorType.BOOL: np.bool_,
}

@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: Any  # numpy dtype class, None when the schema type is not one we map
    type_name: str
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0
    data: np.ndarray | None = None  # constant data, None for activations

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        itemsize = np.dtype(self.dtype).itemsize if self.dtype is not None else 4
        return self.elements * itemsize

    @property
    def scale(self) -> float:
        return self.scales[0] if self.scales else 0.0

    @property
    def zero_point(self) -> int:
        return self.zero_points[0] if self.zero_points else 0


@dataclass(frozen=True)
class Operator:
    index: int
    name: str  # BuiltinOperator name, e.g. "CONV_2D", or "CUSTOM:<code>"
    inputs: tuple[int, ...]  # tensor indices, -1 for an omitted optional input
    outputs: tuple[int, ...]
    options: Any = None  # the parsed *Options table, or None


@dataclass(frozen=True)
class Graph:
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    source: Path | None = None
    extra_subgraphs: int = 0
    file_bytes: int = 0

    def tensor(self, index: int) -> Tensor:
        return self.tensors[index]

    def op_inputs(self, op: Operator) -> list[Tensor | None]:
        return [self.tensors[i] if i >= 0 else None for i in op.inputs]

    def op_outputs(self, op: Operator) -> list[Tensor]:
        return [self.tensors[i] for i in op.outputs]


# BuiltinOptions union type -> options class, for the ops we read options of.
_OPTION_CLASSES: dict[int, Any] = {
    tflite.BuiltinOptions.Conv2DOptions: tflite.Conv2DOptions,
    tflite.BuiltinOptions.DepthwiseConv2DOptions: tflite.DepthwiseConv2DOptions,
    tflite.BuiltinOptions.FullyConnectedOptions: tflite.FullyConnectedOptions,
    tflite.BuiltinOptions.Pool2DOptions: tflite.Pool2DOptions,
    tflite.BuiltinOptions.AddOptions: tflite.AddOptions,
    tflite.BuiltinOptions.ReducerOptions: tflite.ReducerOptions,
    tflite.BuiltinOptions.SoftmaxOptions: tflite.SoftmaxOptions,
    tflite.BuiltinOptions.ReshapeOptions: tflite.ReshapeOptions,
}


def load_graph(path: Path) -> Graph:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(
            f"cannot read TFLite model {path}: {exc} (hint: run the export stage first)"
        ) from exc
    return parse_graph(data, source=path)


def parse_graph(data: bytes, source: Path | None = None) -> Graph:
    try:
        return _parse_graph(data, source)
    except (struct.error, IndexError, ValueError, TypeError, UnicodeDecodeError) as exc:
        # a flatbuffer is read lazily: a corrupt body fails deep inside the accessors
        raise ArtifactError(f"{source or 'model'} is a corrupt TFLite flatbuffer ({exc!r}) "
                            "(hint: rebuild it with `make artifacts`)") from exc


def _parse_graph(data: bytes, source: Path | None) -> Graph:
    model = open_model(data, str(source or "model"))
    if model.SubgraphsLength() < 1:
        raise ArtifactError(f"{source or 'model'} has no subgraph (hint: re-export the model)")
    subgraph = model.Subgraphs(0)
    tensors = tuple(
        _read_tensor(model, subgraph.Tensors(i), i) for i in range(subgraph.TensorsLength())
    )
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    operators = tuple(
        _read_operator(codes, subgraph.Operators(i), i)
        for i in range(subgraph.OperatorsLength())
    )
    return Graph(
        tensors=tensors,
        operators=operators,
        inputs=tuple(int(i) for i in subgraph.InputsAsNumpy()),
        outputs=tuple(int(i) for i in subgraph.OutputsAsNumpy()),
        source=source,
        extra_subgraphs=model.SubgraphsLength() - 1,
        file_bytes=len(data),
    )


def _read_tensor(model: Any, raw: Any, index: int) -> Tensor:
    type_code = raw.Type()
    dtype = _TENSOR_DTYPES.get(type_code)
    shape = tuple(int(d) for d in raw.ShapeAsNumpy()) if raw.ShapeLength() else ()
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension = 0
    quant = raw.Quantization()
    if quant is not None and quant.ScaleLength():
        # Keep the float32 values exactly: multipliers are derived from them as TFLite does.
        scales = tuple(float(np.float32(s)) for s in quant.ScaleAsNumpy())
        zero_points = tuple(int(z) for z in quant.ZeroPointAsNumpy())
        quantized_dimension = int(quant.QuantizedDimension())
    data = None
    buffer = model.Buffers(raw.Buffer())
    if buffer is not None and buffer.DataLength() and dtype is not None:
        data = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=dtype).reshape(shape)
    return Tensor(
        index=index,
        name=raw.Name().decode("utf-8", "replace") if raw.Name() else f"t{index}",
        shape=shape,
        dtype=dtype,
        type_name=tensor_type_name(type_code),
        scales=scales,
        zero_points=zero_points,
        quantized_dimension=quantized_dimension,
        data=data,
    )


def _read_operator(codes: list[Any], raw: Any, index: int) -> Operator:
    name = operator_name(codes[raw.OpcodeIndex()])
    options = None
    option_class = _OPTION_CLASSES.get(raw.BuiltinOptionsType())
    table = raw.BuiltinOptions()
    if option_class is not None and table is not None:
        options = option_class()
        options.Init(table.Bytes, table.Pos)
    inputs = tuple(int(i) for i in raw.InputsAsNumpy()) if raw.InputsLength() else ()
    outputs = tuple(int(i) for i in raw.OutputsAsNumpy()) if raw.OutputsLength() else ()
    return Operator(index=index, name=name, inputs=inputs, outputs=outputs, options=options)

