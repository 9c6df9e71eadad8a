"""Every keras.applications convolutional family, random weights at a small input, through
the dead-channel test: `prune_channels(model, "l1", ratio=0.3)` picks 30% of each prunable
group's channels and prunes them; the same channels are then made dead in the original
(every reader's weights for them zeroed, which changes its outputs), and the pruned model's
outputs equal the original's. One surgery per family (Keras' rebuild of the narrower model
is most of the time); built offline (`weights=None`), logits out (`classifier_activation=
None`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from devices.tf_env import keras
from pipeline.pruning import analyse, prune_channels
from tests.float_tolerance import assert_float32_close

APPS = keras.applications
SMALL = {"weights": None, "classes": 5, "classifier_activation": None}
SQUARE_32 = (32, 32, 3)

FAMILIES: dict[str, Callable[[], Any]] = {
    "VGG16": lambda: APPS.VGG16(input_shape=SQUARE_32, **SMALL),
    "ResNet50": lambda: APPS.ResNet50(input_shape=SQUARE_32, **SMALL),
    "ResNet50V2": lambda: APPS.ResNet50V2(input_shape=SQUARE_32, **SMALL),
    "InceptionV3": lambda: APPS.InceptionV3(input_shape=(75, 75, 3), **SMALL),  # its minimum
    "Xception": lambda: APPS.Xception(input_shape=(71, 71, 3), **SMALL),  # its minimum
    "MobileNet": lambda: APPS.MobileNet(input_shape=SQUARE_32, alpha=0.25, **SMALL),
    "MobileNetV2": lambda: APPS.MobileNetV2(input_shape=SQUARE_32, alpha=0.35, **SMALL),
    "MobileNetV3Small": lambda: APPS.MobileNetV3Small(input_shape=SQUARE_32, alpha=0.75,
                                                      **SMALL),
    "MobileNetV3Large": lambda: APPS.MobileNetV3Large(input_shape=SQUARE_32, alpha=0.75,
                                                      **SMALL),
    "DenseNet121": lambda: APPS.DenseNet121(input_shape=SQUARE_32, **SMALL),
    "NASNetMobile": lambda: APPS.NASNetMobile(input_shape=SQUARE_32, **SMALL),
    "EfficientNetB0": lambda: APPS.EfficientNetB0(input_shape=SQUARE_32, **SMALL),
    "EfficientNetV2B0": lambda: APPS.EfficientNetV2B0(input_shape=SQUARE_32, **SMALL),
    "ConvNeXtTiny": lambda: APPS.ConvNeXtTiny(input_shape=SQUARE_32, **SMALL),
}
SLOWEST = {"InceptionV3", "DenseNet121", "NASNetMobile"}  # 5 to 12 s each on 2 cores

# What stays whole, and why, beyond the logits (README: "Which models prune")
FIXED_BECAUSE = {
    # the residual stream: every block normalises it across channels (LayerNormalization);
    # only the 4x MLP expansions inside the blocks are pruned
    "ConvNeXtTiny": ("normalises across its channels (each one's mean and variance)",),
}


def _family_params() -> list[Any]:
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOWEST else name
            for name in FAMILIES]


@pytest.mark.parametrize("family", _family_params())
def test_family_prunes_dead_channels_exactly(family: str, weight_tools: Any) -> None:
    model = FAMILIES[family]()
    weight_tools.randomise_vectors(model, seed=1)
    inputs = weight_tools.sample_inputs(model, seed=2)
    original = model(inputs, training=False).numpy()

    pruned, plan = prune_channels(model, "l1", ratio=0.3)
    graph = analyse(model)
    keep = {decision.index: np.asarray(decision.kept) for decision in plan.decisions}
    weight_tools.kill_all_but(model, graph, keep)
    with_dead_channels = model(inputs, training=False).numpy()

    assert len(keep) == len(graph.prunable_groups()) and not plan.skipped
    assert all(decision.channels_after <= 0.75 * decision.channels_before
               for decision in plan.decisions if decision.channels_before >= 8)
    scale = float(np.max(np.abs(original)))
    assert np.max(np.abs(with_dead_channels - original)) > 1e-3 * scale  # they were alive
    assert_float32_close(pruned(inputs, training=False).numpy(), with_dead_channels)
    assert pruned.count_params() < 0.8 * model.count_params()
    for fixed in graph.fixed_groups():
        allowed = ("reaches the model's output", *FIXED_BECAUSE.get(family, ()))
        assert fixed.reason.endswith(allowed), (fixed.producers, fixed.reason)
