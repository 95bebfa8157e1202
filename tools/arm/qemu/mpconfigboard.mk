# micropump's QEMU board (HW-4): MicroPython's MPS2_AN385 board (ports/qemu), built for
# ARMv6-M (-mcpu=cortex-m0plus) so that the instruction stream is a Pico's; qemu's
# mps2-an385 runs it on its Cortex-M3 (ARMv7-M executes ARMv6-M code unchanged).
# Used as BOARD_DIR by tools/arm/build.sh; configuration overrides in mpconfigboard.h.
QEMU_ARCH = arm
QEMU_MACHINE = mps2-an385

CFLAGS += -mthumb -mcpu=cortex-m0plus -mfloat-abi=soft
CFLAGS += -DQEMU_SOC_MPS2
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M0+ code on mps2-an385"'
CFLAGS += -I$(BOARD_DIR)

LDSCRIPT = mcu/arm/mps2.ld

# ARMv6-M has no Thumb-2: the thumb1 register scan for the GC
SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb1.o
# ticks (SysTick), sleeps (WFI), stdin polling and exit codes: board_hal.c
SRC_C += $(BOARD_DIR)/board_hal.c

MPY_CROSS_FLAGS += -march=armv6m

# a Pico's MicroPython heap is about 192 KiB
MICROPY_HEAP_SIZE = 196608

# the pump firmware, frozen (bytecode stays in flash)
FROZEN_MANIFEST = $(BOARD_DIR)/manifest.py
