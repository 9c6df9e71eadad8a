/* Benchmark firmware: runs every bundled sample through model_invoke() and prints the
 * outputs and the SysTick ticks of each inference on UART0, one line per sample:
 *
 *   MCU-BENCH 1 samples=<n> input=<bytes> output=<bytes> macs=<macs>
 *   OVERHEAD ticks=<t>                       (an empty timed interval)
 *   SAMPLE <i> ticks=<t> out=<hex bytes>
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
    board_puts("DONE\n");
    board_exit();
    for (;;) {
    }
}
