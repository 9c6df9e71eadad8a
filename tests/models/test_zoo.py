import numpy as np
import pytest

from devices.errors import ModelError
from devices.tf_env import keras
from models import create_model, list_models
from models.complexity import count_macs, count_params


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("input_shape", [(28, 28, 1), (32, 32, 3)])
def test_every_model_builds_returns_logits_and_trains_a_step(name: str, input_shape: tuple) -> None:
    model = create_model(name, input_shape, 10)
    assert model.output_shape == (None, 10)
    assert not any(
        isinstance(layer, keras.layers.Softmax) or getattr(layer, "activation", None)
        is keras.activations.softmax for layer in model.layers
    )
    rng = np.random.default_rng(0)
    x = rng.random((8, *input_shape), dtype=np.float32)
    y = np.arange(8) % 10
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    logits = model.predict(x, verbose=0)
    assert not np.allclose(logits.sum(axis=-1), 1.0)  # raw logits, not probabilities


def test_seed_models_match_the_article() -> None:
    teacher = create_model("seed_teacher", (28, 28, 1), 10)
    student = create_model("seed_student", (28, 28, 1), 10)
    def conv_filters(model: keras.Model) -> list[int]:
        return [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]

    def dense_units(model: keras.Model) -> list[int]:
        return [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]

    assert conv_filters(teacher) == [32, 64, 64] and dense_units(teacher) == [64, 10]
    assert conv_filters(student) == [16, 32, 32] and dense_units(student) == [32, 10]
    assert count_params(teacher) == 93_322 and count_params(student) == 23_626


def test_resnet8_is_the_mlperf_tiny_network() -> None:
    model = create_model("resnet8", (32, 32, 3), 10)
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 3
    assert count_macs(model) == 12_501_632  # MLPerf Tiny quotes 12.5 M MACs
    half = create_model("resnet8", (32, 32, 3), 10, width=0.5)
    assert count_macs(half) < 0.3 * count_macs(model)


def test_ds_student_is_depthwise_separable() -> None:
    model = create_model("ds_student", (28, 28, 1), 10, width=0.5)
    depthwise = [x for x in model.layers if isinstance(x, keras.layers.DepthwiseConv2D)]
    assert len(depthwise) == 3
    assert [x.filters for x in model.layers if type(x) is keras.layers.Conv2D] == [8, 16, 32, 32]


def test_ds_cifar_fits_the_cifar10_recipe_limits() -> None:
    """configs/cifar10.toml's limits: at most 40k parameters and 6 M MACs; full-resolution
    stem, strides in the depthwise convs, pointwise widths in multiples of 16."""
    model = create_model("ds_cifar", (32, 32, 3), 10)
    assert count_params(model) == 38_282 and count_macs(model) == 4_363_520
    stem = model.get_layer("stem_conv")
    assert stem.strides == (1, 1) and stem.output.shape[1:3] == (32, 32)
    pointwise = [x.filters for x in model.layers if type(x) is keras.layers.Conv2D][1:]
    assert pointwise == [64, 64, 128, 128]
    assert model.get_layer("block3_dw").output.shape[1:3] == (8, 8)


def test_unknown_model_and_bad_shapes() -> None:
    with pytest.raises(ModelError, match="unknown model 'vgg'; expected one of ds_cifar, ds_student"):
        create_model("vgg", (28, 28, 1), 10)
    with pytest.raises(ModelError, match="needs an HWC input shape"):
        create_model("resnet8", (28, 28), 10)
    with pytest.raises(ModelError, match="rejected its options"):
        create_model("resnet8", (28, 28, 1), 10, batch_norm=True)


def test_the_shipped_cifar10_recipe_ships_a_student_inside_its_limits() -> None:
    """configs/cifar10.toml: the artifact is the student itself (no pruning after it), so
    its model at its width must hold the recipe's limits: <= 40k parameters, <= 6 M MACs."""
    from pipeline.config import CONFIG_DIR, load_config

    config = load_config(CONFIG_DIR / "cifar10.toml")
    assert config.prune.method == "none"
    student = create_model(config.student.model, (32, 32, 3), 10, width=config.student.width)
    assert count_params(student) <= 40_000 and count_macs(student) <= 6_000_000
    assert config.overrides_for("host") == {"budget.min_accuracy": "0.8"}
    # the measured recipe (README, "CIFAR-10"): distilled, no label smoothing on either side
    assert config.student.loss == "kd" and config.student.label_smoothing == 0.0
    assert config.teacher.label_smoothing == 0.0
