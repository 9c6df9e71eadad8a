/* Minimal Cortex-M startup: vector table, .data copy, .bss clear, then main(). */
#include <stdint.h>

extern uint32_t _data_load, _data_start, _data_end, _bss_start, _bss_end, _stack_top;
int main(void);
void Reset_Handler(void);
void SysTick_Handler(void);

static void default_handler(void) {
    for (;;) {
    }
}

void NMI_Handler(void) __attribute__((weak, alias("default_handler")));
void HardFault_Handler(void) __attribute__((weak, alias("default_handler")));

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_stack_top),
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    default_handler, default_handler, default_handler, 0, 0, 0, 0,
    default_handler, default_handler, 0, default_handler,
    SysTick_Handler,
};

void Reset_Handler(void) {
    uint32_t *source = &_data_load;
    uint32_t *target = &_data_start;
    while (target < &_data_end) *target++ = *source++;
    for (target = &_bss_start; target < &_bss_end; ++target) *target = 0;
    main();
    for (;;) {
    }
}
