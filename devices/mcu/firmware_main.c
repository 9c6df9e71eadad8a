/* Benchmark firmware: runs every bundled sample through model_invoke() and prints the
 * outputs and the SysTick ticks of each inference on UART0, one line per sample:
 *
 *   MCU-BENCH 1 samples=<n> input=<bytes> output=<bytes> macs=<macs>
 *   OVERHEAD ticks=<t>                       (an empty timed interval)
 *   SAMPLE <i> ticks=<t> out=<hex bytes>
 *   LAYER <i> ticks=<t>                      (MCU_LAYER_PROFILE: op i of the last sample)
 *   DONE
 *
 * Board specifics are the CMSDK APB UART of the Arm MPS2 images and the core's SysTick;
 * on another board reimplement board_mps2.c. MCU_WAIT_FOR_START waits for one byte on the
 * UART before starting (serial transport); MCU_SEMIHOSTING_EXIT ends an emulator run.
 */
#include <stdint.h>

#include "board.h"
#include "model.h"
#include "model_samples.h"

#ifdef MCU_LAYER_PROFILE
static uint32_t layer_ticks[MODEL_OP_COUNT];
static uint32_t layer_last;

/* Each layer's ticks are overwritten per sample: the kernels are data-independent, so the
 * last sample's layers stand for every sample's (and no 32-bit sum can overflow). */
void model_layer_mark(uint32_t mark) {
    const uint32_t now = board_ticks();
    if (mark > 0) layer_ticks[mark - 1] = now - layer_last;
    layer_last = now;
}

static void print_layers(void) {
    uint32_t op;
    for (op = 0; op < MODEL_OP_COUNT; ++op) {
        board_puts("LAYER ");
        board_putu(op);
        board_puts(" ticks=");
        board_putu(layer_ticks[op]);
        board_puts("\n");
    }
}
#endif

int main(void) {
    static int8_t output[MODEL_OUTPUT_BYTES];
    uint32_t sample, index, start, ticks;
    board_init();
#ifdef MCU_WAIT_FOR_START
    (void)board_getc();
#else
    (void)board_getc;
#endif
    board_timer_start();
    board_puts("MCU-BENCH 1 samples=");
    board_putu(MODEL_SAMPLE_COUNT);
    board_puts(" input=");
    board_putu(MODEL_INPUT_BYTES);
    board_puts(" output=");
    board_putu(MODEL_OUTPUT_BYTES);
    board_puts(" macs=");
    board_putu((uint32_t)MODEL_MACS);
    board_puts("\n");
    start = board_ticks();
    ticks = board_ticks() - start;
    board_puts("OVERHEAD ticks=");
    board_putu(ticks);
    board_puts("\n");
    for (sample = 0; sample < MODEL_SAMPLE_COUNT; ++sample) {
        start = board_ticks();
        model_invoke(model_samples[sample], output);
        ticks = board_ticks() - start;
        board_puts("SAMPLE ");
        board_putu(sample);
        board_puts(" ticks=");
        board_putu(ticks);
        board_puts(" out=");
        for (index = 0; index < MODEL_OUTPUT_BYTES; ++index) board_puthex((uint8_t)output[index]);
        board_puts("\n");
    }
#ifdef MCU_LAYER_PROFILE
    print_layers();
#endif
    board_puts("DONE\n");
    board_exit();
    for (;;) {
    }
}
