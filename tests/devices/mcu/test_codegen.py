"""generate_sources: the files it writes, the samples it embeds, what it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tflite

from devices.mcu import tflite_builder as fb
from devices.mcu.codegen import generate_sources
from devices.mcu.readiness import UnsupportedOperatorError

OP = tflite.BuiltinOperator


def _relu_model(tmp_path: Path, op: int = OP.RELU) -> Path:
    q = {"scales": (0.5,), "zero_points": (-2,)}
    tensors = [fb.TensorSpec("in", (1, 2, 2, 1), **q), fb.TensorSpec("out", (1, 2, 2, 1), **q)]
    path = tmp_path / "relu.tflite"
    path.write_bytes(fb.build_model(tensors, [fb.OpSpec(op, (0,), (1,))], [0], [1]))
    return path


def test_writes_sources_and_quantises_float_samples(tmp_path: Path) -> None:
    out_dir = tmp_path / "model"
    out_dir.mkdir()
    (out_dir / "stale.c").write_text("old")
    samples = np.array([[[[1.0], [-1.0]], [[100.0], [0.25]]]], dtype=np.float32)
    generated = generate_sources(_relu_model(tmp_path), out_dir, inputs=samples)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(generated.files) == [
        "README.md", "mcu_kernels.c", "mcu_kernels.h", "model.c", "model.h",
        "model_samples.c", "model_samples.h"]
    # q = clip(round(x / 0.5) - 2): 1.0 -> 0, -1.0 -> -4, 100.0 -> 127 (clipped), 0.25 -> -2
    assert "{0, -4, 127, -2}" in (out_dir / "model_samples.c").read_text()
    header = (out_dir / "model.h").read_text()
    assert "#define MODEL_INPUT_ZERO_POINT -2" in header
    assert "#define MODEL_INPUT_SCALE 0x1.0000000000000p-1f" in header
    assert "mcu_clamp_s8(4, -2, 127" in (out_dir / "model.c").read_text()
    assert generated.samples == 1 and generated.arena_bytes == 32


def test_refuses_an_unsupported_op_and_leaves_the_folder_alone(tmp_path: Path) -> None:
    out_dir = tmp_path / "model"
    out_dir.mkdir()
    (out_dir / "model.c").write_text("previous")
    with pytest.raises(UnsupportedOperatorError, match=r"op #0 LOGISTIC"):
        generate_sources(_relu_model(tmp_path, OP.LOGISTIC), out_dir)
    assert (out_dir / "model.c").read_text() == "previous"


@pytest.mark.parametrize("keep", [12, 40, 0.5])
def test_a_truncated_flatbuffer_is_an_artifact_error_not_a_crash(
    tmp_path: Path, keep: float,
) -> None:
    from devices.errors import ArtifactError
    from devices.mcu.graph import load_graph

    content = _relu_model(tmp_path).read_bytes()  # its file identifier survives every cut
    corrupt = tmp_path / "truncated.tflite"
    corrupt.write_bytes(content[:int(keep * len(content)) if keep < 1 else int(keep)])
    with pytest.raises(ArtifactError, match="truncated.tflite is a corrupt TFLite flatbuffer"):
        load_graph(corrupt)
