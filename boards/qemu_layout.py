"""Persistent memory of the QEMU board (boards/qemu_arm.py), shared with its host launcher
(tools/arm/qemu.py).

qemu maps mps2-an385's 16 MiB PSRAM (0x21000000) onto the file DIR/flash.bin
(memory-backend-file, share=on): what the firmware writes there is in the file at once, so
it survives the end of qemu (a power cut) like flash, and the launcher can provision the
key and the world before a boot. File offset = address - PSRAM.
"""

PSRAM = 0x21000000
PSRAM_SIZE = 16 * 1024 * 1024
FLASH_AT = PSRAM  # storage regions, then the board area (boards/unix.region_layout)
WORLD_AT = PSRAM + 0x100000  # u32 length, then the world's JSON (boards/emulator.World)
WORLD_MAX = 4092
CONTROL_AT = PSRAM + 0x101000  # u32 words, then the key
C_MAGIC = 0  # CONTROL_MAGIC once the launcher has provisioned the board
C_EXIT = 4  # exit status qemu ends with (tools/arm/qemu/board_hal.c reads it)
C_RESET = 8  # reset cause of this boot (protocol.spec RESET_*), set by the launcher
C_PULSE = 12  # pulse size in mU
C_KEY = 16  # 32-byte pairing key (SEC-1)
C_MODE = 48  # MODE_PUMP, or MODE_SCRIPT: run the script at SCRIPT_AT instead (measurements)
C_SENSOR = 52  # 1: the sensor link is UART1, which qemu connects to the launcher's pty
CONTROL_SIZE = 56
SCRIPT_AT = PSRAM + 0x102000  # u32 length, then MicroPython source
SCRIPT_MAX = 0x40000 - 4
# a ROMFS image of the firmware's .mpy files (tools/arm/romfs.py), or anything else: the
# board's main.py boots from it when it starts with the ROMFS header (issue 12)
ROMFS_AT = PSRAM + 0x200000
ROMFS_MAX = 0x100000
MODE_PUMP = 0
MODE_SCRIPT = 1
CONTROL_MAGIC = 0x554D4551  # "QEMU" little-endian

EXIT_CRASH = 1  # the firmware ended by an exception: the launcher does not restart it

# mps2-an385's CMSDK APB UART1 (qemu gives it the second -serial): the sensor link (SNS-4)
UART1 = 0x40005000  # DATA; STATE at +4, CTRL at +8, BAUDDIV at +0x10
UART_STATE_RXFULL = 2
UART_CTRL_RX_EN = 2
UART_BAUDDIV_115200 = 217  # the 25 MHz APB clock / 115200 baud
