/* int8 kernels bit-exact with TFLite's reference kernels (portable C99).
 *
 * Compile with -DMCU_USE_SIMD on a core with the DSP extension (Cortex-M4/M7) to use its
 * SIMD instructions (SMLAD, SMLABB/SMLATT, SXTB16, QADD, SSAT, SSUB8/SEL) in the conv,
 * depthwise, fully connected and pooling loops; results are identical, every step being
 * exact integer arithmetic. CONV_2D filters arrive in the pair-interleaved layout the code
 * generator writes (devices/mcu/layout.py).
 */
#ifndef MCU_KERNELS_H
#define MCU_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_top, pad_left;
    int32_t depth_multiplier; /* depthwise only */
    int32_t input_offset;     /* -input zero point */
    int32_t output_offset;    /* output zero point */
    int32_t act_min, act_max;
} mcu_conv_params;

typedef struct {
    int32_t batches, depth, units;
    int32_t input_offset, filter_offset, output_offset;
    int32_t act_min, act_max;
    int32_t single_rounding; /* LiteRT's int8 FC rounds once, in 64 bits */
} mcu_fc_params;

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, channels;
    int32_t out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, pad_top, pad_left;
    int32_t act_min, act_max;
} mcu_pool_params;

typedef struct {
    int32_t size;
    int32_t input1_offset, input2_offset, output_offset;
    int32_t left_shift;
    int32_t input1_multiplier, input1_shift;
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
} mcu_add_params;

/* MEAN over H and W of an NHWC tensor. TFLite folds 1/count into the multiplier. */
typedef struct {
    int32_t batches, in_h, in_w, channels;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift;
} mcu_mean_params;

typedef struct {
    int32_t in_shape[4];
    int32_t before[4];
    int32_t out_shape[4];
    int8_t pad_value;
} mcu_pad_params;

typedef struct {
    int32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift;
} mcu_requantize_params;

int32_t mcu_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift);

/* `scratch` holds 2 * k_h * k_w * in_c int16 values and k_h * k_w * in_c bytes (conv), or
 * `depth` int16 values (fully connected). */
void mcu_conv2d_s8(const mcu_conv_params *p, const int8_t *input, const int8_t *filter,
                   const int32_t *bias, const int32_t *multipliers, const int32_t *shifts,
                   int8_t *output, int16_t *scratch);
void mcu_depthwise_conv2d_s8(const mcu_conv_params *p, const int8_t *input,
                             const int8_t *filter, const int32_t *bias,
                             const int32_t *multipliers, const int32_t *shifts,
                             int8_t *output);
void mcu_fully_connected_s8(const mcu_fc_params *p, const int8_t *input, const int8_t *filter,
                            const int32_t *bias, const int32_t *multipliers,
                            const int32_t *shifts, int8_t *output, int16_t *scratch);
void mcu_max_pool_s8(const mcu_pool_params *p, const int8_t *input, int8_t *output);
void mcu_average_pool_s8(const mcu_pool_params *p, const int8_t *input, int8_t *output);
/* `tables`: 512 int32 of scratch for the per-input lookup tables (worth it from about a
 * thousand elements), or NULL. */
void mcu_add_s8(const mcu_add_params *p, const int8_t *input1, const int8_t *input2,
                int8_t *output, int32_t *tables);
void mcu_mean_s8(const mcu_mean_params *p, const int8_t *input, int8_t *output);
void mcu_pad_s8(const mcu_pad_params *p, const int8_t *input, int8_t *output);
void mcu_requantize_s8(const mcu_requantize_params *p, const int8_t *input, int8_t *output);
void mcu_clamp_s8(int32_t size, int32_t act_min, int32_t act_max, const int8_t *input,
                  int8_t *output);
void mcu_copy_s8(int32_t size, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* MCU_KERNELS_H */
