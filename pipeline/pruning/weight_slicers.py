"""How each kind of layer's weights and config follow its kept channels.

A slicer gets the layer, its weights (in `layer.weights` order), the kept positions of each
input's channel axis and of its output's (None: all kept) and returns the smaller weights;
a narrower edits the layer's config so the rebuilt layer has those shapes; a silencer zeroes
the weights that read given input channels (how the tests make channels dead)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.pruning.channel_mappings import channel_axis_in
from pipeline.pruning.layouts import Positions

WeightSlicer = Callable[[Any, list[np.ndarray], tuple[Positions, ...], Positions],
                        list[np.ndarray]]
ConfigNarrower = Callable[[Any, dict[str, Any], tuple[Positions, ...], Positions], None]
InputSilencer = Callable[[Any, list[np.ndarray], np.ndarray], list[np.ndarray]]


def take(array: np.ndarray, positions: Positions, axis: int) -> np.ndarray:
    return array if positions is None else np.take(array, positions, axis=axis)


def keeps_weights(layer: Any, weights: list[np.ndarray], inputs: tuple[Positions, ...],
                  output: Positions) -> list[np.ndarray]:
    return weights


def keeps_config(layer: Any, config: dict[str, Any], inputs: tuple[Positions, ...],
                 output: Positions) -> None:
    return None


def slices_last_axis(layer: Any, weights: list[np.ndarray], inputs: tuple[Positions, ...],
                     output: Positions) -> list[np.ndarray]:
    """Per-channel weights (BatchNorm, LayerScale): every non-scalar weight along its last
    axis; scalars (a Normalization's count) stay."""
    return [weight if weight.ndim == 0 else take(weight, output, -1) for weight in weights]


def _input_rank(layer: Any) -> int:
    return len(layer.input_shape)


def slices_normalised_axes(layer: Any, weights: list[np.ndarray],
                           inputs: tuple[Positions, ...], output: Positions) -> list[np.ndarray]:
    """BatchNorm, LayerNormalization, Normalization: weights have one entry per channel only
    when the layer's `axis` includes the channel axis."""
    if not channel_axis_in(layer.axis, _input_rank(layer)):
        return weights
    return slices_last_axis(layer, weights, inputs, output)


def slices_prelu(layer: Any, weights: list[np.ndarray], inputs: tuple[Positions, ...],
                 output: Positions) -> list[np.ndarray]:
    shared = list(layer.shared_axes or ())
    if shared and channel_axis_in(shared, _input_rank(layer)):
        return weights  # one alpha shared by every channel
    return slices_last_axis(layer, weights, inputs, output)


def slices_kernel(input_axis: int, output_axis: int) -> WeightSlicer:
    """A kernel (the first weight) with one axis per input channel and one per output
    channel; every later weight (the bias) has one entry per output channel."""
    def slicer(layer: Any, weights: list[np.ndarray], inputs: tuple[Positions, ...],
               output: Positions) -> list[np.ndarray]:
        kernel = take(take(weights[0], inputs[0], input_axis), output, output_axis)
        return [kernel, *(take(bias, output, 0) for bias in weights[1:])]
    return slicer


def _is_depthwise_form(layer: Any, kernel: np.ndarray) -> bool:
    """A Conv with groups == input channels == output channels (ConvNeXt's depthwise conv)."""
    return int(layer.groups) > 1 and kernel.shape[-2] == 1 and kernel.shape[-1] == layer.groups


def slices_grouped_conv(layer: Any, weights: list[np.ndarray], inputs: tuple[Positions, ...],
                        output: Positions) -> list[np.ndarray]:
    """Conv kernels (..., in / groups, out): output j of group g reads the g-th run of input
    channels at local index 0..in/groups - 1, so each kept output takes its own group's
    kept inputs (the analysis keeps equal counts per group)."""
    groups, kernel = int(layer.groups), weights[0]
    if groups == 1:
        return slices_kernel(-2, -1)(layer, weights, inputs, output)
    if _is_depthwise_form(layer, kernel):  # kernel (..., 1, channels): one input each
        return slices_kernel(-2, -1)(layer, weights, (None,), output)
    inputs_per_group, outputs = kernel.shape[-2], kernel.shape[-1]
    kept_inputs = np.arange(inputs_per_group * groups) if inputs[0] is None else inputs[0]
    kept_outputs = np.arange(outputs) if output is None else output
    local = kept_inputs.reshape(groups, -1) - (np.arange(groups) * inputs_per_group)[:, None]
    per_output = local[kept_outputs // (outputs // groups)]  # (kept outputs, kept per group)
    gathered = np.take(kernel, kept_outputs, axis=-1)
    index = per_output.T.reshape((1,) * (kernel.ndim - 2) + per_output.T.shape)
    kernel = np.take_along_axis(gathered, index, axis=-2)
    return [kernel, *(take(bias, output, 0) for bias in weights[1:])]


def slices_separable(layer: Any, weights: list[np.ndarray], inputs: tuple[Positions, ...],
                     output: Positions) -> list[np.ndarray]:
    """SeparableConv: depthwise (..., in, multiplier), pointwise (..., in * multiplier, out)
    whose row c * multiplier + m is depthwise output m of input channel c, then the bias."""
    depthwise, pointwise, *bias = weights
    rows = None
    if inputs[0] is not None:
        multiplier = depthwise.shape[-1]
        rows = (inputs[0][:, None] * multiplier + np.arange(multiplier)[None, :]).reshape(-1)
    return [take(depthwise, inputs[0], -2), take(take(pointwise, rows, -2), output, -1),
            *(take(b, output, 0) for b in bias)]


def slices_depthwise(layer: Any, weights: list[np.ndarray], inputs: tuple[Positions, ...],
                     output: Positions) -> list[np.ndarray]:
    """DepthwiseConv kernel (..., channels, 1) and bias (channels)."""
    return [take(weights[0], output, -2), *(take(bias, output, 0) for bias in weights[1:])]


def sets_width(key: str) -> ConfigNarrower:
    """The config key that holds the layer's output width (`filters`, `units`)."""
    def narrower(layer: Any, config: dict[str, Any], inputs: tuple[Positions, ...],
                 output: Positions) -> None:
        if output is not None:
            config[key] = int(len(output))
    return narrower


def narrows_conv(layer: Any, config: dict[str, Any], inputs: tuple[Positions, ...],
                 output: Positions) -> None:
    if output is None:
        return
    config["filters"] = int(len(output))
    if _is_depthwise_form(layer, layer.get_weights()[0]):
        config["groups"] = int(len(output))


def narrows_reshape(layer: Any, config: dict[str, Any], inputs: tuple[Positions, ...],
                    output: Positions) -> None:
    target = list(config["target_shape"])
    if output is not None and target[-1] != -1:
        target[-1] = int(len(output))
        config["target_shape"] = tuple(target)


def narrows_input_shape(layer: Any, config: dict[str, Any], inputs: tuple[Positions, ...],
                        output: Positions) -> None:
    if output is not None:
        config["batch_input_shape"] = (*config["batch_input_shape"][:-1], int(len(output)))


def _per_channel_value(value: Any, positions: np.ndarray) -> Any:
    array = np.asarray(value)
    if array.ndim == 0 or array.shape[-1] == 1:
        return value
    return np.take(array, positions, axis=-1).tolist()


def narrows_constants(*keys: str, axes_attribute: str | None = None) -> ConfigNarrower:
    """Per-channel constants held in the config (Rescaling's scale and offset, a
    Normalization's mean and variance) take the kept channels; scalars stay."""
    def narrower(layer: Any, config: dict[str, Any], inputs: tuple[Positions, ...],
                 output: Positions) -> None:
        if output is None:
            return
        if axes_attribute and not channel_axis_in(getattr(layer, axes_attribute),
                                                  _input_rank(layer)):
            return
        for key in keys:
            if config.get(key) is not None:
                config[key] = _per_channel_value(config[key], output)
    return narrower


def silences_kernel(input_axis: int) -> InputSilencer:
    def silencer(layer: Any, weights: list[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
        kernel = np.moveaxis(weights[0].copy(), input_axis, 0)
        kernel[rows] = 0.0
        return [np.moveaxis(kernel, 0, input_axis), *weights[1:]]
    return silencer


def silences_grouped_conv(layer: Any, weights: list[np.ndarray],
                          rows: np.ndarray) -> list[np.ndarray]:
    kernel = weights[0].copy()
    inputs_per_group, outputs = kernel.shape[-2], kernel.shape[-1]
    outputs_per_group = outputs // int(layer.groups)
    for row in np.asarray(rows):
        group, local = divmod(int(row), inputs_per_group)
        kernel[..., local, group * outputs_per_group:(group + 1) * outputs_per_group] = 0.0
    return [kernel, *weights[1:]]


def silences_separable(layer: Any, weights: list[np.ndarray],
                       rows: np.ndarray) -> list[np.ndarray]:
    depthwise, pointwise, *bias = (weight.copy() for weight in weights)
    multiplier = depthwise.shape[-1]
    depthwise[..., rows, :] = 0.0
    pointwise[..., (np.asarray(rows)[:, None] * multiplier + np.arange(multiplier)).ravel(), :] = 0
    return [depthwise, pointwise, *bias]
