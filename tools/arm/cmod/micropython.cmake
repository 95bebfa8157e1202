# micropump's user C modules for cmake-based ports (rp2: tools/arm/build.sh pico passes
# this file as -DUSER_C_MODULES); make-based ports (qemu) find each */micropython.mk.
include(${CMAKE_CURRENT_LIST_DIR}/hmac256/micropython.cmake)
include(${CMAKE_CURRENT_LIST_DIR}/crc16c/micropython.cmake)
