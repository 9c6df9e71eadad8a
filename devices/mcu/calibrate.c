/* Calibration firmware: times a loop of a known number of instructions with the same
 * SysTick reads as the benchmark, so the host learns instructions per tick under
 * `-icount shift=0` instead of assuming the board's timer clock.
 *
 *   CALIBRATE instructions=<n> ticks=<t>
 */
#include <stdint.h>

#include "board.h"

#define LOOP_ITERATIONS 1000000u


int main(void) {
    uint32_t start, ticks;
    uint32_t counter = LOOP_ITERATIONS;
    board_init();
    board_timer_start();
    start = board_ticks();
    /* two instructions per iteration: subs + bne */
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(counter) : : "cc");
    ticks = board_ticks() - start;
    board_puts("CALIBRATE instructions=");
    board_putu(2u * LOOP_ITERATIONS);
    board_puts(" ticks=");
    board_putu(ticks);
    board_puts("\n");
    board_exit();
    for (;;) {
    }
}
