"""The prune stage end to end on a few hundred real digits and tiny trained models."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import models
from devices.errors import PruningError
from devices.tf_env import keras
from pipeline.config import PruneConfig, StudentConfig
from pipeline.pruning import prune_channels
from pipeline.stages.prune import run_prune
from pipeline.training import train_classifier, train_distilled
from tests.float_tolerance import assert_float32_close

pytestmark = pytest.mark.slow  # trains tiny models on a few hundred digits

TRAINING = StudentConfig(epochs=2, batch_size=32, early_stopping_patience=0)


@pytest.fixture(scope="session")
def trained(tiny_digits: Any) -> dict[str, Any]:
    """A small teacher and a batch-norm student distilled from it (2 epochs each)."""
    teacher = models.create_model("seed_teacher", tiny_digits.input_shape, 10, width=0.5)
    train_classifier(teacher, tiny_digits, TRAINING)
    student = models.create_model("seed_student", tiny_digits.input_shape, 10, batch_norm=True)
    train_distilled(student, teacher, tiny_digits, TRAINING)
    return {"teacher": teacher, "student": student, "data": tiny_digits}


def _run(trained: dict[str, Any], out_dir: Path, **options: Any) -> dict[str, Any]:
    result = run_prune(
        PruneConfig(**options), student=trained["student"], teacher=trained["teacher"],
        data=trained["data"], out_dir=out_dir, training=TRAINING,
    )
    return result.to_dict()


def _load(out_dir: Path) -> Any:
    return keras.models.load_model(out_dir / "model.keras", compile=False)


def _kernel_correlation(first: Any, second: Any, layer: str) -> float:
    a = first.get_layer(layer).get_weights()[0].ravel()
    b = second.get_layer(layer).get_weights()[0].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def test_none_passes_the_student_on(trained: dict[str, Any], tmp_path: Path) -> None:
    record = _run(trained, tmp_path, method="none")
    assert record["note"].startswith("prune.method = none")
    assert record["params_after"] == record["params_before"] == trained["student"].count_params()
    assert record["top1"] == record["top1_before_finetune"] == record["top1_before_pruning"]
    x = trained["data"].x_test[:16]
    assert_float32_close(_load(tmp_path)(x).numpy(), trained["student"](x).numpy())


def test_channel_half_ratio_shrinks_the_dense_model(trained: dict[str, Any],
                                                    tmp_path: Path) -> None:
    record = _run(trained, tmp_path, ratio=0.5, finetune_epochs=0)
    assert record["mac_ratio"] <= 0.35
    assert record["layer_channels"]["block2_conv"] == {"before": 32, "after": 16}
    assert record["layer_channels"]["logits"] == {"before": 10, "after": 10}
    assert record["bytes_after"] < 0.6 * record["bytes_before"]
    assert record["params"] == record["params_after"] < record["params_before"] / 3
    # no retraining: only the BatchNorm statistics were re-estimated after surgery
    assert record["finetune"] is None and record["finetune_epochs"] == 0
    assert record["top1"] == record["top1_after_bn_recalibration"]
    assert 0.0 <= record["top1_before_finetune"] <= 1.0
    saved = _load(tmp_path)
    assert saved.count_params() == record["params_after"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]  # no temp left
    expected, _ = prune_channels(trained["student"], "l1", ratio=0.5)
    for name in ("block1_conv", "block3_conv", "fc1", "logits"):
        for got, want in zip(saved.get_layer(name).get_weights(),
                             expected.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)
    recalibrated = saved.get_layer("block2_bn").moving_mean.numpy()
    assert not np.allclose(recalibrated, expected.get_layer("block2_bn").moving_mean.numpy())


@pytest.mark.parametrize(("strategy", "continues_from_pruned"), [
    ("finetune", True), ("kd", True), ("retrain", False),
])
def test_each_retraining_strategy_trains(trained: dict[str, Any], tmp_path: Path,
                                         strategy: str, continues_from_pruned: bool) -> None:
    record = _run(trained, tmp_path, finetune=strategy, finetune_epochs=1)
    assert record["finetune"] == strategy
    assert record["history"]["epochs_run"] == 1
    pruned, _ = prune_channels(trained["student"], "l1", ratio=0.5)
    retrained = _load(tmp_path)
    assert not np.array_equal(retrained.get_layer("block2_conv").get_weights()[0],
                              pruned.get_layer("block2_conv").get_weights()[0])
    correlation = _kernel_correlation(retrained, pruned, "block2_conv")
    if continues_from_pruned:
        assert correlation > 0.8
    else:
        assert abs(correlation) < 0.3  # fresh initial weights


def test_kd_without_teacher_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(PruningError, match="kd needs the teacher"):
        run_prune(PruneConfig(finetune="kd", finetune_epochs=1), student=trained["student"],
                  teacher=None, data=trained["data"], out_dir=tmp_path, training=TRAINING)


def test_iterative_rounds_reach_the_target(trained: dict[str, Any], tmp_path: Path) -> None:
    record = _run(trained, tmp_path, iterations=2, finetune="finetune", finetune_epochs=1,
                  min_channels=1)
    rounds = record["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert rounds[0]["ratio"] == pytest.approx(0.25)
    assert rounds[1]["ratio"] == pytest.approx(1 / 3)
    assert rounds[0]["channels"] == 12 + 24 + 24 + 24
    assert record["layer_channels"]["block1_conv"] == {"before": 16, "after": 8}
    assert record["layer_channels"]["fc1"] == {"before": 32, "after": 16}


def test_apoz_and_round_to_in_the_stage(trained: dict[str, Any], tmp_path: Path) -> None:
    record = _run(trained, tmp_path, criterion="apoz", ratio=0.7, round_to=8,
                  finetune_epochs=0, sample_size=64)
    # 16 * 0.3 -> 5 kept -> 8; 32 * 0.3 -> 10 kept -> 16
    assert record["layer_channels"]["block1_conv"]["after"] == 8
    assert record["layer_channels"]["block3_conv"]["after"] == 16
    assert record["plan"]["criterion"] == "apoz"


def test_bn_scale_with_slimming_penalty(trained: dict[str, Any], tmp_path: Path) -> None:
    record = _run(trained, tmp_path, criterion="bn_scale", slimming_penalty=1e-3,
                  finetune="finetune", finetune_epochs=1)
    assert record["plan"]["slimming"]["batch_norms"] == 3
    assert record["plan"]["skipped"] == ["fc1"]  # no BatchNorm after the dense layer
    assert record["layer_channels"]["block2_conv"] == {"before": 32, "after": 16}
    assert record["layer_channels"]["fc1"] == {"before": 32, "after": 32}
    assert "slimming" in record["note"]


def test_magnitude_keeps_the_dense_size_and_gains_only_gzip(trained: dict[str, Any],
                                                            tmp_path: Path) -> None:
    record = _run(trained, tmp_path, method="magnitude", ratio=0.7, finetune="finetune",
                  finetune_epochs=1)
    assert record["params_after"] == record["params_before"]
    assert record["macs_after"] == record["macs_before"]
    assert abs(record["bytes_after"] - record["bytes_before"]) < 0.01 * record["bytes_before"]
    assert record["gzip_bytes_after"] < 0.75 * record["gzip_bytes_before"]
    assert record["sparsity"] == pytest.approx(0.7, abs=0.01)
    assert record["sparsity_before_finetune"] == pytest.approx(0.7, abs=0.01)
    kernel = _load(tmp_path).get_layer("block2_conv").get_weights()[0]
    assert np.mean(kernel == 0) == pytest.approx(0.7, abs=0.01)


def test_magnitude_threshold_prunes_each_layer_under_beta_times_its_max(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    """prune.threshold drives magnitude pruning (it was ignored): each kernel loses the share
    of its weights under beta * its own max|w|, measured on the trained student."""
    beta = 0.2
    student = trained["student"]
    expected = {
        name: float(np.mean(np.abs(k := student.get_layer(name).get_weights()[0])
                            < beta * np.abs(k).max()))
        for name in ("block1_conv", "block2_conv", "fc1")
    }
    record = _run(trained, tmp_path, method="magnitude", ratio=0.9, threshold=beta,
                  finetune_epochs=0)
    assert "prune.ratio ignored" in record["note"]
    pruned = _load(tmp_path)
    for name, share in expected.items():
        assert np.mean(pruned.get_layer(name).get_weights()[0] == 0) == pytest.approx(
            share, abs=0.01), name
    assert record["sparsity"] < 0.9


def test_m_by_n_stage_gives_two_of_four(trained: dict[str, Any], tmp_path: Path) -> None:
    record = _run(trained, tmp_path, method="m_by_n", finetune="kd", finetune_epochs=1)
    assert record["params_after"] == record["params_before"]
    assert "prune.ratio and prune.threshold ignored" in record["note"]
    kernel = _load(tmp_path).get_layer("block2_conv").get_weights()[0]  # 16 inputs: 4 blocks
    blocks = np.moveaxis(kernel, 2, -1).reshape(-1, 4)
    assert np.all(np.count_nonzero(blocks, axis=1) <= 2)
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.01)


def test_unknown_method_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    config = dataclasses.replace(PruneConfig(), method="lottery")
    with pytest.raises(PruningError, match="unknown prune.method 'lottery'"):
        run_prune(config, student=trained["student"], teacher=None, data=trained["data"],
                  out_dir=tmp_path)


def test_threshold_selects_by_the_criterion_rule(trained: dict[str, Any],
                                                 tmp_path: Path) -> None:
    """threshold > 0 replaces the ratio: l1's rule keeps filters >= beta * the layer's max."""
    record = _run(trained, tmp_path, threshold=0.999, min_channels=3, finetune_epochs=0)
    assert record["plan"]["threshold"] == 0.999
    assert record["plan"]["ratio"] is None
    for name in ("block1_conv", "block2_conv", "block3_conv", "fc1"):
        assert record["layer_channels"][name]["after"] == 3  # only the max passes; floor 3


@pytest.mark.parametrize("source", ["student", "teacher"])
def test_runner_entry_prunes_the_configured_source(trained: dict[str, Any], tmp_path: Path,
                                                   source: str) -> None:
    from pipeline.cache import CacheEntry
    from pipeline.config import build_config
    from pipeline.stage import StageContext
    from pipeline.stages.prune import STAGE

    upstream = {}
    for name in ("student", "teacher"):
        folder = tmp_path / name
        folder.mkdir()
        trained[name].save(folder / "model.keras")
        upstream[name] = CacheEntry(name, "key", folder, {})
    config = build_config({"prune": {"source": source, "finetune_epochs": 0}})
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    record = STAGE.run(StageContext(config, trained["data"], out_dir, upstream))
    assert record["source"] == source
    pruned_model = trained[source]
    assert record["params_before"] == pruned_model.count_params()
    assert record["params_after"] < pruned_model.count_params() / 2
    assert (out_dir / "model.keras").is_file()
    assert "macs=" in STAGE.headline(record)
