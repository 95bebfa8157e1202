
# micropump (tools/arm/pico/mpconfigboard-extra.cmake, appended to RPI_PICO's file by
# tools/arm/build.sh): `picotool info` shows the firmware id (sha256 of the frozen sources,
# computed by build.sh) as the program description.
list(APPEND MICROPY_DEF_BOARD
    PICO_PROGRAM_DESCRIPTION="micropump firmware ${MICROPUMP_FIRMWARE_ID}"
)
