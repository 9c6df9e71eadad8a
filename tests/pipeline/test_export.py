"""Export stage on a small untrained seed_student with random data: every format and
precision, the int8 flatbuffer check, all-or-nothing writes and the error cases."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

from devices.errors import ExportError
from devices.runtimes import load_tflite_interpreter, run_onnx, run_tflite
from devices.tf_env import keras, tf
from models import create_model, list_models
from pipeline.config import ExportConfig
from pipeline.conversion.onnx_inspect import onnx_precision
from pipeline.conversion.tflite_inspect import check_fully_integer, float_ops, tflite_precision
from pipeline.stages.export import ExportResult, run_export
from tests.float_tolerance import assert_float32_close

EXPECTED_FILES = {
    ("tflite", "fp32"): "model.tflite",
    ("tflite", "fp16"): "model_fp16.tflite",
    ("tflite", "dynamic"): "model_dynamic.tflite",
    ("tflite", "int8"): "model_int8.tflite",
    ("onnx", "fp32"): "model.onnx",
    ("onnx", "int8"): "model_int8.onnx",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    keras.utils.set_random_seed(3)
    model = create_model("seed_student", (28, 28, 1), 10)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # distinct non-zero biases: converters share equal constants
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.05, layer.bias.shape).astype(np.float32))
    representative = rng.uniform(0, 1, (80, 28, 28, 1)).astype(np.float32)
    out_dir = tmp_path_factory.mktemp("export")
    config = ExportConfig(representative_samples=64)
    result = run_export(config, model, representative, out_dir)
    x = rng.uniform(0, 1, (64, 28, 28, 1)).astype(np.float32)
    return {"model": model, "result": result, "dir": out_dir, "x": x,
            "keras": model.predict(x, verbose=0)}


def test_every_format_and_precision_is_written_with_its_checksum(exported: dict) -> None:
    result: ExportResult = exported["result"]
    written = {(a.format, a.precision): a.file for a in result.artifacts}
    assert written == EXPECTED_FILES
    for artifact in result.artifacts:
        content = (exported["dir"] / artifact.file).read_bytes()
        assert artifact.bytes == len(content)
        assert artifact.sha256 == hashlib.sha256(content).hexdigest()
        assert artifact.seconds >= 0
    assert {(s.format, s.precision) for s in result.skipped} == {
        ("onnx", "fp16"), ("onnx", "dynamic")
    }
    assert result.representative_samples == 64
    assert sorted(p.name for p in exported["dir"].iterdir()) == sorted(EXPECTED_FILES.values())


def test_each_file_holds_the_precision_it_claims(exported: dict) -> None:
    for artifact in exported["result"].artifacts:
        content = (exported["dir"] / artifact.file).read_bytes()
        if artifact.format == "tflite":
            assert tflite_precision(content) == artifact.precision, artifact.file
        else:
            assert onnx_precision(onnx.load_from_string(content)) == artifact.precision


def test_int8_tflite_is_fully_integer_with_input_scale_of_the_data(exported: dict) -> None:
    artifact = exported["result"].artifact("model_int8.tflite")
    content = (exported["dir"] / artifact.file).read_bytes()
    assert float_ops(content) == []
    check_fully_integer(content)
    # Representative inputs span [0, 1]: int8 covers it with scale 1/255, zero point -128.
    assert artifact.input_quantization.dtype == "int8"
    assert artifact.input_quantization.scale == pytest.approx(1 / 255, rel=0.02)
    assert artifact.input_quantization.zero_point == -128
    assert artifact.output_quantization.dtype == "int8"
    assert artifact.output_quantization.scale > 0
    for name in ("model.tflite", "model_fp16.tflite", "model_dynamic.tflite", "model.onnx"):
        assert exported["result"].artifact(name).input_quantization is None


def test_quantized_artifacts_are_a_third_of_the_float_size(exported: dict) -> None:
    size = {a.file: a.bytes for a in exported["result"].artifacts}
    assert size["model_int8.tflite"] <= 0.35 * size["model.tflite"]
    assert size["model_dynamic.tflite"] <= 0.35 * size["model.tflite"]
    assert size["model_fp16.tflite"] <= 0.6 * size["model.tflite"]
    assert size["model_int8.onnx"] <= 0.45 * size["model.onnx"]


def _kernel_and_bias_counts(model: keras.Model) -> tuple[int, int]:
    kernels = sum(int(layer.kernel.shape.num_elements()) for layer in model.layers
                  if hasattr(layer, "kernel"))
    biases = sum(int(layer.bias.shape.num_elements()) for layer in model.layers
                 if getattr(layer, "bias", None) is not None)
    return kernels, biases


def test_weight_bytes_are_the_tensor_data_in_each_precision(exported: dict) -> None:
    """fp32 stores 4 bytes per parameter, fp16 2, int8 1 per weight and 4 per (int32) bias;
    what is left of each file is format overhead. Allowances: the Reshape's shape constant;
    int8 ONNX keeps its per-channel scales and zero points as initializers (13 bytes per
    output channel: float32 + int8 for the weight, float32 + int32 for the bias); dynamic
    range keeps kernels under 1024 elements in float (the converter's threshold)."""
    kernels, biases = _kernel_and_bias_counts(exported["model"])
    params = exported["model"].count_params()
    assert params == kernels + biases
    int8 = kernels + 4 * biases
    expected = {
        "model.tflite": (4 * params, 4 * params + 64),
        "model_fp16.tflite": (2 * params, 2 * params + 64),
        "model_dynamic.tflite": (int8, int(0.3 * 4 * params)),
        "model_int8.tflite": (int8, int8 + 64),
        "model.onnx": (4 * params, 4 * params + 64),
        "model_int8.onnx": (int8 + 13 * biases, int8 + 13 * biases + 256),
    }
    artifact = {a.file: a for a in exported["result"].artifacts}
    for file, (low, high) in expected.items():
        assert low <= artifact[file].weight_bytes <= high, file
        assert 0 < artifact[file].bytes - artifact[file].weight_bytes < 16_384, file


def test_int8_onnx_is_qdq_with_per_channel_weights(exported: dict) -> None:
    model = onnx.load(exported["dir"] / "model_int8.onnx")
    op_types = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    initializers = {t.name: t for t in model.graph.initializer}
    per_channel_scales = [
        node for node in model.graph.node
        if node.op_type == "DequantizeLinear" and node.input[1] in initializers
        and len(initializers[node.input[1]].dims) == 1 and initializers[node.input[1]].dims[0] > 1
    ]
    assert per_channel_scales, "expected per-channel weight scales"
    onnx.checker.check_model(model, full_check=True)


def test_float_artifacts_reproduce_keras_logits(exported: dict) -> None:
    x, reference = exported["x"], exported["keras"]
    interpreter, _ = load_tflite_interpreter(exported["dir"] / "model.tflite")
    assert_float32_close(run_tflite(interpreter, x), reference)
    interpreter, _ = load_tflite_interpreter(exported["dir"] / "model_fp16.tflite")
    assert_float32_close(run_tflite(interpreter, x), reference, rtol=5e-3)  # fp16 weights
    assert_float32_close(run_onnx(exported["dir"] / "model.onnx", x), reference)


def test_quantized_artifacts_track_keras_logits(exported: dict) -> None:
    x, reference = exported["x"], exported["keras"]
    spread = float(reference.max() - reference.min())
    for name in ("model_dynamic.tflite", "model_int8.tflite"):
        interpreter, _ = load_tflite_interpreter(exported["dir"] / name)
        assert np.abs(run_tflite(interpreter, x) - reference).max() < 0.1 * spread, name
    assert np.abs(run_onnx(exported["dir"] / "model_int8.onnx", x) - reference).max() < (
        0.1 * spread
    )


def test_result_round_trips_through_its_dict(exported: dict) -> None:
    result = exported["result"]
    assert ExportResult.from_dict(result.to_dict()) == result


def test_representative_sample_count_is_configurable(tmp_path: Path) -> None:
    model = _tiny_model()
    representative = np.random.default_rng(1).uniform(0, 1, (50, 8, 8, 1)).astype(np.float32)
    config = ExportConfig(formats=("tflite",), precisions=("int8",), representative_samples=7)
    result = run_export(config, model, representative, tmp_path)
    assert result.representative_samples == 7
    assert [a.file for a in result.artifacts] == ["model_int8.tflite"]


def test_empty_representative_dataset_fails_and_writes_nothing(tmp_path: Path) -> None:
    empty = np.zeros((0, 8, 8, 1), np.float32)
    with pytest.raises(ExportError, match="representative dataset is empty") as info:
        run_export(ExportConfig(), _tiny_model(), empty, tmp_path / "out")
    assert info.value.exit_code == 2  # an input error (docs/architecture.md exit codes), not a broken check
    assert not (tmp_path / "out").exists()


def test_representative_shape_must_match_the_model(tmp_path: Path) -> None:
    wrong = np.zeros((4, 28, 28, 1), np.float32)
    with pytest.raises(ExportError, match=r"shape \(28, 28, 1\); expected .* \(8, 8, 1\)"):
        run_export(ExportConfig(), _tiny_model(), wrong, tmp_path)


def test_onnx_only_with_tflite_only_precisions_is_an_error(tmp_path: Path) -> None:
    config = ExportConfig(formats=("onnx",), precisions=("fp16", "dynamic"))
    with pytest.raises(ExportError, match="no artifact to export"):
        run_export(config, _tiny_model(), np.ones((2, 8, 8, 1), np.float32), tmp_path)


def _tiny_model(extra_layer: keras.layers.Layer | None = None) -> keras.Model:
    keras.utils.set_random_seed(5)
    inputs = keras.Input((8, 8, 1), name="input")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    if extra_layer is not None:
        x = extra_layer(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_float_op_left_in_int8_conversion_names_the_ops_and_writes_nothing(
    tmp_path: Path,
) -> None:
    # SIN has no int8 kernel: the converter wraps it in DEQUANTIZE/QUANTIZE and keeps it float.
    model = _tiny_model(keras.layers.Lambda(tf.math.sin, name="sine"))
    representative = np.random.default_rng(2).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    config = ExportConfig(formats=("tflite",), precisions=("fp32", "int8"))
    with pytest.raises(
        ExportError, match=r"left 3 float op\(s\): DEQUANTIZE .*SIN .*QUANTIZE"
    ) as info:
        run_export(config, model, representative, tmp_path / "out")
    assert info.value.exit_code == 2
    assert not (tmp_path / "out").exists()  # not even the fp32 file that converted fine


def test_inspector_rejects_a_float_model(exported: dict) -> None:
    content = (exported["dir"] / "model.tflite").read_bytes()
    names = {op.name for op in float_ops(content)}
    assert {"CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED"} <= names
    with pytest.raises(ExportError, match="float op.*CONV_2D"):
        check_fully_integer(content, label="fp32 model")


def test_pruning_wrappers_are_stripped_before_conversion(tmp_path: Path) -> None:
    import tensorflow_model_optimization as tfmot

    model = _tiny_model()
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(model)
    config = ExportConfig(formats=("tflite",), precisions=("fp32",))
    representative = np.ones((2, 8, 8, 1), np.float32)
    plain = run_export(config, model, representative, tmp_path / "plain").artifacts[0]
    stripped = run_export(config, wrapped, representative, tmp_path / "wrapped").artifacts[0]
    assert stripped.bytes == plain.bytes  # no masks or thresholds in the file
    ops = {op.name for op in float_ops((tmp_path / "wrapped" / "model.tflite").read_bytes())}
    assert ops == {"CONV_2D", "RESHAPE", "FULLY_CONNECTED"}


@pytest.mark.parametrize("model_name", list_models())
def test_every_zoo_model_converts_to_full_integer_tflite_and_int8_onnx(
    model_name: str, tmp_path: Path
) -> None:
    keras.utils.set_random_seed(0)
    model = create_model(model_name, (28, 28, 1), 10, width=0.5)
    representative = np.random.default_rng(0).uniform(0, 1, (16, 28, 28, 1)).astype(np.float32)
    config = ExportConfig(precisions=("int8",), representative_samples=16)
    result = run_export(config, model, representative, tmp_path)
    assert [a.file for a in result.artifacts] == ["model_int8.tflite", "model_int8.onnx"]
    assert float_ops((tmp_path / "model_int8.tflite").read_bytes()) == []
    int8_onnx = onnx.load(tmp_path / "model_int8.onnx")
    assert onnx_precision(int8_onnx) == "int8"
