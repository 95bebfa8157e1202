# hmac256 (tools/arm/cmod/hmac256/hmac256.c) for cmake-based ports (rp2): included by
# tools/arm/cmod/micropython.cmake, which tools/arm/build.sh passes as -DUSER_C_MODULES.
add_library(usermod_hmac256 INTERFACE)
target_sources(usermod_hmac256 INTERFACE ${CMAKE_CURRENT_LIST_DIR}/hmac256.c)
target_include_directories(usermod_hmac256 INTERFACE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(usermod INTERFACE usermod_hmac256)
