/* Board support of the benchmark firmware: UART0 text output, the SysTick tick counter
 * and the emulator exit. Written for the CMSDK APB UART of the Arm MPS2 FPGA images; on
 * another board reimplement these functions (or retarget them to your HAL). */
#ifndef BOARD_H
#define BOARD_H

#include <stdint.h>

void board_init(void);
void board_putc(char c);
char board_getc(void);
void board_puts(const char *text);
void board_putu(uint32_t value);
void board_puthex(uint8_t value);
void board_timer_start(void);
uint32_t board_ticks(void);  /* SysTick at the core clock: cycles on a real board */
void board_exit(void);       /* MCU_SEMIHOSTING_EXIT: ends an emulator run */

#endif /* BOARD_H */
