// micropump's QEMU board: overrides of ports/qemu/mpconfigport.h, included at its top
// (tools/arm/qemu/micropython-qemu.patch). Each line says why.

// ARMv6-M: the native emitter must not use Thumb-2 instructions, and there is no FPU
#define MICROPY_EMIT_THUMB_ARMV7M          (0)
#define MICROPY_EMIT_INLINE_THUMB_FLOAT    (0)

// the firmware's clock and the board's waits need time.ticks_ms/ticks_us/sleep_ms
// (board_hal.c: SysTick at 1 kHz on the 25 MHz system clock)
#define MICROPY_PY_TIME                    (1)

// binary frames on the UART: sys.stdout.buffer writes raw bytes (the text stream would
// turn \n into \r\n) and select.poll on sys.stdin (board_hal.c mp_hal_stdio_poll)
#define MICROPY_PY_SYS_STDIO_BUFFER        (1)
#define MICROPY_PY_SELECT                  (1)

// waiting for input sleeps the core until the next interrupt (SysTick or the UART)
// instead of spinning qemu at 100 % of a host core
#define MICROPY_INTERNAL_WFE(TIMEOUT_MS)   __asm volatile ("wfi")

// main.c runs the frozen main.py (the pump) instead of the REPL (micropython-qemu.patch)
#define MICROPY_BOARD_FROZEN_MAIN          (1)

// Python call frames on a fixed 8 KiB stack (bss, not the heap; micropython-qemu.patch
// gives it to mp_pystack_init). Without it a call whose frame exceeds 11 words takes a heap
// block on every call (py/objfun.c) unless the heap is locked: the tick and the requests
// then cost more on a running pump than under heap_lock, and more still on a fragmented
// heap (benchmarks/arm_call_frames.py). The Pico image has the same (tools/arm/pico).
#define MICROPY_ENABLE_PYSTACK             (1)
#define MICROPUMP_PYSTACK_WORDS            (2048)

// MicroPython's map lookup cache (py/map.c: the last slot of each name, shared by every
// dict and module table) indexed by the name's qstr number modulo its size: with the
// default 128 entries the request and tick paths' names evict each other, and which ones
// collide moves with every qstr added anywhere (figures moved by up to ~3 % per change,
// issue 12). 1024 one-byte entries (bss) make the hot names' collisions rare.
#define MICROPY_OPT_MAP_LOOKUP_CACHE_SIZE  (1024)
