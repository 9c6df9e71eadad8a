"""TFMOT comparison modes: the expected sparsity in a dense model of unchanged size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

import models
from devices.errors import PruningError
from devices.tf_env import tf
from pipeline.pruning import magnitude


@pytest.fixture(scope="module")
def ds_model() -> Any:
    return models.create_model("ds_student", (16, 16, 1), 4, width=0.5)


def test_magnitude_one_shot_reaches_the_target_per_layer(ds_model: Any) -> None:
    mode = magnitude.get_mode("magnitude")
    targets = magnitude.target_sparsities(ds_model, mode, ratio=0.6)
    pruned = magnitude.prune_one_shot(ds_model, mode, targets)
    stats = magnitude.sparsity_stats(pruned, mode)
    # TFMOT prunes Conv2D and Dense kernels; depthwise kernels stay dense
    assert set(stats.per_layer) == {"stem_conv", "block1_pw_conv", "block2_pw_conv",
                                    "block3_pw_conv", "logits"}
    assert np.all(pruned.get_layer("block1_dw").get_weights()[0] != 0)
    for name, sparsity in stats.per_layer.items():
        assert sparsity == pytest.approx(0.6, abs=0.03), name
    assert pruned.count_params() == ds_model.count_params()
    assert magnitude.sparsity_stats(ds_model, mode).sparsity == 0.0  # original untouched
    # the zeros are the smallest weights of each kernel
    original = np.abs(ds_model.get_layer("block2_pw_conv").get_weights()[0])
    kept = pruned.get_layer("block2_pw_conv").get_weights()[0] != 0
    assert original[kept].min() >= original[~kept].max()


def test_m_by_n_one_shot_is_two_of_four(ds_model: Any) -> None:
    mode = magnitude.get_mode("m_by_n")
    targets = magnitude.target_sparsities(ds_model, mode, ratio=0.9, threshold=0.5)
    assert set(targets.values()) == {0.5}  # the pattern decides, not ratio or threshold
    pruned = magnitude.prune_one_shot(ds_model, mode, targets)
    for name in ("block1_pw_conv", "block2_pw_conv", "logits"):
        kernel = pruned.get_layer(name).get_weights()[0]
        assert pruning_utils.is_pruned_m_by_n(tf.constant(kernel), (2, 4)), name
        assert np.mean(kernel == 0) == pytest.approx(0.5)
    assert np.all(pruned.get_layer("block1_dw").get_weights()[0] != 0)  # not pruned by TFMOT
    original = tf.constant(ds_model.get_layer("logits").get_weights()[0])
    assert not pruning_utils.is_pruned_m_by_n(original)


def test_threshold_zeroes_each_kernel_under_beta_times_its_own_max(ds_model: Any) -> None:
    """The seed article's rule per layer: |w| < beta * max|w| of that kernel, whatever share
    of the kernel that is (it differs between layers)."""
    mode, beta = magnitude.get_mode("magnitude"), 0.3
    targets = magnitude.target_sparsities(ds_model, mode, ratio=0.9, threshold=beta)
    pruned = magnitude.prune_one_shot(ds_model, mode, targets)
    for name in targets:
        original = ds_model.get_layer(name).get_weights()[0]
        below = np.abs(original) < beta * np.abs(original).max()
        assert targets[name] == pytest.approx(below.mean())
        kept = pruned.get_layer(name).get_weights()[0] != 0
        # ties at the boundary aside, exactly the weights under the threshold are zero
        assert np.mean(kept == ~below) > 0.995, name
    assert len(set(round(value, 3) for value in targets.values())) > 1
    assert max(targets.values()) < 0.9  # ratio ignored


def test_polynomial_schedule_ends_on_an_update_step() -> None:
    schedule = magnitude.polynomial_schedule(400)(0.7)
    config = schedule.get_config()["config"]
    assert config["end_step"] % config["frequency"] == 0
    assert config["end_step"] <= 300
    assert float(schedule(config["end_step"])[1]) == pytest.approx(0.7)


def test_gzip_bytes_sees_zeros(tmp_path: Path) -> None:
    noise = tmp_path / "noise.bin"
    noise.write_bytes(np.random.default_rng(0).bytes(20_000))
    zeros = tmp_path / "zeros.bin"
    zeros.write_bytes(bytes(20_000))
    assert magnitude.gzip_bytes(noise) > 19_000
    assert magnitude.gzip_bytes(zeros) < 200


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(PruningError, match="unknown sparsity mode 'block'"):
        magnitude.get_mode("block")
