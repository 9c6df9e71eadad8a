/* int8 kernels bit-exact with TFLite's reference kernels. See mcu_kernels.h. */
#include "mcu_kernels.h"

#include <string.h>

/* Inlined where GCC or Clang would otherwise keep a call in the per-pixel path. */
#if defined(__GNUC__)
#define MCU_INLINE static inline __attribute__((always_inline))
#else
#define MCU_INLINE static inline
#endif

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

/* MultiplyByQuantizedMultiplier + offset for the per-output requantization: inlined and
 * without branches. Same value: a requantization multiplier is 0 or in [2^30, 2^31), so the
 * INT32_MIN x INT32_MIN saturation cannot arise, and the rounding divide keeps TFLite's
 * remainder-versus-threshold form, which cannot overflow. */
static inline int32_t requantize(int32_t acc, int32_t multiplier, int32_t shift,
                                 int32_t offset) {
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = left - shift;
    const int32_t shifted = (int32_t)((uint32_t)acc << left);
    const int32_t high =
        (int32_t)(((int64_t)shifted * (int64_t)multiplier + ((int64_t)1 << 30)) >> 31);
    const int32_t mask = (int32_t)(((uint32_t)1 << right) - 1u);
    const int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)high >> 31);
    return (high >> right) + ((high & mask) > threshold ? 1 : 0) + offset;
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

/* A run of `count` bytes: a call for long runs, a byte loop for the few bytes of a small
 * first layer's row. */
MCU_INLINE void copy_run(int8_t *restrict target, const int8_t *restrict source,
                         int32_t count) {
    if (count >= 16) {
        memcpy(target, source, (size_t)count);
        return;
    }
    while (count-- > 0) *target++ = *source++;
}

static void fill_run(int8_t *target, int8_t value, int32_t count) {
    if (count >= 16) {
        memset(target, value, (size_t)count);
        return;
    }
    while (count-- > 0) *target++ = value;
}

/* Gather the receptive field of one output pixel as raw int8; taps in the padding get the
 * input zero point, which becomes 0 once the offset is added (TFLite skips those taps).
 * The parameters are read into locals once: the byte stores may alias them. */
static void gather_patch(const mcu_conv_params *restrict p, const int8_t *restrict input,
                         int32_t in_y0, int32_t in_x0, int8_t *restrict patch) {
    const int8_t pad = (int8_t)(-p->input_offset);
    const int32_t in_c = p->in_c, in_h = p->in_h, in_w = p->in_w;
    const int32_t k_h = p->k_h, k_w = p->k_w;
    const int32_t dilation_h = p->dilation_h, dilation_w = p->dilation_w;
    const int32_t row_bytes = k_w * in_c;
    int32_t fy, fx;
    for (fy = 0; fy < k_h; ++fy, patch += row_bytes) {
        const int32_t in_y = in_y0 + fy * dilation_h;
        const int8_t *row = input + in_y * in_w * in_c;
        if (in_y < 0 || in_y >= in_h) {
            fill_run(patch, pad, row_bytes);
        } else if (dilation_w == 1) {
            /* the in-bounds taps of a row are one contiguous run of the input */
            int32_t start = max_i32(0, -in_x0);
            int32_t end = min_i32(k_w, in_w - in_x0);
            if (end < start) start = end = 0;
            fill_run(patch, pad, start * in_c);
            copy_run(patch + start * in_c, row + (in_x0 + start) * in_c, (end - start) * in_c);
            fill_run(patch + end * in_c, pad, (k_w - end) * in_c);
        } else {
            for (fx = 0; fx < k_w; ++fx) {
                const int32_t in_x = in_x0 + fx * dilation_w;
                if (in_x < 0 || in_x >= in_w) {
                    fill_run(patch + fx * in_c, pad, in_c);
                } else {
                    copy_run(patch + fx * in_c, row + in_x * in_c, in_c);
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
/* Operand layout (devices/mcu/layout.py writes the filter so): the taps are padded with
 * zeros to a multiple of four; per group of four taps come the four values of pixel (or
 * channel) a, then the four of b. One walking pointer per operand, sequential LDRD loads;
 * each weight word is widened once for two pixels, each patch word serves two channels.
 * With SIMD a patch group holds its taps in the (0, 2, 1, 3) order SXTB16 of a weight word
 * expects. acc = {pixel a x channel a, a x b, b x a, b x b}. */
static int32_t padded_taps(int32_t taps) { return (taps + 3) & ~3; }

static inline void dot_tile_2x2(const int16_t *patches, const int8_t *weights,
                                int32_t groups, int32_t *acc) {
    int32_t sum_aa = 0, sum_ab = 0, sum_ba = 0, sum_bb = 0;
#if MCU_SIMD
/* one channel's weight word against both pixels' patch words: two SXTB16s, four SMLADs */
#define TILE_CHANNEL(word, sum_a, sum_b)                                                \
    do {                                                                                \
        even = __sxtb16(word);                                                          \
        word = sxtb16_odd(word);                                                        \
        sum_a = __smlad(even, a_even, sum_a);                                           \
        sum_b = __smlad(even, b_even, sum_b);                                           \
        sum_a = __smlad(word, a_odd, sum_a);                                            \
        sum_b = __smlad(word, b_odd, sum_b);                                            \
    } while (0)
/* one group of four taps: three LDRDs, then each channel */
#define TILE_GROUP()                                                                    \
    do {                                                                                \
        uint32_t a_even, a_odd, b_even, b_odd, weights_a, weights_b, even;              \
        LOAD_PAIR_ADVANCE(a_even, a_odd, patches);                                      \
        LOAD_PAIR_ADVANCE(b_even, b_odd, patches);                                      \
        LOAD_PAIR_ADVANCE(weights_a, weights_b, weights);                               \
        TILE_CHANNEL(weights_a, sum_aa, sum_ba);                                        \
        TILE_CHANNEL(weights_b, sum_ab, sum_bb);                                        \
    } while (0)
    const int16_t *pairs_end = patches + 16 * (groups >> 1);
    while (patches < pairs_end) { /* two groups per turn halve the loop's own cost */
        TILE_GROUP();
        TILE_GROUP();
    }
    if (groups & 1) TILE_GROUP();
#undef TILE_GROUP
#undef TILE_CHANNEL
#else
    int32_t group, t;
    for (group = 0; group < groups; ++group, patches += 8, weights += 8) {
        for (t = 0; t < 4; ++t) {
            sum_aa += patches[t] * weights[t];
            sum_ab += patches[t] * weights[4 + t];
            sum_ba += patches[4 + t] * weights[t];
            sum_bb += patches[4 + t] * weights[4 + t];
        }
    }
#endif
    acc[0] = sum_aa;
    acc[1] = sum_ab;
    acc[2] = sum_ba;
    acc[3] = sum_bb;
}

/* int8 -> int16 with the input offset added, into lane 0 (pixel a) or 1 (pixel b);
 * `count` is a multiple of four (the raw patch's padding taps hold the pad value). */
MCU_INLINE void widen_patch_lane(const int8_t *restrict source, int16_t *restrict patches,
                             int32_t count, int32_t offset, int32_t lane) {
    int16_t *group_at = patches + 4 * lane;
    const int8_t *end = source + count;
#if MCU_SIMD
    const uint32_t offset_pair = ((uint32_t)(uint16_t)offset << 16) | (uint16_t)offset;
    for (; source < end; source += 4, group_at += 8) {
        const uint32_t bytes = load_u32(source);
        const uint32_t even = __sadd16(__sxtb16(bytes), offset_pair);
        const uint32_t odd = __sadd16(sxtb16_odd(bytes), offset_pair);
        memcpy(group_at, &even, 4);
        memcpy(group_at + 2, &odd, 4);
    }
#else
    int32_t t;
    for (; source < end; source += 4, group_at += 8) {
        for (t = 0; t < 4; ++t) group_at[t] = (int16_t)(source[t] + offset);
    }
#endif
}

/* im2col of output pixel `pixel` (row-major over out_h x out_w) into one lane. A window
 * wholly inside the input (most of them) is copied row by row without bound checks. */
MCU_INLINE void load_patch(const mcu_conv_params *restrict p, const int8_t *restrict batch_in,
                       int32_t pixel, int8_t *restrict patch8, int16_t *restrict patches,
                       int32_t lane) {
    const int32_t oy = pixel / p->out_w;
    const int32_t ox = pixel - oy * p->out_w;
    const int32_t in_y0 = oy * p->stride_h - p->pad_top;
    const int32_t in_x0 = ox * p->stride_w - p->pad_left;
    const int32_t row_bytes = p->k_w * p->in_c;
    const int32_t taps = p->k_h * row_bytes;
    if (p->dilation_w == 1 && in_y0 >= 0 && in_x0 >= 0 &&
        in_y0 + (p->k_h - 1) * p->dilation_h < p->in_h && in_x0 + p->k_w <= p->in_w) {
        const int32_t row_stride = p->dilation_h * p->in_w * p->in_c;
        const int8_t *row = batch_in + (in_y0 * p->in_w + in_x0) * p->in_c;
        int8_t *target = patch8;
        int32_t fy;
        for (fy = 0; fy < p->k_h; ++fy, row += row_stride, target += row_bytes) {
            copy_run(target, row, row_bytes);
        }
    } else {
        gather_patch(p, batch_in, in_y0, in_x0, patch8);
    }
    widen_patch_lane(patch8, patches, padded_taps(taps), p->input_offset, lane);
}

/* One input channel (a grey first layer) at stride 1: the windows of two neighbouring
 * output pixels overlap but for one column, so each input byte is loaded once for both
 * lanes and written straight to its int16 slot, with no staging copy. `slot[t]` is tap t's
 * position in lane 0 of the interleaved layout; padding slots stay 0. */
#define GREY_MAX_TAPS 64

MCU_INLINE void load_grey_pair(const mcu_conv_params *restrict p,
                               const int8_t *restrict batch_in, int32_t in_y0, int32_t in_x0,
                               const uint16_t *restrict slot, int16_t *restrict patches) {
    const int32_t k_h = p->k_h, k_w = p->k_w, in_w = p->in_w, offset = p->input_offset;
    const int8_t *row = batch_in + in_y0 * in_w + in_x0;
    int32_t fy, fx;
    for (fy = 0; fy < k_h; ++fy, row += in_w, slot += k_w) {
        int32_t left = row[0] + offset;
        for (fx = 0; fx < k_w; ++fx) {
            const int32_t right = row[fx + 1] + offset;
            patches[slot[fx]] = (int16_t)left;
            patches[slot[fx] + 4] = (int16_t)right;
            left = right;
        }
    }
}

/* Whether pixels `pixel` and `pixel + 1` take load_grey_pair: one input channel, stride and
 * dilation 1, the same output row, and both windows inside the input. */
static int grey_pair(const mcu_conv_params *p, int32_t pixel, int32_t *in_y0, int32_t *in_x0) {
    const int32_t oy = pixel / p->out_w;
    const int32_t ox = pixel - oy * p->out_w;
    *in_y0 = oy * p->stride_h - p->pad_top;
    *in_x0 = ox - p->pad_left;
    return ox + 1 < p->out_w && *in_y0 >= 0 && *in_x0 >= 0 && *in_y0 + p->k_h <= p->in_h &&
           *in_x0 + p->k_w + 1 <= p->in_w;
}

static int grey_layer(const mcu_conv_params *p) {
    return p->in_c == 1 && p->stride_w == 1 && p->dilation_h == 1 && p->dilation_w == 1 &&
           p->k_h * p->k_w <= GREY_MAX_TAPS;
}

/* The per-output requantization of one channel for both pixels of a tile: the channel's
 * constants are read once (the int8 stores would otherwise force them to be reloaded). */
typedef struct {
    int32_t offset, act_min, act_max;
    int32_t full; /* act range is all of int8: one SSAT clamps */
} output_range;

#if MCU_SIMD
/* The rounding divide by 2^right (1 <= right <= 23) of a doubling high product `high` as
 * one saturating add and one shift: (high + 2^(right-1) - (high < 0)) >> right is TFLite's
 * round-half-away-from-zero. Only a positive sum can overflow; QADD saturates it to
 * INT32_MAX, whose quotient 2^(31-right) - 1 still exceeds 127 - offset for right <= 23,
 * so the clamped int8 output is the same. */
MCU_INLINE int32_t divide_saturating(int32_t high, int32_t half, int32_t right) {
    return (__qadd(high, half) + (high >> 31)) >> right;
}

MCU_INLINE int8_t saturate_s8(int32_t value, output_range range) {
    return range.full ? (int8_t)__ssat(value, 8)
                      : clamp_to_s8(value, range.act_min, range.act_max);
}
#endif

MCU_INLINE void requantize_channel(int32_t acc_a, int32_t acc_b, int32_t bias,
                                   int32_t multiplier, int32_t shift, output_range range,
                                   int8_t *restrict out_a, int8_t *restrict out_b) {
#if MCU_SIMD
    const int32_t right = -shift;
    if (right >= 1 && right <= 23) {
        const int32_t half = 1 << (right - 1);
        const int32_t high_a = (int32_t)(((int64_t)(acc_a + bias) * multiplier +
                                          ((int64_t)1 << 30)) >> 31);
        const int32_t high_b = (int32_t)(((int64_t)(acc_b + bias) * multiplier +
                                          ((int64_t)1 << 30)) >> 31);
        *out_a = saturate_s8(divide_saturating(high_a, half, right) + range.offset, range);
        *out_b = saturate_s8(divide_saturating(high_b, half, right) + range.offset, range);
        return;
    }
#endif
    *out_a = clamp_to_s8(requantize(acc_a + bias, multiplier, shift, range.offset),
                         range.act_min, range.act_max);
    *out_b = clamp_to_s8(requantize(acc_b + bias, multiplier, shift, range.offset),
                         range.act_min, range.act_max);
}

/* One output's requantization (the fast rounding divide where it applies). */
MCU_INLINE int8_t requantize_one(int32_t acc, int32_t multiplier, int32_t shift,
                                 output_range range) {
#if MCU_SIMD
    const int32_t right = -shift;
    if (right >= 1 && right <= 23) {
        const int32_t high =
            (int32_t)(((int64_t)acc * multiplier + ((int64_t)1 << 30)) >> 31);
        return saturate_s8(divide_saturating(high, 1 << (right - 1), right) + range.offset,
                           range);
    }
#endif
    return clamp_to_s8(requantize(acc, multiplier, shift, range.offset), range.act_min,
                       range.act_max);
}

/* The taps [first_tap_inside, taps_until) of a window starting at `start` (step `dilation`)
 * that fall inside [0, size). */
static int32_t first_tap_inside(int32_t start, int32_t dilation) {
    return start >= 0 ? 0 : (-start + dilation - 1) / dilation;
}

static int32_t taps_until(int32_t start, int32_t dilation, int32_t taps, int32_t size) {
    const int32_t inside = start < size ? (size - 1 - start) / dilation + 1 : 0;
    return inside < taps ? inside : taps;
}

/* `filter` is pair-interleaved (devices/mcu/layout.py), an odd channel count padded with a
 * zero channel; `bias` is never NULL (the generator emits zeros); an odd last pixel is
 * computed in both lanes, lane b's copy going to a spare row at the end of the scratch. */
void mcu_conv2d_s8(const mcu_conv_params *p, const int8_t *input, const int8_t *filter,
                   const int32_t *bias, const int32_t *multipliers, const int32_t *shifts,
                   int8_t *output, int16_t *scratch) {
    const int32_t patch_len = p->k_h * p->k_w * p->in_c;
    const int32_t taps = padded_taps(patch_len);
    const int32_t pixels = p->out_h * p->out_w;
    const int32_t out_c = p->out_c;
    const output_range range = {p->output_offset, p->act_min, p->act_max,
                                p->act_min == -128 && p->act_max == 127};
    /* the two pixels' interleaved int16 patches, then the raw int8 patch being gathered,
     * whose padding taps hold the pad value (0 once widened) for good */
    int8_t *patch8 = (int8_t *)(scratch + 2 * taps);
    int8_t *spare_row = patch8 + taps;
    const int grey = grey_layer(p);
    uint16_t slot[GREY_MAX_TAPS];
    int32_t b, pixel, oc, in_y0, in_x0;
    fill_run(patch8 + patch_len, (int8_t)(-p->input_offset), taps - patch_len);
    if (grey) {
        for (oc = 0; oc < patch_len; ++oc) {
#if MCU_SIMD
            slot[oc] = (uint16_t)(8 * (oc >> 2) + ((oc & 1) << 1) + ((oc & 2) >> 1));
#else
            slot[oc] = (uint16_t)(8 * (oc >> 2) + (oc & 3));
#endif
        }
        memset(scratch, 0, (size_t)(2 * taps) * sizeof(int16_t)); /* the padding taps */
    }
    for (b = 0; b < p->batches; ++b) {
        const int8_t *batch_in = input + b * p->in_h * p->in_w * p->in_c;
        int8_t *batch_out = output + b * pixels * out_c;
        for (pixel = 0; pixel < pixels; pixel += 2) {
            const int32_t has_b = pixel + 1 < pixels;
            int8_t *out_a = batch_out + pixel * out_c;
            int8_t *out_b = has_b ? out_a + out_c : spare_row;
            const int8_t *weights = filter;
            if (grey && has_b && grey_pair(p, pixel, &in_y0, &in_x0)) {
                load_grey_pair(p, batch_in, in_y0, in_x0, slot, scratch);
            } else {
                load_patch(p, batch_in, pixel, patch8, scratch, 0);
                load_patch(p, batch_in, has_b ? pixel + 1 : pixel, patch8, scratch, 1);
            }
            for (oc = 0; oc < out_c; oc += 2, weights += 2 * taps) {
                int32_t acc[4];
                dot_tile_2x2(scratch, weights, taps >> 2, acc);
                requantize_channel(acc[0], acc[2], bias[oc], multipliers[oc], shifts[oc], range,
                                   out_a + oc, out_b + oc);
                if (oc + 1 < out_c) {
                    requantize_channel(acc[1], acc[3], bias[oc + 1], multipliers[oc + 1],
                                       shifts[oc + 1], range, out_a + oc + 1, out_b + oc + 1);
                }
            }
        }
    }
}

/* One output pixel of a depthwise convolution. The taps inside the input are a rectangle
 * [fy_start, fy_end) x [fx_start, fx_end), walked with pointer steps, no per-tap checks.
 * With one output per input channel, four channels at a time: one word of the input and
 * one of the weights per tap, widened by SXTB16, each lane multiplied by SMLABB/SMLATT into
 * its own accumulator. `bias` is never NULL (the generator emits zeros). */
static void depthwise_pixel(const mcu_conv_params *restrict p, const int8_t *restrict batch_in,
                            int32_t in_y0, int32_t in_x0, const int8_t *restrict filter,
                            const int32_t *restrict bias, const int32_t *restrict multipliers,
                            const int32_t *restrict shifts, output_range range,
                            int8_t *restrict out) {
    const int32_t in_c = p->in_c, out_c = p->out_c, in_w = p->in_w, k_w = p->k_w;
    const int32_t multiplier = p->depth_multiplier, offset = p->input_offset;
    const int32_t dilation_h = p->dilation_h, dilation_w = p->dilation_w;
    const int32_t fy_start = first_tap_inside(in_y0, dilation_h);
    const int32_t fy_end = taps_until(in_y0, dilation_h, p->k_h, p->in_h);
    const int32_t fx_start = first_tap_inside(in_x0, dilation_w);
    const int32_t fx_end = taps_until(in_x0, dilation_w, k_w, in_w);
    const int32_t tap_step = dilation_w * in_c;
    const int8_t *window = batch_in + (in_y0 * in_w + in_x0 + fx_start * dilation_w) * in_c;
    int32_t oc = 0, fy, fx;
    if (multiplier == 1) {
#if MCU_SIMD
        const uint32_t offset_pair = ((uint32_t)(uint16_t)offset << 16) | (uint16_t)offset;
#endif
        for (; oc + 4 <= out_c; oc += 4) {
            int32_t acc0 = bias[oc], acc1 = bias[oc + 1], acc2 = bias[oc + 2];
            int32_t acc3 = bias[oc + 3];
            for (fy = fy_start; fy < fy_end; ++fy) {
                const int8_t *x = window + fy * dilation_h * in_w * in_c + oc;
                const int8_t *w = filter + (fy * k_w + fx_start) * out_c + oc;
                for (fx = fx_start; fx < fx_end; ++fx, x += tap_step, w += out_c) {
#if MCU_SIMD
                    const uint32_t inputs = load_u32(x), weights = load_u32(w);
                    const uint32_t even = __sadd16(__sxtb16(inputs), offset_pair);
                    const uint32_t odd = __sadd16(sxtb16_odd(inputs), offset_pair);
                    const uint32_t weights_even = __sxtb16(weights);
                    const uint32_t weights_odd = sxtb16_odd(weights);
                    acc0 = __smlabb(even, weights_even, acc0);
                    acc2 = __smlatt(even, weights_even, acc2);
                    acc1 = __smlabb(odd, weights_odd, acc1);
                    acc3 = __smlatt(odd, weights_odd, acc3);
#else
                    acc0 += (x[0] + offset) * w[0];
                    acc1 += (x[1] + offset) * w[1];
                    acc2 += (x[2] + offset) * w[2];
                    acc3 += (x[3] + offset) * w[3];
#endif
                }
            }
            out[oc] = requantize_one(acc0, multipliers[oc], shifts[oc], range);
            out[oc + 1] = requantize_one(acc1, multipliers[oc + 1], shifts[oc + 1], range);
            out[oc + 2] = requantize_one(acc2, multipliers[oc + 2], shifts[oc + 2], range);
            out[oc + 3] = requantize_one(acc3, multipliers[oc + 3], shifts[oc + 3], range);
        }
    }
    for (; oc < out_c; ++oc) {  /* the channels left, and every depth multiplier > 1 */
        const int32_t ic = oc / multiplier;
        int32_t acc = bias[oc];
        for (fy = fy_start; fy < fy_end; ++fy) {
            const int8_t *x = window + fy * dilation_h * in_w * in_c + ic;
            const int8_t *w = filter + (fy * k_w + fx_start) * out_c + oc;
            for (fx = fx_start; fx < fx_end; ++fx, x += tap_step, w += out_c) {
                acc += (*x + offset) * *w;
            }
        }
        out[oc] = requantize_one(acc, multipliers[oc], shifts[oc], range);
    }
}

void mcu_depthwise_conv2d_s8(const mcu_conv_params *p, const int8_t *input,
                             const int8_t *filter, const int32_t *bias,
                             const int32_t *multipliers, const int32_t *shifts,
                             int8_t *output) {
    const output_range range = {p->output_offset, p->act_min, p->act_max,
                                p->act_min == -128 && p->act_max == 127};
    int32_t b, oy, ox;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *batch_in = input + b * p->in_h * p->in_w * p->in_c;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < p->out_w; ++ox) {
                depthwise_pixel(p, batch_in, in_y0, ox * p->stride_w - p->pad_left, filter, bias,
                                multipliers, shifts, range,
                                output + ((b * p->out_h + oy) * p->out_w + ox) * p->out_c);
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

/* The in-bounds taps of output pixel (oy, ox)'s window: [fy_start, fy_end) x
 * [fx_start, fx_end), and the window's top-left input pixel. */
typedef struct {
    int32_t in_y0, in_x0, fy_start, fy_end, fx_start, fx_end;
} pool_window;

static pool_window window_of(const mcu_pool_params *p, int32_t oy, int32_t ox) {
    pool_window window;
    window.in_y0 = oy * p->stride_h - p->pad_top;
    window.in_x0 = ox * p->stride_w - p->pad_left;
    window.fy_start = first_tap_inside(window.in_y0, 1);
    window.fy_end = taps_until(window.in_y0, 1, p->k_h, p->in_h);
    window.fx_start = first_tap_inside(window.in_x0, 1);
    window.fx_end = taps_until(window.in_x0, 1, p->k_w, p->in_w);
    return window;
}

#if MCU_SIMD
/* Per byte lane: `a` where a >= b, else `b` (SSUB8 sets the GE flags SEL reads; one asm
 * statement keeps the pair together). */
static uint32_t max_s8x4(uint32_t a, uint32_t b) {
    uint32_t result;
    __asm__("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(result) : "r"(a), "r"(b) : "cc");
    return result;
}
#endif

/* target[c] = max(target[c], source[c]) over `count` channels, four at a time with SIMD. */
static void max_into(int8_t *restrict target, const int8_t *restrict source, int32_t count) {
    int32_t c = 0;
#if MCU_SIMD
    for (; c + 4 <= count; c += 4) {
        const uint32_t larger = max_s8x4(load_u32(target + c), load_u32(source + c));
        memcpy(target + c, &larger, 4);
    }
#endif
    for (; c < count; ++c) {
        if (source[c] > target[c]) target[c] = source[c];
    }
}

/* TFLite's int8 MAX_POOL_2D: the maximum over the window's in-bounds taps (int8's lowest
 * when none is), then the activation clamp. Channels are innermost (NHWC), so each tap
 * updates the output pixel's whole channel row at once. */
void mcu_max_pool_s8(const mcu_pool_params *p, const int8_t *input, int8_t *output) {
    const int32_t channels = p->channels;
    const int32_t clamps = p->act_min > -128 || p->act_max < 127;
    int32_t b, oy, ox, fy, fx, c;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *batch_in = input + b * p->in_h * p->in_w * channels;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                const pool_window w = window_of(p, oy, ox);
                int8_t *out = output + ((b * p->out_h + oy) * p->out_w + ox) * channels;
                int32_t first = 1;
                for (fy = w.fy_start; fy < w.fy_end; ++fy) {
                    const int8_t *row = batch_in + ((w.in_y0 + fy) * p->in_w + w.in_x0) * channels;
                    for (fx = w.fx_start; fx < w.fx_end; ++fx, first = 0) {
                        if (first) {
                            memcpy(out, row + fx * channels, (size_t)channels);
                        } else {
                            max_into(out, row + fx * channels, channels);
                        }
                    }
                }
                if (first) memset(out, -128, (size_t)channels);
                if (clamps) {
                    for (c = 0; c < channels; ++c) {
                        out[c] = clamp_to_s8(out[c], p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}

/* TFLite's int8 AVERAGE_POOL_2D: the in-bounds taps' sum divided by their count, rounded
 * half away from zero, then the activation clamp. */
void mcu_average_pool_s8(const mcu_pool_params *p, const int8_t *input, int8_t *output) {
    const int32_t channels = p->channels;
    int32_t b, oy, ox, c, fy, fx;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *batch_in = input + b * p->in_h * p->in_w * channels;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                const pool_window w = window_of(p, oy, ox);
                const int32_t count = (w.fy_end - w.fy_start) * (w.fx_end - w.fx_start);
                int8_t *out = output + ((b * p->out_h + oy) * p->out_w + ox) * channels;
                for (c = 0; c < channels; ++c) {
                    int32_t sum = 0;
                    for (fy = w.fy_start; fy < w.fy_end; ++fy) {
                        for (fx = w.fx_start; fx < w.fx_end; ++fx) {
                            sum += batch_in[((w.in_y0 + fy) * p->in_w + w.in_x0 + fx) * channels +
                                            c];
                        }
                    }
                    if (count > 0) {
                        sum = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
                    }
                    out[c] = clamp_to_s8(sum, p->act_min, p->act_max);
                }
            }
        }
    }
}

/* ---- elementwise ------------------------------------------------------------------- */

/* An input of ADD rescaled to the common scale: TFLite's left shift, then multiply. */
static int32_t add_input(int32_t value, int32_t offset, int32_t left_shift, int32_t multiplier,
                         int32_t shift) {
    return multiply_smaller_than_one((int32_t)((uint32_t)(value + offset) << left_shift),
                                     multiplier, shift);
}

/* With `tables` (2 x 256 int32 of scratch, or NULL), each input's 256 possible rescaled
 * values are computed once per call, and each element costs two table reads and the output
 * requantization instead of three fixed-point multiplies. */
void mcu_add_s8(const mcu_add_params *p, const int8_t *input1, const int8_t *input2,
                int8_t *output, int32_t *tables) {
    const output_range range = {p->output_offset, p->act_min, p->act_max,
                                p->act_min == -128 && p->act_max == 127};
    int32_t i;
    if (tables) {
        int32_t *first = tables + 128, *second = tables + 256 + 128;
        for (i = -128; i < 128; ++i) {
            first[i] = add_input(i, p->input1_offset, p->left_shift, p->input1_multiplier,
                                 p->input1_shift);
            second[i] = add_input(i, p->input2_offset, p->left_shift, p->input2_multiplier,
                                  p->input2_shift);
        }
        for (i = 0; i < p->size; ++i) {
            output[i] = requantize_one(first[input1[i]] + second[input2[i]],
                                       p->output_multiplier, p->output_shift, range);
        }
        return;
    }
    for (i = 0; i < p->size; ++i) {
        const int32_t sum =
            add_input(input1[i], p->input1_offset, p->left_shift, p->input1_multiplier,
                      p->input1_shift) +
            add_input(input2[i], p->input2_offset, p->left_shift, p->input2_multiplier,
                      p->input2_shift);
        output[i] = requantize_one(sum, p->output_multiplier, p->output_shift, range);
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
