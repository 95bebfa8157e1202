
// micropump (tools/arm/pico/mpconfigboard-extra.h, appended to RPI_PICO's mpconfigboard.h
// by tools/arm/build.sh): Python call frames on a fixed 8 KiB stack, as on the QEMU board
// (tools/arm/qemu/mpconfigboard.h says why; micropython-rp2.patch gives it to
// mp_pystack_init). It is bss, so the GC heap, which takes the RAM the linker leaves,
// is 8 KiB smaller.
#define MICROPY_ENABLE_PYSTACK                  (1)
#define MICROPUMP_PYSTACK_WORDS                 (2048)
// The map lookup cache at 1024 entries, as on the QEMU board (tools/arm/qemu/mpconfigboard.h
// says why): 896 bytes more bss, so a heap that much smaller.
#define MICROPY_OPT_MAP_LOOKUP_CACHE_SIZE       (1024)
