/* int8 kernels bit-exact with TFLite's reference kernels. See mcu_kernels.h. */
#include "mcu_kernels.h"

#include <string.h>

#if defined(MCU_USE_SIMD) && defined(__ARM_FEATURE_DSP)
#define MCU_SIMD 1
#include <arm_acle.h>
#else
#define MCU_SIMD 0
#endif

/* ---- TFLite / gemmlowp fixed-point arithmetic -------------------------------------- */

static int32_t saturating_rounding_doubling_high_mul(int32_t a, int32_t b) {
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    /* TFLite adds 2^30 (1 - 2^30 to a negative product) and divides by 2^31, truncating:
     * for either sign exactly floor((a*b + 2^30) / 2^31), one add and one shift instead of
     * a branch and a 64-bit division (>> of a negative value is arithmetic on GCC, Clang,
     * Arm Compiler and IAR; C99 leaves it to the implementation). */
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

static int32_t rounding_divide_by_pot(int32_t x, int32_t exponent) {
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t mcu_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
    const int32_t left_shift = shift > 0 ? shift : 0;
    const int32_t right_shift = shift > 0 ? 0 : -shift;
    /* wraps like TFLite's int32 `x * (1 << left_shift)` without signed-overflow UB */
    const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier),
                                  right_shift);
}

/* x * multiplier * 2^(shift - 31) with one rounding step (TFLite's single-rounding form) */
static int32_t multiply_single_rounding(int32_t x, int32_t multiplier, int32_t shift) {
    const int32_t total_shift = 31 - shift;
    const int64_t product = (int64_t)x * (int64_t)multiplier + ((int64_t)1 << (total_shift - 1));
    return (int32_t)(product >> total_shift);
}

static int32_t multiply_smaller_than_one(int32_t x, int32_t multiplier, int32_t shift) {
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), -shift);
}

static int32_t max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
static int32_t min_i32(int32_t a, int32_t b) { return a < b ? a : b; }

static int8_t clamp_to_s8(int32_t value, int32_t low, int32_t high) {
    if (value < low) value = low;
    if (value > high) value = high;
    return (int8_t)value;
}

static int32_t requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t offset) {
    return mcu_multiply_by_quantized_multiplier(acc, multiplier, shift) + offset;
}

/* ---- dot products of an int16 patch with an int8 filter row ------------------------ */
/* With SIMD the patch is stored in groups of four reordered as (0, 2, 1, 3): SXTB16
 * expands bytes 0 and 2 of a filter word, SXTB16 of the word rotated by 8 bytes 1 and 3. */

#if MCU_SIMD
/* bytes 1 and 3 sign-extended to halfwords: SXTB16 with its ROR #8 operand */
static uint32_t sxtb16_odd(uint32_t value) {
    uint32_t result;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(result) : "r"(value));
    return result;
}

/* Two words and the pointer's step in one LDRD (GCC keeps memcpy loads as separate LDRs);
 * `pointer` must be word-aligned: the scratch patches and the pair blocks of the filter are. */
#define LOAD_PAIR_ADVANCE(low, high, pointer)                                          \
    __asm__ volatile("ldrd %0, %1, [%2], #8" : "=r"(low), "=r"(high), "+r"(pointer) : \
                     : "memory")

static uint32_t load_u32(const void *address) {
    uint32_t value;
    memcpy(&value, address, 4);
    return value;
}
#endif

static int32_t dot_patch(const int16_t *patch, const int8_t *filter, int32_t count) {
    int32_t acc = 0;
    int32_t i = 0;
#if MCU_SIMD
    for (; i + 4 <= count; i += 4) {
        const uint32_t weights = load_u32(filter + i);
        const uint32_t even = __sxtb16(weights);
        const uint32_t odd = sxtb16_odd(weights);
        acc = __smlad(even, load_u32(patch + i), acc);
        acc = __smlad(odd, load_u32(patch + i + 2), acc);
    }
#endif
    for (; i < count; ++i) {
        acc += (int32_t)patch[i] * (int32_t)filter[i];
    }
    return acc;
}

/* ---- convolution --------------------------------------------------------------------- */

/* Gather the receptive field of one output pixel as raw int8; taps in the padding get the
 * input zero point, which becomes 0 once the offset is added (TFLite skips those taps). */
static void gather_patch(const mcu_conv_params *p, const int8_t *input, int32_t in_y0,
                         int32_t in_x0, int8_t *patch) {
    const int8_t pad = (int8_t)(-p->input_offset);
    const int32_t row_bytes = p->k_w * p->in_c;
    int32_t fy, fx;
    for (fy = 0; fy < p->k_h; ++fy, patch += row_bytes) {
        const int32_t in_y = in_y0 + fy * p->dilation_h;
        const int8_t *row = input + in_y * p->in_w * p->in_c;
        if (in_y < 0 || in_y >= p->in_h) {
            memset(patch, pad, (size_t)row_bytes);
        } else if (p->dilation_w == 1) {
            /* the in-bounds taps of a row are one contiguous run of the input */
            int32_t start = max_i32(0, -in_x0);
            int32_t end = min_i32(p->k_w, p->in_w - in_x0);
            if (end < start) start = end = 0;
            memset(patch, pad, (size_t)(start * p->in_c));
            memcpy(patch + start * p->in_c, row + (in_x0 + start) * p->in_c,
                   (size_t)((end - start) * p->in_c));
            memset(patch + end * p->in_c, pad, (size_t)((p->k_w - end) * p->in_c));
        } else {
            for (fx = 0; fx < p->k_w; ++fx) {
                const int32_t in_x = in_x0 + fx * p->dilation_w;
                if (in_x < 0 || in_x >= p->in_w) {
                    memset(patch + fx * p->in_c, pad, (size_t)p->in_c);
                } else {
                    memcpy(patch + fx * p->in_c, row + in_x * p->in_c, (size_t)p->in_c);
                }
            }
        }
    }
}

/* int8 -> int16 with the input offset added; with SIMD in the (0, 2, 1, 3) group order. */
static void widen_patch(const int8_t *source, int16_t *target, int32_t count, int32_t offset) {
    int32_t i = 0;
#if MCU_SIMD
    const uint32_t offset_pair = ((uint32_t)(uint16_t)offset << 16) | (uint16_t)offset;
    for (; i + 4 <= count; i += 4) {
        const uint32_t bytes = load_u32(source + i);
        const uint32_t even = __sadd16(__sxtb16(bytes), offset_pair);
        const uint32_t odd = __sadd16(sxtb16_odd(bytes), offset_pair);
        memcpy(target + i, &even, 4);
        memcpy(target + i + 2, &odd, 4);
    }
#endif
    for (; i < count; ++i) {
        target[i] = (int16_t)(source[i] + offset);
    }
}

/* ---- 2x2 tiles: two output pixels x two output channels per pass -------------------- */
/* Operand layout (devices/mcu/layout.py writes the filter so): per group of four taps, the
 * four values of pixel (or channel) a, then the four of b; after the groups the count % 4
 * tail of a, then the tail of b. One walking pointer per operand, sequential word loads;
 * each weight word is widened once for two pixels, each patch word serves two channels.
 * With SIMD a patch group holds taps in the (0, 2, 1, 3) order that SXTB16 of a weight
 * word expects. acc = {pixel a x channel a, a x b, b x a, b x b}. */
static void dot_tile_2x2(const int16_t *patches, const int8_t *weights, int32_t count,
                         int32_t *acc) {
    const int32_t groups = count >> 2;
    const int32_t tail = count - 4 * groups;
    int32_t sum_aa = 0, sum_ab = 0, sum_ba = 0, sum_bb = 0;
    int32_t t;
#if MCU_SIMD
    const int16_t *patch_end = patches + 8 * groups;
    while (patches < patch_end) {
        uint32_t a_even, a_odd, b_even, b_odd, weights_a, weights_b, even;
        LOAD_PAIR_ADVANCE(a_even, a_odd, patches);
        LOAD_PAIR_ADVANCE(b_even, b_odd, patches);
        LOAD_PAIR_ADVANCE(weights_a, weights_b, weights);
        even = __sxtb16(weights_a);
        weights_a = sxtb16_odd(weights_a);
        sum_aa = __smlad(even, a_even, sum_aa);
        sum_ba = __smlad(even, b_even, sum_ba);
        sum_aa = __smlad(weights_a, a_odd, sum_aa);
        sum_ba = __smlad(weights_a, b_odd, sum_ba);
        even = __sxtb16(weights_b);
        weights_b = sxtb16_odd(weights_b);
        sum_ab = __smlad(even, a_even, sum_ab);
        sum_bb = __smlad(even, b_even, sum_bb);
        sum_ab = __smlad(weights_b, a_odd, sum_ab);
        sum_bb = __smlad(weights_b, b_odd, sum_bb);
    }
#else
    int32_t group;
    for (group = 0; group < groups; ++group, patches += 8, weights += 8) {
        for (t = 0; t < 4; ++t) {
            sum_aa += patches[t] * weights[t];
            sum_ab += patches[t] * weights[4 + t];
            sum_ba += patches[4 + t] * weights[t];
            sum_bb += patches[4 + t] * weights[4 + t];
        }
    }
#endif
    for (t = 0; t < tail; ++t) {
        sum_aa += patches[t] * weights[t];
        sum_ab += patches[t] * weights[tail + t];
        sum_ba += patches[tail + t] * weights[t];
        sum_bb += patches[tail + t] * weights[tail + t];
    }
    acc[0] = sum_aa;
    acc[1] = sum_ab;
    acc[2] = sum_ba;
    acc[3] = sum_bb;
}

/* int8 -> int16 with the input offset added, into lane 0 (pixel a) or 1 (pixel b). */
static void widen_patch_lane(const int8_t *source, int16_t *patches, int32_t count,
                             int32_t offset, int32_t lane) {
    const int32_t groups = count >> 2;
    const int32_t tail = count - 4 * groups;
    int16_t *group_at = patches + 4 * lane;
    int16_t *tail_at = patches + 8 * groups + lane * tail;
    int32_t group, t;
#if MCU_SIMD
    const uint32_t offset_pair = ((uint32_t)(uint16_t)offset << 16) | (uint16_t)offset;
#endif
    for (group = 0; group < groups; ++group, source += 4, group_at += 8) {
#if MCU_SIMD
        const uint32_t bytes = load_u32(source);
        const uint32_t even = __sadd16(__sxtb16(bytes), offset_pair);
        const uint32_t odd = __sadd16(sxtb16_odd(bytes), offset_pair);
        memcpy(group_at, &even, 4);
        memcpy(group_at + 2, &odd, 4);
#else
        for (t = 0; t < 4; ++t) group_at[t] = (int16_t)(source[t] + offset);
#endif
    }
    for (t = 0; t < tail; ++t) tail_at[t] = (int16_t)(source[t] + offset);
}

static int8_t requantize_to_s8(const mcu_conv_params *p, int32_t acc, const int32_t *bias,
                               const int32_t *multipliers, const int32_t *shifts, int32_t oc) {
    if (bias) acc += bias[oc];
    return clamp_to_s8(requantize(acc, multipliers[oc], shifts[oc], p->output_offset),
                       p->act_min, p->act_max);
}

/* im2col of output pixel `pixel` (row-major over out_h x out_w) into one lane. */
static void load_patch(const mcu_conv_params *p, const int8_t *batch_in, int32_t pixel,
                       int8_t *patch8, int16_t *patches, int32_t lane) {
    const int32_t oy = pixel / p->out_w;
    const int32_t ox = pixel - oy * p->out_w;
    gather_patch(p, batch_in, oy * p->stride_h - p->pad_top, ox * p->stride_w - p->pad_left,
                 patch8);
    widen_patch_lane(patch8, patches, p->k_h * p->k_w * p->in_c, p->input_offset, lane);
}

/* `filter` is pair-interleaved in word-aligned blocks (devices/mcu/layout.py), an odd
 * channel count padded with a zero channel; an odd last pixel is computed in both lanes
 * and stored once. */
void mcu_conv2d_s8(const mcu_conv_params *p, const int8_t *input, const int8_t *filter,
                   const int32_t *bias, const int32_t *multipliers, const int32_t *shifts,
                   int8_t *output, int16_t *scratch) {
    const int32_t patch_len = p->k_h * p->k_w * p->in_c;
    const int32_t pair_stride = (2 * patch_len + 3) & ~3; /* bytes per channel pair */
    const int32_t pixels = p->out_h * p->out_w;
    /* the two pixels' interleaved int16 patches, then the raw int8 patch being gathered */
    int8_t *patch8 = (int8_t *)(scratch + 2 * patch_len);
    int32_t b, pixel, oc;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *batch_in = input + b * p->in_h * p->in_w * p->in_c;
        int8_t *batch_out = output + b * pixels * p->out_c;
        for (pixel = 0; pixel < pixels; pixel += 2) {
            const int32_t has_b = pixel + 1 < pixels;
            int8_t *out_a = batch_out + pixel * p->out_c;
            int8_t *out_b = out_a + p->out_c;
            load_patch(p, batch_in, pixel, patch8, scratch, 0);
            load_patch(p, batch_in, has_b ? pixel + 1 : pixel, patch8, scratch, 1);
            for (oc = 0; oc < p->out_c; oc += 2) {
                int32_t acc[4];
                dot_tile_2x2(scratch, filter + (oc / 2) * pair_stride, patch_len, acc);
                out_a[oc] = requantize_to_s8(p, acc[0], bias, multipliers, shifts, oc);
                if (has_b) out_b[oc] = requantize_to_s8(p, acc[2], bias, multipliers, shifts, oc);
                if (oc + 1 < p->out_c) {
                    out_a[oc + 1] = requantize_to_s8(p, acc[1], bias, multipliers, shifts,
                                                     oc + 1);
                    if (has_b) {
                        out_b[oc + 1] = requantize_to_s8(p, acc[3], bias, multipliers, shifts,
                                                         oc + 1);
                    }
                }
            }
        }
    }
}

void mcu_depthwise_conv2d_s8(const mcu_conv_params *p, const int8_t *input,
                             const int8_t *filter, const int32_t *bias,
                             const int32_t *multipliers, const int32_t *shifts,
                             int8_t *output) {
    int32_t b, oy, ox, ic, m, fy, fx;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *batch_in = input + b * p->in_h * p->in_w * p->in_c;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                int8_t *out = output + ((b * p->out_h + oy) * p->out_w + ox) * p->out_c;
                for (ic = 0; ic < p->in_c; ++ic) {
                    for (m = 0; m < p->depth_multiplier; ++m) {
                        const int32_t oc = ic * p->depth_multiplier + m;
                        int32_t acc = 0;
                        for (fy = 0; fy < p->k_h; ++fy) {
                            const int32_t in_y = in_y0 + fy * p->dilation_h;
                            if (in_y < 0 || in_y >= p->in_h) continue;
                            for (fx = 0; fx < p->k_w; ++fx) {
                                const int32_t in_x = in_x0 + fx * p->dilation_w;
                                if (in_x < 0 || in_x >= p->in_w) continue;
                                acc += (batch_in[(in_y * p->in_w + in_x) * p->in_c + ic] +
                                        p->input_offset) *
                                       filter[(fy * p->k_w + fx) * p->out_c + oc];
                            }
                        }
                        if (bias) acc += bias[oc];
                        acc = requantize(acc, multipliers[oc], shifts[oc], p->output_offset);
                        out[oc] = clamp_to_s8(acc, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}

void mcu_fully_connected_s8(const mcu_fc_params *p, const int8_t *input, const int8_t *filter,
                            const int32_t *bias, const int32_t *multipliers,
                            const int32_t *shifts, int8_t *output, int16_t *scratch) {
    int32_t b, d, u;
    for (b = 0; b < p->batches; ++b) {
        widen_patch(input + b * p->depth, scratch, p->depth, p->input_offset);
        for (u = 0; u < p->units; ++u) {
            const int8_t *row = filter + u * p->depth;
            int32_t acc = dot_patch(scratch, row, p->depth);
            if (p->filter_offset != 0) {
                int32_t input_sum = 0;
                for (d = 0; d < p->depth; ++d) input_sum += scratch[d];
                acc += p->filter_offset * input_sum;
            }
            if (bias) acc += bias[u];
            if (p->single_rounding) {
                acc = multiply_single_rounding(acc, multipliers[u], shifts[u]) + p->output_offset;
            } else {
                acc = requantize(acc, multipliers[u], shifts[u], p->output_offset);
            }
            output[b * p->units + u] = clamp_to_s8(acc, p->act_min, p->act_max);
        }
    }
}

/* ---- pooling ------------------------------------------------------------------------ */

static void pool_s8(const mcu_pool_params *p, const int8_t *input, int8_t *output,
                    int is_max) {
    int32_t b, oy, ox, c, fy, fx;
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            const int32_t fy_start = max_i32(0, -in_y0);
            const int32_t fy_end = min_i32(p->k_h, p->in_h - in_y0);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                const int32_t fx_start = max_i32(0, -in_x0);
                const int32_t fx_end = min_i32(p->k_w, p->in_w - in_x0);
                for (c = 0; c < p->channels; ++c) {
                    int32_t acc = is_max ? -128 : 0;
                    int32_t count = 0;
                    for (fy = fy_start; fy < fy_end; ++fy) {
                        for (fx = fx_start; fx < fx_end; ++fx) {
                            const int32_t value =
                                input[((b * p->in_h + in_y0 + fy) * p->in_w + in_x0 + fx) *
                                          p->channels + c];
                            if (is_max) {
                                acc = max_i32(acc, value);
                            } else {
                                acc += value;
                            }
                            ++count;
                        }
                    }
                    if (!is_max && count > 0) {
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    output[((b * p->out_h + oy) * p->out_w + ox) * p->channels + c] =
                        clamp_to_s8(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void mcu_max_pool_s8(const mcu_pool_params *p, const int8_t *input, int8_t *output) {
    pool_s8(p, input, output, 1);
}

void mcu_average_pool_s8(const mcu_pool_params *p, const int8_t *input, int8_t *output) {
    pool_s8(p, input, output, 0);
}

/* ---- elementwise ------------------------------------------------------------------- */

void mcu_add_s8(const mcu_add_params *p, const int8_t *input1, const int8_t *input2,
                int8_t *output) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t shifted1 = (int32_t)((uint32_t)(input1[i] + p->input1_offset)
                                           << p->left_shift);
        const int32_t shifted2 = (int32_t)((uint32_t)(input2[i] + p->input2_offset)
                                           << p->left_shift);
        const int32_t scaled1 =
            multiply_smaller_than_one(shifted1, p->input1_multiplier, p->input1_shift);
        const int32_t scaled2 =
            multiply_smaller_than_one(shifted2, p->input2_multiplier, p->input2_shift);
        const int32_t sum = multiply_smaller_than_one(scaled1 + scaled2, p->output_multiplier,
                                                      p->output_shift) + p->output_offset;
        output[i] = clamp_to_s8(sum, p->act_min, p->act_max);
    }
}

void mcu_mean_s8(const mcu_mean_params *p, const int8_t *input, int8_t *output) {
    const int32_t count = p->in_h * p->in_w;
    int32_t b, c, i;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *batch_in = input + b * count * p->channels;
        for (c = 0; c < p->channels; ++c) {
            int32_t sum = 0;
            for (i = 0; i < count; ++i) {
                sum += batch_in[i * p->channels + c];
            }
            sum -= p->input_zero_point * count;
            output[b * p->channels + c] = clamp_to_s8(
                requantize(sum, p->multiplier, p->shift, p->output_zero_point), -128, 127);
        }
    }
}

void mcu_pad_s8(const mcu_pad_params *p, const int8_t *input, int8_t *output) {
    const int32_t *in = p->in_shape;
    const int32_t *out = p->out_shape;
    int32_t n, y, x;
    memset(output, p->pad_value, (size_t)(out[0] * out[1] * out[2] * out[3]));
    for (n = 0; n < in[0]; ++n) {
        for (y = 0; y < in[1]; ++y) {
            for (x = 0; x < in[2]; ++x) {
                const int8_t *source = input + ((n * in[1] + y) * in[2] + x) * in[3];
                int8_t *target = output + (((n + p->before[0]) * out[1] + y + p->before[1]) *
                                           out[2] + x + p->before[2]) * out[3] + p->before[3];
                memcpy(target, source, (size_t)in[3]);
            }
        }
    }
}

void mcu_requantize_s8(const mcu_requantize_params *p, const int8_t *input, int8_t *output) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t value = mcu_multiply_by_quantized_multiplier(
            input[i] - p->input_zero_point, p->multiplier, p->shift) + p->output_zero_point;
        output[i] = clamp_to_s8(value, -128, 127);
    }
}

void mcu_clamp_s8(int32_t size, int32_t act_min, int32_t act_max, const int8_t *input,
                  int8_t *output) {
    int32_t i;
    for (i = 0; i < size; ++i) output[i] = clamp_to_s8(input[i], act_min, act_max);
}

void mcu_copy_s8(int32_t size, const int8_t *input, int8_t *output) {
    if (input != output) memmove(output, input, (size_t)size);
}
