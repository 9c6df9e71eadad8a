"""A user's own model at every stage (`teacher.model` / `student.model = "file:PATH"`), on
models this repository did not build: small CNNs built and trained with Keras 3 (`import
keras`, `model.save("m.keras")`, as TensorFlow 2.21 users save them), a tf_keras `.h5` and
SavedModel, a Lambda layer, damaged files, and models that do not fit the dataset.

The Keras 3 teacher goes through distillation, pruning, int8 export, validation and the
host bundle, and, where the tools are installed, the emulated Cortex-M4; a second one is
pruned directly (no student stage). The rest runs in seconds: loading, proofs, refusals.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devices.errors import ConfigError, DataError, ModelError
from pipeline.config import NORMALISATIONS, DataConfig, StudentConfig, load_config
from pipeline.data import INPUT_CONVENTIONS, Dataset, load_dataset
from tests.contracts import assert_follows_schemas

ROOT = Path(__file__).resolve().parents[2]
# tests/conftest.py's TINY_OVERRIDES, less the teacher's (a file teacher is not trained)
TINY = ("student.epochs=2", "student.width=0.5", "prune.finetune_epochs=1",
        "data.bundle_samples=40", "profile.runs=5", "profile.warmup=1",
        "validate.max_accuracy_drop=3.0")


def _keras3() -> Any:
    import keras  # Keras 3, the package: what `import keras` gives a TensorFlow 2.21 user

    assert keras.__version__.startswith("3."), keras.__version__
    return keras


def _small_cnn(keras: Any, shape: tuple[int, ...], classes: int, *, rescale: bool) -> Any:
    """A tutorial-style CNN; with `rescale` it holds its own Rescaling and takes 0..255."""
    inputs = keras.Input(shape)
    hidden = keras.layers.Rescaling(1 / 255.0)(inputs) if rescale else inputs
    hidden = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(hidden)
    hidden = keras.layers.BatchNormalization()(hidden)
    hidden = keras.layers.ReLU()(hidden)
    hidden = keras.layers.MaxPooling2D()(hidden)
    hidden = keras.layers.DepthwiseConv2D(3, padding="same")(hidden)
    hidden = keras.layers.Conv2D(16, 1, activation="relu")(hidden)
    hidden = keras.layers.MaxPooling2D()(hidden)
    hidden = keras.layers.Flatten()(hidden)
    outputs = keras.layers.Dense(classes, activation="softmax")(hidden)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset(DataConfig())  # 0..1, as the pipeline's own convention feeds it


def _trained_keras3(folder: Path, mnist: Dataset, *, rescale: bool) -> dict[str, Any]:
    keras = _keras3()
    keras.utils.set_random_seed(0)
    model = _small_cnn(keras, mnist.input_shape, mnist.num_classes, rescale=rescale)
    scale = 255.0 if rescale else 1.0  # a Rescaling model was trained on raw pixels
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(mnist.x_train * scale, mnist.y_train, epochs=2, batch_size=64, verbose=0)
    path = folder / ("raw_pixels.keras" if rescale else "unit_pixels.keras")
    model.save(path)
    probabilities = np.asarray(model.predict(mnist.x_test * scale, verbose=0))
    return {"path": path, "probabilities": probabilities,
            "top1": float(np.mean(np.argmax(probabilities, axis=-1) == mnist.y_test))}


@pytest.fixture(scope="module")
def raw_model(tmp_path_factory: pytest.TempPathFactory, mnist: Dataset) -> dict[str, Any]:
    """Trained with Keras 3 on 0..255 pixels, its own Rescaling inside: data.normalisation=raw."""
    return _trained_keras3(tmp_path_factory.mktemp("keras3-raw"), mnist, rescale=True)


@pytest.fixture(scope="module")
def unit_model(tmp_path_factory: pytest.TempPathFactory, mnist: Dataset) -> dict[str, Any]:
    """Trained with Keras 3 on 0..1 pixels: data.normalisation=unit."""
    return _trained_keras3(tmp_path_factory.mktemp("keras3-unit"), mnist, rescale=False)


def _raw_dataset() -> Dataset:
    return load_dataset(DataConfig(normalisation="raw"))


# -- loading: Keras 3 rebuilt and proven, tf_keras as saved ------------------------------


def test_a_keras3_model_is_rebuilt_in_tf_keras_and_proven_by_its_outputs(
        raw_model: dict[str, Any], mnist: Dataset) -> None:
    from pipeline.model_files.loading import load_file_model
    from pipeline.training import predict_logits

    data = _raw_dataset()
    loaded = load_file_model(f"file:{raw_model['path']}", section="teacher", trusted=False,
                             dataset=data)
    record = loaded.record
    assert record.format == "keras" and record.saved_by.startswith("keras 3.")
    assert record.rebuilt and record.softmax_removed and record.file == "file:…/raw_pixels.keras"
    assert record.equivalence["layers"] >= 9  # every layer's outputs, not only the model's
    assert record.equivalence["max_difference"] <= record.equivalence["tolerance"]
    assert type(loaded.model).__module__.startswith("tf_keras")
    logits = predict_logits(loaded.model, data.x_test)  # logits now: softmax gives them back
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    np.testing.assert_allclose(probabilities, raw_model["probabilities"], atol=1e-5)
    assert np.array_equal(np.argmax(logits, -1), np.argmax(raw_model["probabilities"], -1))


def _tf_keras_model(with_lambda: bool = False) -> Any:
    from devices.tf_env import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Lambda(lambda t: t * 2.0, name="times_two")(inputs) if (
        with_lambda) else inputs
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(hidden)
    hidden = keras.layers.Flatten()(hidden)
    return keras.Model(inputs, keras.layers.Dense(10)(hidden))


def _digits() -> Dataset:
    return load_dataset(DataConfig(name="digits"))


@pytest.mark.parametrize("name", ["model.h5", "saved_model", "model.keras"])
def test_tf_keras_files_load_as_saved(tmp_path: Path, name: str) -> None:
    from pipeline.model_files.loading import load_file_model
    from pipeline.training import predict_logits

    data, model = _digits(), _tf_keras_model()
    model.save(tmp_path / name)
    loaded = load_file_model(f"file:{tmp_path / name}", section="teacher", trusted=False,
                             dataset=data)
    assert loaded.record.saved_by.startswith("keras 2.") and not loaded.record.rebuilt
    assert loaded.record.format == {"model.h5": "h5", "saved_model": "savedmodel",
                                    "model.keras": "keras"}[name]
    np.testing.assert_allclose(predict_logits(loaded.model, data.x_test[:50]),
                               predict_logits(model, data.x_test[:50]), rtol=1e-5, atol=1e-6)


def test_a_keras3_h5_file_is_rebuilt_too(tmp_path: Path) -> None:
    from pipeline.model_files.loading import load_file_model

    keras = _keras3()
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
                              keras.layers.LeakyReLU(0.2), keras.layers.Flatten(),
                              keras.layers.Dense(10), keras.layers.Softmax()])
    model.save(tmp_path / "legacy.h5")
    loaded = load_file_model(f"file:{tmp_path / 'legacy.h5'}", section="student",
                             trusted=False, dataset=_digits())
    assert loaded.record.format == "h5" and loaded.record.rebuilt
    assert loaded.record.softmax_removed  # the Softmax layer dropped, LeakyReLU's slope kept
    assert loaded.model.get_layer(model.layers[1].name).alpha == pytest.approx(0.2)


# -- refusals, by layer name ------------------------------------------------------------


def test_a_layer_computing_differently_in_tf_keras_is_named(tmp_path: Path) -> None:
    """hard_sigmoid is one name with two formulas (Keras 3: relu6(x + 3) / 6; tf_keras:
    0.2x + 0.5): the config translates, the proof names the layer."""
    from pipeline.model_files.loading import load_file_model

    keras = _keras3()
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(4, 3)(inputs)
    hidden = keras.layers.Activation("hard_sigmoid", name="gate")(hidden)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(hidden))
    keras.Model(inputs, outputs).save(tmp_path / "gate.keras")
    with pytest.raises(ModelError, match=r"layer 'gate' \(Activation\) is the first whose "
                                         r"outputs differ.*hint:"):
        load_file_model(f"file:{tmp_path / 'gate.keras'}", section="teacher", trusted=False,
                        dataset=_digits())


def test_a_keras3_operation_is_refused_by_name(tmp_path: Path) -> None:
    from pipeline.model_files.loading import load_file_model

    keras = _keras3()
    inputs = keras.Input((8, 8, 1))
    hidden = keras.ops.relu(keras.layers.Conv2D(4, 3)(inputs))
    keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(hidden))).save(
        tmp_path / "ops.keras")
    with pytest.raises(ModelError, match=r"layer 'relu' \(Relu\) is the Keras 3 operation "
                                         r"keras\.src\.ops\.nn\.Relu, not a layer.*hint:"):
        load_file_model(f"file:{tmp_path / 'ops.keras'}", section="teacher", trusted=False,
                        dataset=_digits())


@pytest.mark.parametrize("name", ["lambda.h5", "lambda_saved_model", "lambda.keras"])
def test_a_lambda_layer_is_refused_unless_trusted(tmp_path: Path, name: str) -> None:
    """tf_keras' HDF5 and SavedModel loaders would unmarshal the bytecode: the pipeline reads
    the architecture first (h5py, keras_metadata.pb) and refuses it by name."""
    from pipeline.model_files.loading import load_file_model

    _tf_keras_model(with_lambda=True).save(tmp_path / name)
    model = f"file:{tmp_path / name}"
    with pytest.raises(ModelError, match=r"layer 'times_two' \(Lambda\) stores Python code.*"
                                         r"CVE-2024-3660.*set teacher\.trust_model_code = "
                                         "true") as refused:
        load_file_model(model, section="teacher", trusted=False, dataset=_digits())
    assert refused.value.exit_code == 2
    loaded = load_file_model(model, section="teacher", trusted=True, dataset=_digits())
    assert loaded.model.get_layer("times_two") is not None


def test_a_keras3_lambda_is_refused_and_even_trusted_not_rebuilt(tmp_path: Path) -> None:
    from pipeline.model_files.loading import load_file_model

    keras = _keras3()
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(hidden))).save(
        tmp_path / "lambda3.keras")
    model = f"file:{tmp_path / 'lambda3.keras'}"
    with pytest.raises(ModelError, match=r"layer 'double' \(Lambda\) stores Python code.*"
                                         r"student\.trust_model_code"):
        load_file_model(model, section="student", trusted=False, dataset=_digits())
    with pytest.raises(ModelError, match=r"layer 'double' \(Lambda\) runs a Python function "
                                         r"written for Keras 3.*hint:"):
        load_file_model(model, section="student", trusted=True, dataset=_digits())


def _truncated(source: Path, target: Path) -> None:
    data = source.read_bytes()
    target.write_bytes(data[:len(data) // 2])


def _damaged_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, what the error must say)."""
    model = _tf_keras_model()
    model.save(folder / "good.h5")
    model.save(folder / "good.keras")
    model.save_weights(folder / "weights.weights.h5")
    (folder / "weights.weights.h5").rename(folder / "weights_only.h5")
    _truncated(folder / "good.h5", folder / "truncated.h5")
    _truncated(folder / "good.keras", folder / "truncated.keras")
    (folder / "empty.keras").write_bytes(b"")
    (folder / "text.h5").write_text("not a model\n")
    with zipfile.ZipFile(folder / "no_config.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")
    (folder / "not_saved_model").mkdir()
    (folder / "notes.txt").write_text("hello\n")
    keras = _keras3()
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(10)]).export(folder / "exported", verbose=False)
    return {
        "truncated .h5": (folder / "truncated.h5", r"not a readable HDF5 file: it is truncated"),
        "truncated .keras": (folder / "truncated.keras",
                             r"not a readable \.keras archive \(a zip file\): it is truncated"),
        "empty .keras": (folder / "empty.keras", r"not a readable \.keras archive"),
        "text as .h5": (folder / "text.h5", r"not a readable HDF5 file"),
        "zip without config": (folder / "no_config.keras", r"zip file without config\.json"),
        "weights only": (folder / "weights_only.h5", r"holds weights only \(saved with "
                                                     r"save_weights\)"),
        "folder": (folder / "not_saved_model", r"folder without saved_model\.pb"),
        "Keras 3 export": (folder / "exported", r"SavedModel without Keras metadata"),
        "other file": (folder / "notes.txt", r"not a model file the pipeline reads; expected "
                                             r"a \.keras archive"),
        "missing": (folder / "missing.keras", r"does not exist"),
    }


def test_damaged_empty_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    from pipeline.model_files.loading import load_file_model

    for case, (path, message) in _damaged_files(tmp_path).items():
        with pytest.raises(ModelError, match=r"^teacher\.model.*" + message) as refused:
            load_file_model(f"file:{path}", section="teacher", trusted=False, dataset=_digits())
        assert refused.value.exit_code == 2, case


def _cli(build_dir: Path, *settings: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--build-dir", str(build_dir), "--until",
         "teacher", *[part for setting in settings for part in ("--set", setting)]],
        capture_output=True, text=True, cwd=ROOT, env=environment, timeout=600)


def test_the_cli_refuses_what_does_not_fit_with_exit_2(tmp_path: Path) -> None:
    """Wrong input size (read from the file before any stage), wrong class count (at the
    teacher stage, before anything trains), a Lambda, a truncated file: exit 2, one line
    naming both sides, no traceback."""
    keras = _keras3()
    _small_cnn(keras, (28, 28, 1), 10, rescale=False).save(tmp_path / "mnist_sized.keras")
    _small_cnn(keras, (8, 8, 1), 3, rescale=False).save(tmp_path / "three_classes.keras")
    _tf_keras_model(with_lambda=True).save(tmp_path / "lambda.h5")
    _truncated(tmp_path / "three_classes.keras", tmp_path / "truncated.keras")
    cases = {
        "mnist_sized.keras": r"teacher\.model file:…/mnist_sized\.keras takes inputs of shape "
                             r"\(28, 28, 1\) \(height, width, channels\) and digits has images "
                             r"of \(8, 8, 1\)",
        "three_classes.keras": r"outputs 3 class scores per image and digits has 10 classes",
        "lambda.h5": r"layer 'times_two' \(Lambda\) stores Python code.*teacher\."
                     r"trust_model_code",
        "truncated.keras": r"not a readable \.keras archive",
    }
    for name, message in cases.items():
        completed = _cli(tmp_path / "build", "data.name=digits",
                         f"teacher.model=file:{tmp_path / name}")
        assert completed.returncode == 2, (name, completed.stderr[-2000:])
        errors = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in completed.stderr, completed.stderr
        assert re.search(message, errors[0]), (name, errors[0])


# -- the flow -----------------------------------------------------------------------------


def _flow_config(path: Path, *settings: str) -> Any:
    return load_config(overrides=[*TINY, f"teacher.model=file:{path}", *settings])


@pytest.fixture(scope="module")
def keras3_flow(tmp_path_factory: pytest.TempPathFactory, raw_model: dict[str, Any]
                ) -> dict[str, Any]:
    """The Keras 3 teacher (0..255 pixels) distilled into the zoo student, which is pruned,
    exported (int8 too), validated and profiled on the host."""
    from pipeline.deploy import deploy

    config = _flow_config(raw_model["path"], "data.normalisation=raw")
    root = tmp_path_factory.mktemp("keras3-flow")
    lines: list[str] = []
    outcome = deploy(config, "host", build_dir=root / "build", dist_dir=root / "dist",
                     echo=lines.append)
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    return {"config": config, "root": root, "outcome": outcome, "manifest": manifest,
            "lines": lines}


@pytest.mark.slow
def test_a_keras3_teacher_file_goes_through_every_stage_to_the_host(
        keras3_flow: dict[str, Any], raw_model: dict[str, Any]) -> None:
    manifest, outcome = keras3_flow["manifest"], keras3_flow["outcome"]
    assert_follows_schemas(outcome.bundle)
    teacher = manifest["metrics"]["teacher"]
    assert teacher["model"] == "file:…/raw_pixels.keras" and teacher["epochs_run"] == 0
    assert teacher["top1"] == pytest.approx(raw_model["top1"], abs=0.002)  # used as saved
    assert manifest["metrics"]["student"]["model"] == "seed_student"
    pruned = manifest["metrics"]["pruned"]
    assert pruned["method"] == "channel" and pruned["macs"] < pruned["macs_before"]
    normalisation = manifest["input"]["normalisation"]
    assert normalisation["convention"] == "raw" and normalisation["std"] == [1.0]
    shipped = np.load(outcome.bundle / "inputs.npz")["x"]  # fed as the model was trained
    assert shipped.max() > 100.0 and shipped.min() >= 0.0
    artifact = manifest["metrics"]["artifacts"]["model_int8.tflite"]
    # the tiny recipe's half-width student, one epoch of fine-tuning: well above chance (0.10)
    assert artifact["top1"] > 0.2
    assert outcome.report["accuracy"]["top1"] == artifact["bundle_top1"]
    assert not any("near chance" in line for line in keras3_flow["lines"])


@pytest.mark.slow
@pytest.mark.needs("arm-none-eabi-gcc", "qemu-system-arm")
def test_a_keras3_teacher_file_reaches_the_microcontroller(keras3_flow: dict[str, Any]) -> None:
    """`make deploy TARGET=mcu` on the same stages (cache hits): int8 C code, bit-exact."""
    from pipeline.deploy import deploy

    root = keras3_flow["root"]
    outcome = deploy(keras3_flow["config"], "mcu", build_dir=root / "build",
                     dist_dir=root / "dist", echo=lambda _: None)
    assert_follows_schemas(outcome.bundle)
    report = outcome.report
    assert report["extra"]["readiness"]["ready"] is True
    assert report["extra"]["bit_exactness"]["mismatches"] == 0
    assert report["accuracy"]["top1"] == report["accuracy"]["reference_top1"]


@pytest.mark.slow
def test_a_file_teacher_is_compressed_directly_without_a_student(
        tmp_path: Path, unit_model: dict[str, Any]) -> None:
    from pipeline.deploy import deploy
    from pipeline.runner import Runner

    config = _flow_config(unit_model["path"], "data.normalisation=unit",
                          "prune.source=teacher", "prune.ratio=0.3")
    run = Runner(config, tmp_path / "build", echo=lambda _: None).run()
    assert list(run.outcomes) == ["teacher", "pruned", "export", "validate"]
    pruned = run.record("pruned")
    assert pruned["source"] == "teacher" and pruned["macs_after"] < pruned["macs_before"]
    assert pruned["params_before"] == run.record("teacher")["params"]
    assert pruned["model"] == "file:…/unit_pixels.keras"  # the file's name, not its folders
    assert run.record("validate")["artifacts"]
    # ... and shipped: the bundle's metrics have a teacher and a pruned model, no student
    outcome = deploy(config, "host", build_dir=tmp_path / "build", dist_dir=tmp_path / "dist",
                     echo=lambda _: None)
    assert_follows_schemas(outcome.bundle)
    metrics = json.loads((outcome.bundle / "manifest.json").read_text())["metrics"]
    assert "student" not in metrics and metrics["pruned"]["source"] == "teacher"
    assert outcome.report["accuracy"]["top1"] == metrics["artifacts"]["model_int8.tflite"][
        "bundle_top1"]


def test_a_file_teacher_near_chance_says_which_setting_to_check(
        tmp_path: Path, raw_model: dict[str, Any]) -> None:
    """The 0..255 model fed the pipeline's own 0..1 inputs scores about chance."""
    from pipeline.runner import Runner

    lines: list[str] = []
    config = _flow_config(raw_model["path"])  # data.normalisation left as the dataset's
    run = Runner(config, tmp_path / "build", echo=lines.append).run(until="teacher")
    assert run.record("teacher")["top1"] < 0.19
    warning = next(line for line in lines if line.startswith("warning:"))
    assert "near chance (10.0% for 10 classes)" in warning
    assert 'check data.normalisation (now "dataset")' in warning and '"raw"' in warning


@pytest.mark.slow
def test_a_file_teacher_is_fine_tuned_only_when_asked(
        tmp_path: Path, unit_model: dict[str, Any]) -> None:
    from pipeline.runner import Runner

    config = _flow_config(unit_model["path"], "data.normalisation=unit",
                          "teacher.finetune_epochs=1")
    teacher = Runner(config, tmp_path / "build", echo=lambda _: None).run(
        until="teacher").record("teacher")
    assert teacher["epochs_run"] == 1 and teacher["distribute"]["strategy"] == "default"
    assert teacher["top1_as_saved"] == pytest.approx(unit_model["top1"], abs=0.002)
    assert len(teacher["history"]["loss"]) == 1  # one epoch more on the labels


def test_a_file_student_starts_from_its_weights_or_from_scratch(
        unit_model: dict[str, Any], mnist: Dataset) -> None:
    from pipeline.stages.train import model_for

    saved = StudentConfig(model=f"file:{unit_model['path']}")
    scratch = StudentConfig(model=f"file:{unit_model['path']}", init="scratch")
    kept, fresh = model_for(saved, mnist, seed=0), model_for(scratch, mnist, seed=0)
    assert kept.file["rebuilt"] and fresh.file["init"] == "scratch"
    kept_weights, fresh_weights = kept.model.get_weights(), fresh.model.get_weights()
    assert [w.shape for w in kept_weights] == [w.shape for w in fresh_weights]
    assert not np.allclose(kept_weights[0], fresh_weights[0])
    keras = _keras3()
    original = keras.saving.load_model(unit_model["path"])
    np.testing.assert_array_equal(kept_weights[0], original.get_weights()[0])


@pytest.mark.slow
def test_a_file_student_is_distilled_from_a_file_teacher(
        tmp_path: Path, unit_model: dict[str, Any]) -> None:
    from pipeline.runner import Runner

    config = _flow_config(unit_model["path"], "data.normalisation=unit", "student.epochs=1",
                          f"student.model=file:{unit_model['path']}")
    run = Runner(config, tmp_path / "build", echo=lambda _: None).run(until="student")
    student = run.record("student")
    assert student["model"] == "file:…/unit_pixels.keras" and student["epochs_run"] == 1
    assert student["file"]["sha256"] == run.record("teacher")["file"]["sha256"]
    assert student["top1"] > 0.5  # trained on from the file's weights


@pytest.mark.slow
def test_a_trusted_lambda_teacher_is_loaded_by_every_stage(tmp_path: Path) -> None:
    """With the trust flag the run loads its own entries with the Lambda too (the student
    stage reads the teacher's)."""
    from pipeline.runner import Runner

    _tf_keras_model(with_lambda=True).save(tmp_path / "lambda.h5")
    _tf_keras_model().save(tmp_path / "student.h5")  # the zoo students need larger images
    config = load_config(overrides=[
        "data.name=digits", "student.epochs=1", f"teacher.model=file:{tmp_path / 'lambda.h5'}",
        "teacher.trust_model_code=true", f"student.model=file:{tmp_path / 'student.h5'}"])
    run = Runner(config, tmp_path / "build", echo=lambda _: None).run(until="student")
    assert run.record("teacher")["file"]["format"] == "h5"
    assert run.record("student")["epochs_run"] == 1


# -- cache keys ---------------------------------------------------------------------------


def test_the_cache_key_is_the_files_contents_not_its_path(tmp_path: Path) -> None:
    from pipeline.runner import Runner

    data = _digits()
    _tf_keras_model().save(tmp_path / "a.h5")
    shutil.copy(tmp_path / "a.h5", tmp_path / "moved.h5")

    def keys(path: Path, *settings: str) -> dict[str, str]:
        config = load_config(overrides=["data.name=digits", f"teacher.model=file:{path}",
                                        *settings])
        runner = Runner(config, tmp_path / "build", echo=lambda _: None)
        found: dict[str, str] = {}
        for stage in runner.stages:
            found[stage.name] = runner.stage_key(stage, data, found)
        return found

    original = keys(tmp_path / "a.h5")
    assert keys(tmp_path / "moved.h5") == original  # the same file elsewhere: cache hits
    assert keys(tmp_path / "a.h5", "teacher.epochs=3") == original  # read by zoo teachers only
    assert keys(tmp_path / "a.h5", "teacher.finetune_epochs=2")["teacher"] != original["teacher"]
    model = _tf_keras_model()
    model.layers[-1].set_weights([w + 1.0 for w in model.layers[-1].get_weights()])
    model.save(tmp_path / "a.h5")  # changed in place
    changed = keys(tmp_path / "a.h5")
    assert all(changed[name] != original[name] for name in original)


# -- config and input conventions ---------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    (["teacher.finetune_epochs=2"], r"teacher\.finetune_epochs fine-tunes a file teacher"),
    (["student.init=file"], r'student\.init = "file" starts from a file\'s weights'),
    (["teacher.model=file:"], r"teacher\.model = 'file:' names no file"),
    (["data.mean=120"], r'data\.mean is read only by data\.normalisation = "mean_std"'),
    (["data.normalisation=mean_std", "data.mean=120"],
     r'needs data\.mean and data\.std.*ImageNet'),
    (["data.normalisation=mean_std", "data.mean=1", "data.std=0"], r"data\.std = \[0\.0\]"),
    (["data.normalisation=other"], r"data\.normalisation = 'other' is not allowed"),
    (["data.normalisation=mean_std", "data.mean=a,b", "data.std=1"],
     r"data\.mean = \['a', 'b'\] has the wrong type; expected a list of numbers"),
])
def test_file_model_and_input_settings_are_checked(settings: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=settings)


def test_an_unknown_zoo_name_is_still_refused_with_the_list() -> None:
    from pipeline.runner import check_model_names

    with pytest.raises(ConfigError, match=r"teacher\.model = 'resnet_nope' is not in the model "
                                          r"zoo; expected one of .*seed_teacher.*, or file:PATH"):
        check_model_names(load_config(overrides=["teacher.model=resnet_nope"]))


def test_the_study_refuses_a_file_student() -> None:
    from pipeline.study.arms import refuse_file_student

    with pytest.raises(ConfigError, match=r"sizes the student by student\.width"):
        refuse_file_student(load_config(overrides=["student.model=file:m.keras"]))


def test_every_normalisation_has_its_constants() -> None:
    assert tuple(INPUT_CONVENTIONS) == NORMALISATIONS


def test_input_conventions_are_one_formula_with_other_constants() -> None:
    """sklearn's digits run 0..16: "raw" means 0..255 pixels, "unit" 0..1."""
    default = load_dataset(DataConfig(name="digits"))
    unit = load_dataset(DataConfig(name="digits", normalisation="unit"))
    raw = load_dataset(DataConfig(name="digits", normalisation="raw"))
    mean_std = load_dataset(DataConfig(name="digits", normalisation="mean_std", mean=(127.5,),
                                       std=(127.5,)))
    assert np.array_equal(unit.x_train, default.x_train)
    assert unit.fingerprint == default.fingerprint  # the same arrays keep their cache keys
    assert raw.fingerprint != default.fingerprint != mean_std.fingerprint
    assert raw.normalisation["std"] == [16 / 255] and raw.x_train.max() == pytest.approx(255.0)
    np.testing.assert_allclose(mean_std.x_train, default.x_train * 2 - 1, atol=1e-6)
    assert mean_std.normalisation["mean"] == [8.0] and mean_std.normalisation["std"] == [8.0]
    with pytest.raises(DataError, match=r"data\.mean has 3 values and the images have 1 "
                                        r"channel"):
        load_dataset(DataConfig(name="digits", normalisation="mean_std", mean=(1.0, 2.0, 3.0),
                                std=(1.0,)))


def test_a_student_the_pruner_cannot_take_is_refused_before_any_training(
        tmp_path: Path) -> None:
    """A LocallyConnected2D has no channel rule: the run stops, naming it, before the
    teacher's training, not after the teacher and the student have trained."""
    from devices.errors import PruningError
    from devices.tf_env import keras
    from pipeline.runner import Runner

    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.LocallyConnected2D(4, 3, name="unshared")(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(hidden))
    path = tmp_path / "locally_connected.keras"
    keras.Model(inputs, outputs).save(path)
    config = load_config(overrides=[*TINY, f"student.model=file:{path}", "student.init=scratch"])
    with pytest.raises(PruningError, match=r"'unshared' \(LocallyConnected2D\)"):
        Runner(config, tmp_path / "build", echo=lambda _: None).run()
    assert not (tmp_path / "build" / "cache" / "teacher").exists()
