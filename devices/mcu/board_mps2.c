/* See board.h. */
#include "board.h"

#define UART0_BASE 0x40004000u
#define UART_DATA (*(volatile uint32_t *)(UART0_BASE + 0x000))
#define UART_STATE (*(volatile uint32_t *)(UART0_BASE + 0x004))
#define UART_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x008))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x010))

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

static volatile uint32_t systick_wraps;

void SysTick_Handler(void) { systick_wraps++; }

void board_init(void) {
    UART_BAUDDIV = 16;
    UART_CTRL = 0x3; /* TX and RX enable */
}

void board_putc(char c) {
    while (UART_STATE & 0x1) {
    }
    UART_DATA = (uint32_t)(unsigned char)c;
}

char board_getc(void) {
    while (!(UART_STATE & 0x2)) {
    }
    return (char)UART_DATA;
}

void board_puts(const char *text) {
    while (*text) board_putc(*text++);
}

void board_putu(uint32_t value) {
    char digits[11];
    int count = 0;
    do {
        digits[count++] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value);
    while (count) board_putc(digits[--count]);
}

void board_puthex(uint8_t value) {
    static const char hex[] = "0123456789abcdef";
    board_putc(hex[value >> 4]);
    board_putc(hex[value & 0xF]);
}

void board_timer_start(void) {
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 0x7; /* processor clock, interrupt on wrap, enable */
    /* the counter sits at 0 until its first reload; that reload is no wrap */
    while (SYST_CVR == 0) {
    }
    systick_wraps = 0;
}

uint32_t board_ticks(void) {
    uint32_t wraps, value;
    do {
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    return (wraps << 24) + (0x00FFFFFFu - value);
}

void board_exit(void) {
#ifdef MCU_SEMIHOSTING_EXIT
    /* SYS_EXIT with ADP_Stopped_ApplicationExit */
    register uint32_t reason __asm__("r0") = 0x18;
    register uint32_t argument __asm__("r1") = 0x20026;
    __asm__ volatile("bkpt 0xab" : : "r"(reason), "r"(argument) : "memory");
#endif
}

