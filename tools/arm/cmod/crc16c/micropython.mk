# crc16c (tools/arm/cmod/crc16c/crc16c.c) for make-based ports: tools/arm/build.sh passes
# USER_C_MODULES=tools/arm/cmod to ports/qemu's make.
CRC16C_MOD_DIR := $(USERMOD_DIR)
SRC_USERMOD_C += $(CRC16C_MOD_DIR)/crc16c.c
