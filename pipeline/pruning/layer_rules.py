"""One rule per layer type, in one table: how the layer maps channels, how its weights and
config follow kept channels, which weight and axis hold its output channels, which config
key its width. Every part of the pruner asks this table (graph analysis, surgery, criteria,
the prune stage's width record, TFMOT's magnitude modes), always by exact type: a subclass
may lay its weights out differently (Conv2DTranspose subclasses Conv2D with its kernel axes
swapped), so it needs its own entry, and a type without one is refused by name.

A custom layer is one entry (Torch-Pruning's `customized_pruners` is the model):

    from pipeline.pruning import register_layer_rule, per_channel_rule, producer_rule
    register_layer_rule(MyChannelScale, per_channel_rule())      # one weight per channel
    register_layer_rule(MyConv, producer_rule(width_key="filters"))  # kernel (..., in, out)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.errors import PruningError
from devices.tf_env import keras
from pipeline.pruning.channel_mappings import (
    ChannelMapping,
    carries,
    concatenates,
    convolves,
    couples,
    depthwise,
    flattens,
    merges,
    permutes,
    produces,
    rearranges,
    reshapes,
)
from pipeline.pruning.layouts import Positions
from pipeline.pruning.tf_ops import maps_tf_op
from pipeline.pruning.weight_slicers import (
    ConfigNarrower,
    InputSilencer,
    WeightSlicer,
    keeps_weights,
    narrows_constants,
    narrows_conv,
    narrows_input_shape,
    narrows_reshape,
    sets_width,
    silences_grouped_conv,
    silences_kernel,
    silences_separable,
    slices_depthwise,
    slices_grouped_conv,
    slices_kernel,
    slices_last_axis,
    slices_normalised_axes,
    slices_prelu,
    slices_separable,
)


@dataclass(frozen=True)
class LayerRule:
    """What the pruner knows about one layer type."""

    maps_channels: ChannelMapping
    slice_weights: WeightSlicer = keeps_weights
    narrow_config: ConfigNarrower | None = None  # None: set `width_key`, if any
    kernel: str | None = None  # the weight attribute with one slice per output channel
    output_axis: int = -1  # that weight's output-channel axis
    width_key: str | None = None  # the config key that holds the output width
    silence_inputs: InputSilencer | None = None  # zero what reads given input channels
    convolution: bool = False  # prune.layers = "conv" prunes the channels it produces
    sparsity_kernel: str | None = None  # the weight TFMOT's magnitude pruning zeroes
    walks_into: bool = False  # a nested model: the analysis follows its own layers

    def narrow(self, layer: Any, config: dict[str, Any], inputs: tuple[Positions, ...],
               output: Positions) -> None:
        if self.narrow_config is not None:
            self.narrow_config(layer, config, inputs, output)
        elif self.width_key is not None:
            sets_width(self.width_key)(layer, config, inputs, output)

    def filter_norms(self, layer: Any) -> np.ndarray:
        """L1 norm of each output channel's slice of the kernel."""
        if self.kernel is None:
            raise PruningError(f"layer {layer.name!r} ({type(layer).__name__}) has no kernel "
                               "to score (hint: its rule names none)")
        kernel = np.abs(np.asarray(getattr(layer, self.kernel).numpy()))
        kernel = np.moveaxis(kernel, self.output_axis, -1)
        return kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)


def producer_rule(*, kernel: str = "kernel", input_axis: int = -2, output_axis: int = -1,
                  width_key: str = "filters", convolution: bool = True,
                  sparsity_kernel: str | None = "kernel") -> LayerRule:
    """A layer that reads all its input channels through `kernel` (one axis per input
    channel, one per output channel; later weights, its bias, one entry per output) and
    whose output width is the config's `width_key`."""
    return LayerRule(
        produces, slices_kernel(input_axis, output_axis), kernel=kernel,
        output_axis=output_axis, width_key=width_key,
        silence_inputs=silences_kernel(input_axis), convolution=convolution,
        sparsity_kernel=sparsity_kernel,
    )


def channelwise_rule() -> LayerRule:
    """Channel i in, channel i out, and no weight or config entry per channel."""
    return LayerRule(carries)


def per_channel_rule(width_key: str | None = None) -> LayerRule:
    """Channel i in, channel i out, each weight with one entry per channel on its last axis
    (a scalar weight stays); `width_key` if the config names the channel count."""
    return LayerRule(carries, slices_last_axis, width_key=width_key)


def coupling_rule(why: str, axes_attribute: str | None = None) -> LayerRule:
    """Computes across its channels (a softmax, a norm over them): they stay whole."""
    return LayerRule(couples(why, axes_attribute), slices_last_axis)


def barrier_rule(why: str) -> LayerRule:
    """Moves channels where no rule can follow: its inputs and output stay whole."""
    return LayerRule(rearranges(why))


def merge_rule() -> LayerRule:
    """Element-wise over several inputs of the same channels (broadcasting allowed)."""
    return LayerRule(merges)


L = keras.layers
_CONV = LayerRule(
    convolves, slices_grouped_conv, narrows_conv, kernel="kernel",
    width_key="filters", silence_inputs=silences_grouped_conv, convolution=True,
    sparsity_kernel="kernel",
)
_TRANSPOSED_CONV = producer_rule(input_axis=-1, output_axis=-2)  # kernel (..., out, in)
_SEPARABLE_CONV = LayerRule(
    produces, slices_separable, kernel="pointwise_kernel", width_key="filters",
    silence_inputs=silences_separable, convolution=True,
    sparsity_kernel="pointwise_kernel",
)
_DEPTHWISE_CONV = LayerRule(depthwise, slices_depthwise, kernel="depthwise_kernel",
                            output_axis=-2)
_CHANNELWISE = channelwise_rule()

LAYER_RULES: dict[type, LayerRule] = {
    L.Conv1D: _CONV, L.Conv2D: _CONV, L.Conv3D: _CONV,
    L.Conv1DTranspose: _TRANSPOSED_CONV, L.Conv2DTranspose: _TRANSPOSED_CONV,
    L.Conv3DTranspose: _TRANSPOSED_CONV,
    L.SeparableConv1D: _SEPARABLE_CONV, L.SeparableConv2D: _SEPARABLE_CONV,
    L.DepthwiseConv1D: _DEPTHWISE_CONV, L.DepthwiseConv2D: _DEPTHWISE_CONV,
    L.Dense: producer_rule(input_axis=0, width_key="units", convolution=False),
    L.BatchNormalization: LayerRule(carries, slices_normalised_axes),
    L.LayerNormalization: LayerRule(
        couples("normalises across its channels (each one's mean and variance)", "axis"),
        slices_normalised_axes),
    L.GroupNormalization: coupling_rule("normalises groups of channels together"),
    L.UnitNormalization: coupling_rule("normalises across its channels", "axis"),
    L.Normalization: LayerRule(carries, slices_normalised_axes,
                               narrows_constants("mean", "variance",
                                                         axes_attribute="axis")),
    L.Rescaling: LayerRule(carries, narrow_config=narrows_constants("scale",
                                                                               "offset")),
    L.Softmax: coupling_rule("applies softmax across channels", "axis"),
    L.PReLU: LayerRule(carries, slices_prelu),
    **dict.fromkeys((
        L.ReLU, L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.Activation,
        L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
        L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
        L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
        L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
        L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
        L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
        L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
        L.Cropping1D, L.Cropping2D, L.Cropping3D,
        L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
    ), _CHANNELWISE),
    L.Flatten: LayerRule(flattens),
    L.Reshape: LayerRule(reshapes, narrow_config=narrows_reshape),
    L.Permute: LayerRule(permutes),
    **dict.fromkeys((L.Add, L.Subtract, L.Multiply, L.Maximum, L.Minimum, L.Average),
                    merge_rule()),
    L.Concatenate: LayerRule(concatenates),
    keras.Sequential: LayerRule(rearranges("is a nested model"), walks_into=True),
    # a nested model's input layer: its shape follows the channels that feed it
    L.InputLayer: LayerRule(carries, narrow_config=narrows_input_shape),
}


def _keras_class(module: str, name: str) -> type | None:
    """A tf_keras class outside its public API (None if this version has no such class)."""
    try:
        return getattr(importlib.import_module(f"{keras.__name__}.src.{module}"), name)
    except (ImportError, AttributeError):
        return None


_PRIVATE_RULES: dict[tuple[str, str], LayerRule] = {
    ("engine.functional", "Functional"): LayerRule(rearranges("is a nested model"),
                                                   walks_into=True),
    ("layers.core.tf_op_layer", "TFOpLambda"): LayerRule(maps_tf_op),
    ("layers.core.tf_op_layer", "SlicingOpLambda"): barrier_rule("slices its input"),
    # keras.applications' own layers: ConvNeXt's per-channel scale and drop path,
    # InceptionResNetV2's scaled residual sum
    ("applications.convnext", "LayerScale"): per_channel_rule(width_key="projection_dim"),
    ("applications.convnext", "StochasticDepth"): _CHANNELWISE,  # per-sample drop path
    ("applications.inception_resnet_v2", "CustomScaleLayer"): merge_rule(),
}
for (module_name, class_name), private_rule in _PRIVATE_RULES.items():
    if (layer_class := _keras_class(module_name, class_name)) is not None:
        LAYER_RULES[layer_class] = private_rule


def register_layer_rule(layer_type: type, rule: LayerRule) -> LayerRule:
    """Teach the pruner a layer type (or replace a built-in rule); returns the rule."""
    LAYER_RULES[layer_type] = rule
    return rule


def find_rule(layer: Any) -> LayerRule | None:
    """The rule for exactly this layer's type, or None (for code that may skip a layer)."""
    return LAYER_RULES.get(type(layer))


def rule_for(layer: Any) -> LayerRule:
    rule = find_rule(layer)
    if rule is not None:
        return rule
    raise PruningError(
        f"cannot prune through layer {layer.name!r} ({type(layer).__name__}): no channel rule "
        f"for this layer type (rules are looked up by exact type; {len(LAYER_RULES)} types "
        "have one, pipeline.pruning.layer_rules.LAYER_RULES) (hint: prune.method = "
        "\"magnitude\" works on any model, or register one: pipeline.pruning."
        "register_layer_rule(YourLayer, per_channel_rule()) or a LayerRule of your own)"
    )
