"""The one reader of .tflite flatbuffers (the `tflite` schema package, no TensorFlow):
the file check, operator names and tensor type names. The export stage's inspector
(pipeline/conversion/tflite_inspect.py) and the microcontroller code generator's graph
(devices/mcu/graph.py) both read files through it."""

from __future__ import annotations

from typing import Any

import tflite

from devices.errors import ArtifactError

FILE_IDENTIFIER = b"TFL3"

# The schema's own enum names: TensorType 9 -> "INT8", BuiltinOperator 3 -> "CONV_2D".
TENSOR_TYPE_NAMES: dict[int, str] = {
    value: name for name, value in vars(tflite.TensorType).items()
    if not name.startswith("_") and isinstance(value, int)
}
OPERATOR_NAMES: dict[int, str] = {
    value: name for name, value in vars(tflite.BuiltinOperator).items()
    if not name.startswith("_") and isinstance(value, int)
}


def open_model(content: bytes, label: str) -> Any:
    """The flatbuffer's root Model; ArtifactError naming `label` if it is not a .tflite."""
    if len(content) < 8 or content[4:8] != FILE_IDENTIFIER:
        raise ArtifactError(
            f"{label} is not a TFLite flatbuffer: the file identifier is "
            f"{content[4:8]!r}, expected {FILE_IDENTIFIER!r} (hint: the file is corrupt, "
            "truncated or another format; rebuild it with `make artifacts`)"
        )
    return tflite.Model.GetRootAsModel(content, 0)


def operator_name(code: Any) -> str:
    """An OperatorCode's name: CONV_2D, ..., or CUSTOM:<its custom code>."""
    # Newer files keep codes > 127 in BuiltinCode; old ones only in DeprecatedBuiltinCode.
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    if builtin == tflite.BuiltinOperator.CUSTOM:
        custom = code.CustomCode()
        return f"CUSTOM:{custom.decode() if custom else '?'}"
    return OPERATOR_NAMES.get(builtin, f"BUILTIN_{builtin}")


def tensor_type_name(code: int) -> str:
    return TENSOR_TYPE_NAMES.get(code, str(code))
