// micropump's QEMU board: the HAL pieces ports/qemu lacks (MicroPython 1.25).
// - time: SysTick interrupts every 1 ms of the 25 MHz mps2-an385 system clock (qemu's
//   virtual clock: under -icount it follows the instruction count, so runs repeat);
// - mp_hal_stdio_poll: UART0 receive state, so select.poll works on sys.stdin;
// - qemu_board_exit(code): semihosting SYS_EXIT_EXTENDED, qemu exits with `code`
//   (the launcher restarts the board after a simulated power cut or watchdog reset).

#include <stdint.h>
#include "py/mphal.h"
#include "py/stream.h"

#define SYSCLK_HZ 25000000u
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26)
#define UART0_STATE (*(volatile uint32_t *)0x40004004u)
#define UART_STATE_RXFULL (1u << 1)

static volatile uint32_t board_ms;
static int board_ticking;

void SysTick_Handler(void) {
    board_ms++;
}

static void board_tick_start(void) {
    if (!board_ticking) {
        board_ticking = 1;
        SYST_RVR = SYSCLK_HZ / 1000u - 1u;
        SYST_CVR = 0;
        SYST_CSR = 7u; // processor clock, interrupt, enable
    }
}

mp_uint_t mp_hal_ticks_ms(void) {
    board_tick_start();
    return board_ms;
}

// ms and the SysTick count as one reading. A SysTick interrupt between the two reads would
// pair a new ms with an old count (the loop); a wrap whose interrupt is pending is counted
// (ICSR.PENDSTSET). Under qemu the counter can also read as wrapped before the timer has
// even set the interrupt pending (it runs between translation blocks): the count then
// belongs to the next ms and the reading is exactly 1 ms early. That made one measured
// tick in ~2,000 1,000,000 instructions too long (benchmarks/RESULTS.md, issue 12). A
// ticks_cpu reading more than half a ms before the previous one is such a case: it gets
// its ms (ticks_us is not used for measurements and keeps the reading as it is).
static uint32_t board_count(uint32_t *cv_out) {
    board_tick_start();
    uint32_t ms, cv, pending;
    do {
        ms = board_ms;
        cv = SYST_CVR;
        pending = SCB_ICSR & ICSR_PENDSTSET;
        if (pending) {
            cv = SYST_CVR; // after the wrap: a count of the next ms
        }
    } while (ms != board_ms);
    *cv_out = cv;
    return pending ? ms + 1u : ms;
}

mp_uint_t mp_hal_ticks_us(void) {
    uint32_t cv;
    uint32_t ms = board_count(&cv);
    return ms * 1000u + (SYSCLK_HZ / 1000u - 1u - cv) / (SYSCLK_HZ / 1000000u);
}

// 25 MHz system clock counts: under qemu -icount shift=0 one count is 40 instructions
static uint32_t board_last_cpu; // the previous reading

mp_uint_t mp_hal_ticks_cpu(void) {
    uint32_t cv;
    uint32_t ms = board_count(&cv);
    uint32_t t = ms * (SYSCLK_HZ / 1000u) + (SYSCLK_HZ / 1000u - 1u - cv);
    if ((int32_t)(board_last_cpu - t) > (int32_t)(SYSCLK_HZ / 2000u)) {
        t += SYSCLK_HZ / 1000u; // read 1 ms early (above)
    }
    board_last_cpu = t;
    return t;
}

void mp_hal_delay_ms(mp_uint_t ms) {
    uint32_t start = mp_hal_ticks_ms();
    while (mp_hal_ticks_ms() - start < ms) {
        __asm volatile ("wfi");
    }
}

void mp_hal_delay_us(mp_uint_t us) {
    uint32_t start = mp_hal_ticks_us();
    while (mp_hal_ticks_us() - start < us) {
    }
}

uint64_t mp_hal_time_ns(void) {
    return (uint64_t)mp_hal_ticks_us() * 1000u;
}

uintptr_t mp_hal_stdio_poll(uintptr_t poll_flags) {
    uintptr_t ret = 0;
    if ((poll_flags & MP_STREAM_POLL_RD) && (UART0_STATE & UART_STATE_RXFULL)) {
        ret |= MP_STREAM_POLL_RD;
    }
    if (poll_flags & MP_STREAM_POLL_WR) {
        ret |= MP_STREAM_POLL_WR; // writes go straight to the UART
    }
    return ret;
}

// qemu's ARM semihosting: SYS_EXIT_EXTENDED takes (reason, exit status)
void qemu_board_exit(int code) {
    uint32_t block[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)code};
    register uint32_t r0 __asm__ ("r0") = 0x20u;
    register uint32_t *r1 __asm__ ("r1") = block;
    __asm volatile ("bkpt 0xab" : "+r" (r0) : "r" (r1) : "memory");
    for (;;) {
    }
}

// The exit word in the board's control area (boards/qemu_layout.py CONTROL_AT + 4):
// boards/qemu_arm.py writes the status before it ends the firmware.
int qemu_board_exit_status(void) {
    return (int)*(volatile uint32_t *)0x21101004u;
}
