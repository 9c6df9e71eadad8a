"""The `export.onnx_int8` choices: which onnxruntime quantization settings make the int8
ONNX artifact, and why the default is portable.

Which int8 kernel runs depends on the CPU that loads the file, not on the one that built
it. On x86-64 with AVX2 or AVX-512 but no VNNI, onnxruntime's int8 GEMM multiplies uint8
activations by int8 weights with VPMADDUBSW, which adds each pair of products into a
saturating int16: 2 · 255 · 127 = 64,770 overflows it, and large activations meet large
weights in trained networks. With 7-bit weights (`reduce_range`, |w| ≤ 64) a pair is at
most 2 · 255 · 64 = 32,640 and cannot saturate. VNNI (VPDPBUSD) and ARM (SDOT) add into
int32 and never saturate; there the eighth weight bit buys a little precision.
`benchmarks/onnx_int8_kernels.py` measures every scheme on both x86 kernel paths; the
README gives its numbers.

No onnxruntime import here: the config reads the names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class OnnxInt8Scheme:
    """onnxruntime quantize_static settings (QDQ format) of one `export.onnx_int8` choice."""

    activations: str  # "int8" or "uint8"
    weights: str
    per_channel: bool
    reduce_range: bool  # 7-bit weights
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ONNX_INT8_SCHEMES: dict[str, OnnxInt8Scheme] = {
    "portable": OnnxInt8Scheme(
        "int8", "int8", per_channel=True, reduce_range=True,
        reason="7-bit weights cannot saturate the 16-bit pair sums of onnxruntime's "
        "AVX2/AVX-512 (non-VNNI) int8 GEMM, so the file is as accurate on every CPU",
    ),
    "full_range": OnnxInt8Scheme(
        "int8", "int8", per_channel=True, reduce_range=False,
        reason="8-bit weights: accurate only where the int8 GEMM adds into int32 (x86 with "
        "VNNI, ARM); on AVX2-only x86 large activations saturate and accuracy drops",
    ),
}
DEFAULT_ONNX_INT8 = "portable"
