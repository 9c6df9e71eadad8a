"""The runtime loader: preference order, fallbacks (by hiding modules), the NumPy 2
message, quantization helpers and running real TFLite / ONNX artifacts."""

from __future__ import annotations

import importlib.metadata
import sys
import types

import numpy as np
import pytest

from devices.errors import ArtifactError, RuntimeNotFoundError
from devices.runtimes import (
    dequantize,
    load_onnx_session,
    load_tflite_interpreter,
    quantize_input,
    run_onnx,
    run_tflite,
)
from devices.tf_env import keras
from pipeline.conversion.onnx_converter import convert_onnx
from pipeline.conversion.tflite_converter import convert_tflite
from tests.float_tolerance import assert_float32_close

LITERT_MODULES = ("ai_edge_litert", "ai_edge_litert.interpreter")
TFLITE_RUNTIME_MODULES = ("tflite_runtime", "tflite_runtime.interpreter")
TENSORFLOW_MODULES = ("devices.tf_env", "tensorflow")


@pytest.fixture(scope="module")
def tiny() -> dict:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1), name="input")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    rng = np.random.default_rng(0)
    representative = rng.uniform(0, 1, (32, 8, 8, 1)).astype(np.float32)
    x_test = rng.uniform(0, 1, (40, 8, 8, 1)).astype(np.float32)
    return {
        "model": model,
        "x": x_test,
        "keras": model.predict(x_test, verbose=0),
        "fp32": convert_tflite(model, "fp32", representative),
        "int8": convert_tflite(model, "int8", representative),
        "onnx": convert_onnx(model, opset=17),
    }


def hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """A None entry in sys.modules makes `import name` raise ImportError."""
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def install_fake_tflite_runtime(monkeypatch: pytest.MonkeyPatch, interpreter_class: type) -> None:
    package = types.ModuleType("tflite_runtime")
    module = types.ModuleType("tflite_runtime.interpreter")
    module.Interpreter = interpreter_class
    package.interpreter = module
    monkeypatch.setitem(sys.modules, "tflite_runtime", package)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", module)


def test_prefers_ai_edge_litert_and_reports_its_version(tiny: dict) -> None:
    interpreter, info = load_tflite_interpreter(tiny["fp32"])
    assert info.name == "ai_edge_litert"
    assert info.version == importlib.metadata.version("ai-edge-litert")
    assert_float32_close(run_tflite(interpreter, tiny["x"]), tiny["keras"])


def test_falls_back_to_tensorflow_lite_when_litert_is_hidden(
    tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide(monkeypatch, *LITERT_MODULES, *TFLITE_RUNTIME_MODULES)
    interpreter, info = load_tflite_interpreter(tiny["fp32"])
    assert info.name == "tensorflow"
    assert info.version == importlib.metadata.version("tensorflow")
    assert_float32_close(run_tflite(interpreter, tiny["x"]), tiny["keras"])


def test_uses_tflite_runtime_when_it_is_the_only_one(
    tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test double at the import boundary: no tflite_runtime wheel works under NumPy 2, so
    a stand-in `tflite_runtime.interpreter` module exposes LiteRT's real Interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    hide(monkeypatch, *LITERT_MODULES, *TENSORFLOW_MODULES)
    install_fake_tflite_runtime(monkeypatch, Interpreter)
    interpreter, info = load_tflite_interpreter(tiny["fp32"])
    assert info.name == "tflite_runtime"
    assert_float32_close(run_tflite(interpreter, tiny["x"]), tiny["keras"])


class Numpy1OnlyInterpreter:
    """Reproduces what the real tflite_runtime 2.14 wheel does under NumPy 2 (checked by
    hand): import succeeds, creating the interpreter raises SystemError caused by
    ImportError('numpy.core.multiarray failed to import') after '_ARRAY_API not found'."""

    def __init__(self, **_: object) -> None:
        try:
            try:
                raise AttributeError("_ARRAY_API not found")
            except AttributeError as inner:
                raise ImportError("numpy.core.multiarray failed to import") from inner
        except ImportError as exc:
            message = "CreateWrapperFromFile returned a result with an exception set"
            raise SystemError(message) from exc


def test_numpy2_failure_of_tflite_runtime_says_how_to_fix(
    tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test double at the import boundary (see Numpy1OnlyInterpreter)."""
    hide(monkeypatch, *LITERT_MODULES, *TENSORFLOW_MODULES)
    install_fake_tflite_runtime(monkeypatch, Numpy1OnlyInterpreter)
    with pytest.raises(RuntimeNotFoundError, match=r"NumPy 1.*ai-edge-litert.*numpy<2") as info:
        load_tflite_interpreter(tiny["fp32"])
    assert info.value.exit_code == 2


def test_numpy2_failure_falls_through_to_tensorflow(
    tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test double at the import boundary (see Numpy1OnlyInterpreter)."""
    hide(monkeypatch, *LITERT_MODULES)
    install_fake_tflite_runtime(monkeypatch, Numpy1OnlyInterpreter)
    _, info = load_tflite_interpreter(tiny["fp32"])
    assert info.name == "tensorflow"


def test_no_runtime_importable_is_a_clear_error(
    tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide(monkeypatch, *LITERT_MODULES, *TFLITE_RUNTIME_MODULES, *TENSORFLOW_MODULES)
    with pytest.raises(
        RuntimeNotFoundError,
        match=r"no TFLite runtime is importable \(tried ai_edge_litert, tflite_runtime, "
        r"tensorflow\).*pip install ai-edge-litert",
    ):
        load_tflite_interpreter(tiny["fp32"])


def test_int8_model_takes_quantized_input_and_returns_float_logits(tiny: dict) -> None:
    interpreter, _ = load_tflite_interpreter(tiny["int8"])
    logits = run_tflite(interpreter, tiny["x"])
    assert logits.dtype == np.float32
    # By hand: quantize one sample with the model's own input parameters, dequantize output.
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    assert input_detail["dtype"] == np.int8
    in_scale, in_zero_point = input_detail["quantization"]
    sample = np.clip(np.round(tiny["x"][:1] / in_scale) + in_zero_point, -128, 127)
    interpreter.resize_tensor_input(input_detail["index"], [1, 8, 8, 1])
    interpreter.allocate_tensors()
    interpreter.set_tensor(input_detail["index"], sample.astype(np.int8))
    interpreter.invoke()
    out_scale, out_zero_point = output_detail["quantization"]
    raw = interpreter.get_tensor(output_detail["index"]).astype(np.float32)
    np.testing.assert_allclose(logits[:1], (raw - out_zero_point) * out_scale, rtol=1e-6)
    spread = float(tiny["keras"].max() - tiny["keras"].min())
    assert np.max(np.abs(logits - tiny["keras"])) < 0.15 * spread


def test_reference_kernels_give_the_same_int8_predictions(tiny: dict) -> None:
    optimised, _ = load_tflite_interpreter(tiny["int8"])
    reference, _ = load_tflite_interpreter(tiny["int8"], reference_kernels=True)
    output_scale = reference.get_output_details()[0]["quantization"][0]
    difference = np.abs(run_tflite(reference, tiny["x"]) - run_tflite(optimised, tiny["x"]))
    assert difference.max() <= output_scale * 1.01  # at most one rounding step apart


def test_quantize_input_rounds_shifts_and_saturates() -> None:
    x = np.array([0.0, 1.0, 0.26, 100.0, -100.0, -0.76], np.float32)
    q = quantize_input(x, scale=0.5, zero_point=-3, dtype=np.int8)
    assert q.dtype == np.int8
    assert q.tolist() == [-3, -1, -2, 127, -128, -5]
    np.testing.assert_allclose(dequantize(q[:3], 0.5, -3), [0.0, 1.0, 0.5])


def test_quantize_input_rejects_a_zero_scale() -> None:
    with pytest.raises(ArtifactError, match="scale is 0.0"):
        quantize_input(np.zeros(3, np.float32), 0.0, 0, np.int8)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_tflite_is_an_artifact_error(tiny: dict, damage: str) -> None:
    content = tiny["fp32"]
    broken = content[: len(content) // 2] if damage == "truncate" else b"\x00" * 64 + content[64:]
    with pytest.raises(ArtifactError, match="not a loadable TFLite model.*corrupt or truncated"):
        load_tflite_interpreter(broken)


def test_missing_tflite_file_is_an_artifact_error(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        load_tflite_interpreter(tmp_path / "absent.tflite")


def test_onnx_runs_from_path_and_bytes(tiny: dict, tmp_path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(tiny["onnx"])
    assert_float32_close(run_onnx(path, tiny["x"]), tiny["keras"])
    session, info = load_onnx_session(tiny["onnx"])
    assert info.name == "onnxruntime"
    assert_float32_close(run_onnx(session, tiny["x"]), tiny["keras"])


def test_truncated_onnx_is_an_artifact_error(tiny: dict) -> None:
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        load_onnx_session(tiny["onnx"][: len(tiny["onnx"]) // 3])
