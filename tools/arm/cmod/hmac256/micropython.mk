# hmac256 (tools/arm/cmod/hmac256/hmac256.c) for make-based ports: tools/arm/build.sh passes
# USER_C_MODULES=tools/arm/cmod to ports/qemu's make.
HMAC256_MOD_DIR := $(USERMOD_DIR)
SRC_USERMOD_C += $(HMAC256_MOD_DIR)/hmac256.c
