"""TFLite's quantisation parameter arithmetic, done at code-generation time.

The C kernels receive precomputed fixed-point multipliers; they must be the very values
TFLite derives in its Prepare() functions, including where TFLite rounds a product to
float32 before widening to double.
"""

from __future__ import annotations

import math

import numpy as np

from devices.mcu.graph import Tensor

# ActivationFunctionType -> real-valued clamp (low, high); None = the int8 limit.
_ACTIVATION_RANGES: dict[int, tuple[float | None, float | None]] = {
    0: (None, None),  # NONE
    1: (0.0, None),  # RELU
    2: (-1.0, 1.0),  # RELU_N1_TO_1
    3: (0.0, 6.0),  # RELU6
}


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real = q * 2^(shift - 31), q in [2^30, 2^31)."""
    if real_multiplier == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real_multiplier)
    q_fixed = _round_half_away(fraction * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def quantize_multiplier_smaller_than_one(real_multiplier: float) -> tuple[int, int]:
    multiplier, shift = quantize_multiplier(real_multiplier)
    return multiplier, shift


def _round_half_away(value: float) -> int:
    return int(math.floor(value + 0.5)) if value >= 0 else -int(math.floor(-value + 0.5))


def _round_float32(value: np.float32) -> float:
    """TfLiteRound on a float: halves away from zero."""
    return float(np.sign(value) * np.floor(np.abs(value) + np.float32(0.5)))


def quantize_value(real: float, scale: float, zero_point: int) -> int:
    """TFLite's Quantize() helper used by CalculateActivationRangeQuantized."""
    quotient = np.float32(real) / np.float32(scale)
    return int(zero_point + _round_float32(quotient))


def activation_range(activation: int, tensor: Tensor) -> tuple[int, int]:
    low_real, high_real = _ACTIVATION_RANGES[activation]
    low, high = -128, 127
    if low_real is not None:
        low = max(low, quantize_value(low_real, tensor.scale, tensor.zero_point))
    if high_real is not None:
        high = min(high, quantize_value(high_real, tensor.scale, tensor.zero_point))
    return low, high


def per_channel_multipliers(
    input_tensor: Tensor, filter_tensor: Tensor, output_tensor: Tensor, channels: int
) -> tuple[list[int], list[int]]:
    """PopulateConvolutionQuantizationParams: double(in) * double(filter[c]) / double(out)."""
    scales = filter_tensor.scales
    if len(scales) == 1:
        scales = scales * channels
    multipliers, shifts = [], []
    for filter_scale in scales:
        effective = input_tensor.scale * filter_scale / output_tensor.scale
        multiplier, shift = quantize_multiplier(effective)
        multipliers.append(multiplier)
        shifts.append(shift)
    return multipliers, shifts


def fully_connected_multipliers(
    input_tensor: Tensor, filter_tensor: Tensor, output_tensor: Tensor, units: int
) -> tuple[list[int], list[int]]:
    """Per-tensor weights: GetQuantizedConvolutionMultipler takes the input x filter product
    in float32 before dividing in double. Per-channel weights: as convolution."""
    if len(filter_tensor.scales) > 1:
        return per_channel_multipliers(input_tensor, filter_tensor, output_tensor, units)
    product = float(np.float32(input_tensor.scale) * np.float32(filter_tensor.scale))
    multiplier, shift = quantize_multiplier(product / output_tensor.scale)
    return [multiplier] * units, [shift] * units


def mean_multiplier(input_scale: float, output_scale: float, count: int) -> tuple[int, int]:
    """reduce.cc: QuantizeMultiplier(in/out), then 1/count folded in with a shift of
    floor(log2(count)) (at most 32 and keeping the final shift >= -31)."""
    multiplier, shift = quantize_multiplier(input_scale / output_scale)
    extra = min(count.bit_length() - 1, 32, 31 + shift)
    return (multiplier << extra) // count, shift - extra


def add_parameters(input1: Tensor, input2: Tensor, output: Tensor) -> dict[str, int]:
    """PrepareInt8AddSub of TFLite's add.cc (left shift 20 for int8)."""
    left_shift = 20
    twice_max_input_scale = float(2 * np.float32(max(input1.scale, input2.scale)))
    real_input1 = input1.scale / twice_max_input_scale
    real_input2 = input2.scale / twice_max_input_scale
    real_output = twice_max_input_scale / float(np.float32((1 << left_shift) * np.float32(
        output.scale)))
    input1_multiplier, input1_shift = quantize_multiplier_smaller_than_one(real_input1)
    input2_multiplier, input2_shift = quantize_multiplier_smaller_than_one(real_input2)
    output_multiplier, output_shift = quantize_multiplier_smaller_than_one(real_output)
    return {
        "input1_offset": -input1.zero_point,
        "input2_offset": -input2.zero_point,
        "output_offset": output.zero_point,
        "left_shift": left_shift,
        "input1_multiplier": input1_multiplier,
        "input1_shift": input1_shift,
        "input2_multiplier": input2_multiplier,
        "input2_shift": input2_shift,
        "output_multiplier": output_multiplier,
        "output_shift": output_shift,
    }

