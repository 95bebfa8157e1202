# crc16c (tools/arm/cmod/crc16c/crc16c.c) for cmake-based ports (rp2): included by
# tools/arm/cmod/micropython.cmake, which tools/arm/build.sh passes as -DUSER_C_MODULES.
add_library(usermod_crc16c INTERFACE)
target_sources(usermod_crc16c INTERFACE ${CMAKE_CURRENT_LIST_DIR}/crc16c.c)
target_include_directories(usermod_crc16c INTERFACE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(usermod INTERFACE usermod_crc16c)
