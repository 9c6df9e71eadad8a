"""Quantization-aware training (`quantize.method = "qat"`): the flow on the tiny config with
one QAT epoch, the shipped int8 file, PTQ against QAT in the manifest and the report, the
layers TFMOT cannot wrap refused by name, and the sparse scheme keeping a model's zeros."""

from __future__ import annotations

import json
import shutil
from typing import Any

import numpy as np
import pytest

from devices.errors import ExportError
from devices.fsutil import sha256_file
from devices.runtimes import load_tflite_interpreter, run_tflite
from devices.tf_env import keras
from models import create_model, list_models
from pipeline.config import load_config
from pipeline.conversion.qat import (
    DENSE_SCHEME,
    SPARSE_SCHEME,
    calibrate_ranges,
    quantize_aware,
    refuse_unwrappable,
    unwrappable_layers,
)
from pipeline.conversion.tflite_inspect import check_fully_integer, tflite_precision
from pipeline.deploy import build_artifacts
from pipeline.report import write_reports
from pipeline.runner import Runner
from pipeline.stages.qat import PTQ_FILE, QAT_FILE

QAT_OVERRIDES = ("quantize.method=qat", "quantize.epochs=1")


@pytest.fixture(scope="module")
def qat_flow(tiny_build: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny flow again with QAT: its trained stages come from tiny_build's cache."""
    root = tmp_path_factory.mktemp("qat")
    build_dir = root / "build"
    shutil.copytree(tiny_build["build_dir"], build_dir)
    config = load_config(overrides=[*tiny_build["overrides"], *QAT_OVERRIDES])
    run = Runner(config, build_dir, echo=lambda _: None).run()
    bundles = build_artifacts(config, ["host"], build_dir=build_dir, dist_dir=root / "dist",
                              echo=lambda _: None)
    return {"config": config, "run": run, "ptq_run": tiny_build["run"], "root": root,
            "bundle": bundles["host"], "report": write_reports(root / "dist")}


@pytest.mark.slow
def test_qat_runs_after_the_final_model_whose_cache_entries_it_reuses(qat_flow: dict) -> None:
    run, ptq_run = qat_flow["run"], qat_flow["ptq_run"]
    assert list(run.outcomes) == ["teacher", "student", "pruned", "qat", "export", "validate"]
    assert list(ptq_run.outcomes) == ["teacher", "student", "pruned", "export", "validate"]
    for stage in ("teacher", "student", "pruned"):  # same keys, served from the cache
        assert run.outcomes[stage].cache_hit
        assert run.outcomes[stage].entry.key == ptq_run.outcomes[stage].entry.key
    assert not run.outcomes["qat"].cache_hit
    assert run.outcomes["export"].entry.key != ptq_run.outcomes["export"].entry.key


@pytest.mark.slow
def test_the_shipped_int8_file_is_qats_fully_integer_and_validated(qat_flow: dict) -> None:
    run, ptq_run = qat_flow["run"], qat_flow["ptq_run"]
    qat_entry, export_entry = run.outcomes["qat"].entry, run.outcomes["export"].entry
    shipped = export_entry.path / QAT_FILE
    assert sha256_file(shipped) == sha256_file(qat_entry.path / QAT_FILE)
    assert sha256_file(shipped) != sha256_file(ptq_run.outcomes["export"].entry.path / QAT_FILE)
    content = shipped.read_bytes()
    check_fully_integer(content, label="QAT int8")
    assert tflite_precision(content) == "int8"
    # what validate measured is the QAT stage's own measurement of the same file, and the
    # file's top-1 on the test split, recomputed here through LiteRT
    record, dataset = run.record("qat"), run.dataset
    validated = {a["file"]: a for a in run.record("validate")["artifacts"]}[QAT_FILE]
    interpreter, _ = load_tflite_interpreter(shipped)
    top1 = float(np.mean(run_tflite(interpreter, dataset.x_test).argmax(1) == dataset.y_test))
    assert validated["top1"] == record["int8_top1"] == record["qat"]["top1"] == top1
    assert validated["samples"] == len(dataset.y_test) == 1000
    scheme = {a["file"]: a for a in run.record("export")["artifacts"]}[QAT_FILE]["scheme"]
    assert scheme == {"name": "qat", "finetune": "kd", "epochs": 1, "learning_rate": 0.0001,
                      "wrappers": DENSE_SCHEME, "ptq_top1": record["ptq_top1"]}
    assert record["epochs_run"] == 1 and len(record["history"]["loss"]) == 1
    assert record["calibrated_ranges"] == 5  # 3 ReLUs, fc1 and the logits
    # the int8 ONNX file stays post-training: the PTQ flow's scheme and predictions (its
    # bytes differ within one process: tf2onnx numbers the graph functions it has seen)
    onnx = {a["file"]: a for a in run.record("export")["artifacts"]}["model_int8.onnx"]
    assert onnx["scheme"]["name"] == "portable"
    ptq_validated = {a["file"]: a for a in ptq_run.record("validate")["artifacts"]}
    assert {a["file"]: a for a in run.record("validate")["artifacts"]}["model_int8.onnx"][
        "correct"] == ptq_validated["model_int8.onnx"]["correct"]


@pytest.mark.slow
def test_ptq_top1_is_what_the_post_training_flow_validated(qat_flow: dict) -> None:
    record, ptq_run = qat_flow["run"].record("qat"), qat_flow["ptq_run"]
    ptq_validated = {a["file"]: a for a in ptq_run.record("validate")["artifacts"]}[QAT_FILE]
    assert record["ptq_top1"] == record["ptq"]["top1"] == ptq_validated["top1"]
    assert record["ptq"]["correct"] == ptq_validated["correct"]
    ptq_file = qat_flow["run"].outcomes["qat"].entry.path / PTQ_FILE
    assert sha256_file(ptq_file) == sha256_file(ptq_run.outcomes["export"].entry.path / QAT_FILE)
    assert record["float_top1"] == ptq_run.record("validate")["keras_top1"]
    assert record["gain_points"] == pytest.approx(100 * (record["int8_top1"] - record["ptq_top1"]))


@pytest.mark.slow
def test_manifest_and_report_show_ptq_against_qat(qat_flow: dict) -> None:
    record = qat_flow["run"].record("qat")
    manifest = json.loads((qat_flow["bundle"] / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert metrics["qat"]["ptq_top1"] == record["ptq_top1"]
    assert metrics["qat"]["int8_top1"] == metrics["artifacts"][QAT_FILE]["top1"]
    assert metrics["artifacts"][QAT_FILE]["quantization_scheme"]["name"] == "qat"
    document = json.loads(qat_flow["report"].json.read_text())
    assert document["quantization"] == [{
        "group": manifest["config_fingerprint"], "label": "pruned", "file": QAT_FILE,
        "float_top1": record["float_top1"], "ptq_top1": record["ptq_top1"],
        "qat_top1": record["int8_top1"],
        "top1_points": pytest.approx(100 * (record["int8_top1"] - record["ptq_top1"])),
        "finetune": "kd", "epochs_run": 1, "learning_rate": 0.0001,
    }]
    markdown = qat_flow["report"].markdown.read_text()
    section = markdown.split("## Post-training against quantization-aware int8")[1]
    row = next(line for line in section.splitlines() if line.startswith("| pruned"))
    assert f"| {record['ptq_top1']:.2%} | {record['int8_top1']:.2%} |" in row
    assert "1 epochs kd, learning rate 0.0001" in row


def test_a_post_training_report_has_no_qat_table() -> None:
    from pipeline.report import quantization_tables

    assert quantization_tables({"quantization": []}) == []
    assert quantization_tables({}) == []  # a report.json from before the section


def _model_with(*layers: Any) -> Any:
    inputs = keras.Input((8, 8, 1), name="input")
    x = inputs
    for layer in layers:
        x = layer(x)
    outputs = keras.layers.Dense(3, name="logits")(keras.layers.Flatten(name="flatten")(x))
    return keras.Model(inputs, outputs, name="tiny")


def test_layers_tfmot_cannot_wrap_are_refused_by_name() -> None:
    model = _model_with(
        keras.layers.Conv2D(4, 3, use_bias=False, name="conv"),
        keras.layers.BatchNormalization(name="conv_bn"),  # folds into the conv: fine
        keras.layers.LayerNormalization(name="norm"),
        keras.layers.Lambda(lambda t: t * 2.0, name="double"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.BatchNormalization(name="pool_bn"),  # after a pooling: nothing to fold into
    )
    assert unwrappable_layers(model) == [
        "norm (LayerNormalization)", "double (Lambda)", "pool_bn (BatchNormalization)"]
    with pytest.raises(ExportError) as caught:
        quantize_aware(model)
    message = str(caught.value)
    assert ("cannot wrap 3 layer(s) of model 'tiny': norm (LayerNormalization), double (Lambda), "
            "pool_bn (BatchNormalization)") in message
    assert 'hint: set quantize.method = "ptq"' in message
    assert caught.value.exit_code == 2


def test_a_subclassed_model_is_refused() -> None:
    class Custom(keras.Model):
        def call(self, inputs: Any) -> Any:
            return inputs

    with pytest.raises(ExportError, match=r"model 'custom' is a Custom subclass .*quantize\.method"):
        refuse_unwrappable(Custom(name="custom"))


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_can_be_wrapped(name: str) -> None:
    shape = (32, 32, 3) if name in ("resnet8", "ds_cifar") else (28, 28, 1)
    options = {"batch_norm": True} if name.startswith("seed") else {}
    model = create_model(name, shape, 10, **options)
    assert unwrappable_layers(model) == []
    wrapped = quantize_aware(model)
    assert type(wrapped.layers[1]).__name__ == "QuantizeLayer"  # the input's fake quantizer
    assert any(type(layer).__name__ == "QuantizeWrapperV2" for layer in wrapped.layers)


def _range(wrapped: Any, layer: str, kind: str) -> tuple[float, float]:
    values = {weight.name.split("/")[-1]: float(weight.numpy())
              for weight in wrapped.get_layer(f"quant_{layer}").non_trainable_weights}
    return values[f"{kind}_min:0"], values[f"{kind}_max:0"]


def test_calibration_starts_each_activation_range_where_the_float_model_puts_it() -> None:
    keras.utils.set_random_seed(1)
    model = create_model("seed_student", (28, 28, 1), 10, batch_norm=True)
    samples = np.random.default_rng(0).uniform(0, 1, (300, 28, 28, 1)).astype(np.float32)
    expected = {"block1_relu": "output", "block2_relu": "output", "block3_relu": "output",
                "fc1": "post_activation", "logits": "post_activation"}
    wrapped = quantize_aware(model)
    # TFMOT's start, which its 0.1%-a-step moving average leaves mostly in place
    assert {_range(wrapped, layer, kind) for layer, kind in expected.items()} == {(-6.0, 6.0)}
    assert calibrate_ranges(wrapped, model, samples) == len(expected)
    probe = keras.Model(model.inputs, [model.get_layer(layer).output for layer in expected])
    for (layer, kind), values in zip(expected.items(), probe.predict(samples, verbose=0)):
        low, high = _range(wrapped, layer, kind)
        assert low == pytest.approx(min(float(values.min()), 0.0), abs=1e-6)
        assert high == pytest.approx(max(float(values.max()), 0.0), abs=1e-6)
        assert high > 0.0  # ReLU outputs: nothing left on negatives
        assert low == 0.0 or layer == "logits"


def _zero_fraction(model: Any) -> dict[str, float]:
    return {weight.name: float(np.mean(weight.numpy() == 0)) for layer in model.layers
            for weight in layer.trainable_weights if weight.name.endswith("kernel:0")}


@pytest.mark.parametrize(("scheme", "keeps_zeros"), [(SPARSE_SCHEME, True),
                                                      (DENSE_SCHEME, False)])
def test_the_sparse_scheme_keeps_a_pruned_models_zeros(scheme: str, keeps_zeros: bool) -> None:
    keras.utils.set_random_seed(0)
    model = _model_with(keras.layers.Conv2D(4, 3, name="conv"))
    for layer in model.layers:
        if layer.weights:
            kernel, *rest = layer.get_weights()
            kernel[np.abs(kernel) < np.median(np.abs(kernel))] = 0.0  # half of each kernel
            layer.set_weights([kernel, *rest])
    wrapped = quantize_aware(model, scheme)
    wrapped.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    wrapped.fit(rng.normal(size=(64, 8, 8, 1)).astype(np.float32), np.arange(64) % 3, epochs=2,
                verbose=0)
    fractions = _zero_fraction(wrapped)
    assert len(fractions) == 2  # conv and logits
    for fraction in fractions.values():
        assert (fraction == 0.5) is keeps_zeros, fractions


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(ExportError, match="unknown quantization-aware scheme 'int4'"):
        quantize_aware(_model_with(), "int4")
