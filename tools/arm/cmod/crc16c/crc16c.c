// crc16c: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) in C for the ARM images (issue 12),
// compiled in by tools/arm/build.sh like hmac256. firmware/crc.py uses it when
// `import crc16c` works, else its viper or portable version (the same results).
//
//   crc16c.crc16(buf, start, end) -> the CRC of buf[start:end]
//   crc16c.stamp(buf, n): buf[n:n + 2] = the CRC of buf[:n] (LE): a record's, a slot
//       image's or a frame's trailer (firmware/crc.py stamp_portable)
//   crc16c.stamped(buf, n) -> True if buf[n:n + 2] holds the CRC of buf[:n] (LE)
//       (firmware/crc.py stamped_portable)
//   crc16c.seal(buf, n, wire) -> wire length: buf[n:n + 2] = the CRC of buf[:n] (LE), then
//       COBS(buf[:n + 2]) + 0x00 into wire (firmware/wire.py seal_portable, Encoder.finish)
//   crc16c.cobs_feed(chunk, i, end, buf, st) -> index after the bytes consumed: COBS-decode
//       chunk[i:end] into buf up to one 0x00, state in the array('i') st (firmware/wire.py
//       cobs_feed_portable, Decoder.feed: the same steps and results)
//
// Every persisted record and frame carries one: a link-state save (212 bytes) cost ~11,000
// M0+ instructions in viper (~52 a byte), ~10 a byte here. Table driven, no allocation.
//
// The frame's two byte loops (CRC + COBS) on the way out in one call, and COBS on the way
// in (issue 12): on the M0+ ~5,000 instructions of viper per ~100-byte answer, ~8 a byte here.

#include "py/runtime.h"

// CRC of each byte value (poly 0x1021), as firmware/crc.py builds its _TABLE
static const uint16_t table[256] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7, 0x8108, 0x9129, 0xa14a, 0xb16b,
    0xc18c, 0xd1ad, 0xe1ce, 0xf1ef, 0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
    0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de, 0x2462, 0x3443, 0x0420, 0x1401,
    0x64e6, 0x74c7, 0x44a4, 0x5485, 0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
    0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4, 0xb75b, 0xa77a, 0x9719, 0x8738,
    0xf7df, 0xe7fe, 0xd79d, 0xc7bc, 0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
    0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b, 0x5af5, 0x4ad4, 0x7ab7, 0x6a96,
    0x1a71, 0x0a50, 0x3a33, 0x2a12, 0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
    0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41, 0xedae, 0xfd8f, 0xcdec, 0xddcd,
    0xad2a, 0xbd0b, 0x8d68, 0x9d49, 0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
    0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78, 0x9188, 0x81a9, 0xb1ca, 0xa1eb,
    0xd10c, 0xc12d, 0xf14e, 0xe16f, 0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
    0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e, 0x02b1, 0x1290, 0x22f3, 0x32d2,
    0x4235, 0x5214, 0x6277, 0x7256, 0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
    0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405, 0xa7db, 0xb7fa, 0x8799, 0x97b8,
    0xe75f, 0xf77e, 0xc71d, 0xd73c, 0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
    0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab, 0x5844, 0x4865, 0x7806, 0x6827,
    0x18c0, 0x08e1, 0x3882, 0x28a3, 0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
    0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92, 0xfd2e, 0xed0f, 0xdd6c, 0xcd4d,
    0xbdaa, 0xad8b, 0x9de8, 0x8dc9, 0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
    0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8, 0x6e17, 0x7e36, 0x4e55, 0x5e74,
    0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
};

static uint32_t crc16(const uint8_t *p, const uint8_t *stop) {
    uint32_t crc = 0xFFFF;
    while (p < stop) {
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ *p++) & 0xFF];
    }
    return crc;
}

static mp_obj_t crc16c_crc16(mp_obj_t buf_in, mp_obj_t start_in, mp_obj_t end_in) {
    mp_buffer_info_t buf;
    mp_get_buffer_raise(buf_in, &buf, MP_BUFFER_READ);
    mp_int_t start = mp_obj_get_int(start_in);
    mp_int_t end = mp_obj_get_int(end_in);
    if (start < 0 || (size_t)end > buf.len) {
        mp_raise_ValueError(MP_ERROR_TEXT("start:end outside the buffer"));
    }
    // end <= start: nothing to hash (0xFFFF), as the Python versions
    return MP_OBJ_NEW_SMALL_INT(crc16((const uint8_t *)buf.buf + start, (const uint8_t *)buf.buf + end));
}
static MP_DEFINE_CONST_FUN_OBJ_3(crc16c_crc16_obj, crc16c_crc16);

// buf[:n + 2] of a writable (stamp) or readable buffer, else ValueError
static uint8_t *trailer_buffer(mp_obj_t buf_in, mp_obj_t n_in, mp_int_t *n, int flags) {
    mp_buffer_info_t buf;
    mp_get_buffer_raise(buf_in, &buf, flags);
    *n = mp_obj_get_int(n_in);
    if (*n < 0 || (size_t)*n + 2 > buf.len) {
        mp_raise_ValueError(MP_ERROR_TEXT("n + 2 bytes (the CRC) outside the buffer"));
    }
    return buf.buf;
}

static mp_obj_t crc16c_stamp(mp_obj_t buf_in, mp_obj_t n_in) {
    mp_int_t n;
    uint8_t *p = trailer_buffer(buf_in, n_in, &n, MP_BUFFER_WRITE);
    uint32_t crc = crc16(p, p + n);
    p[n] = crc & 0xFF;
    p[n + 1] = crc >> 8;
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(crc16c_stamp_obj, crc16c_stamp);

static mp_obj_t crc16c_stamped(mp_obj_t buf_in, mp_obj_t n_in) {
    mp_int_t n;
    const uint8_t *p = trailer_buffer(buf_in, n_in, &n, MP_BUFFER_READ);
    return mp_obj_new_bool(crc16(p, p + n) == (uint32_t)(p[n] | (p[n + 1] << 8)));
}
static MP_DEFINE_CONST_FUN_OBJ_2(crc16c_stamped_obj, crc16c_stamped);

// buf[n:n + 2] = the CRC of buf[:n], then COBS(buf[:n + 2]) + 0x00 into wire; the wire
// length. Also hmac256's seal (a signed answer's trailer, CRC and COBS in one call).
size_t crc16c_seal_into(uint8_t *src, size_t n, size_t buf_len, uint8_t *dst, size_t wire_len) {
    if (n + 2 > buf_len) {
        mp_raise_ValueError(MP_ERROR_TEXT("n + 2 bytes (the CRC) outside the buffer"));
    }
    size_t len = n + 2;
    if (len + len / 254 + 2 > wire_len) {
        mp_raise_ValueError(MP_ERROR_TEXT("wire buffer too short for the COBS frame"));
    }
    uint32_t crc = crc16(src, src + n);
    src[n] = crc & 0xFF;
    src[n + 1] = crc >> 8;
    // COBS as wire.cobs_encode_portable (no empty block after a final 0xFF block)
    size_t code_at = 0, m = 1, i = 0;
    uint32_t code = 1;
    while (i < len) {
        uint8_t b = src[i++];
        if (b == 0) {
            dst[code_at] = code;
            code_at = m++;
            code = 1;
        } else {
            dst[m++] = b;
            if (++code == 0xFF) {
                dst[code_at] = code;
                if (i < len) {
                    code_at = m++;
                    code = 1;
                } else {
                    code = 0; // closed: nothing follows
                }
            }
        }
    }
    if (code) {
        dst[code_at] = code;
    }
    dst[m] = 0;
    return m + 1;
}

static mp_obj_t crc16c_seal(mp_obj_t buf_in, mp_obj_t n_in, mp_obj_t wire_in) {
    mp_buffer_info_t buf, wire;
    mp_get_buffer_raise(buf_in, &buf, MP_BUFFER_WRITE);
    mp_get_buffer_raise(wire_in, &wire, MP_BUFFER_WRITE);
    mp_int_t n = mp_obj_get_int(n_in);
    if (n < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("n + 2 bytes (the CRC) outside the buffer"));
    }
    return MP_OBJ_NEW_SMALL_INT(crc16c_seal_into(buf.buf, n, buf.len, wire.buf, wire.len));
}
static MP_DEFINE_CONST_FUN_OBJ_3(crc16c_seal_obj, crc16c_seal);

// firmware/wire.py's decoder state (D_*): st[0..6]
enum { D_N, D_CODE, D_LEFT, D_BAD, D_CAP, D_SIZE, D_DONE, D_LEN };

static mp_obj_t crc16c_cobs_feed(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t chunk, buf, state;
    mp_get_buffer_raise(args[0], &chunk, MP_BUFFER_READ);
    mp_int_t i = mp_obj_get_int(args[1]);
    mp_int_t end = mp_obj_get_int(args[2]);
    mp_get_buffer_raise(args[3], &buf, MP_BUFFER_WRITE);
    mp_get_buffer_raise(args[4], &state, MP_BUFFER_WRITE);
    if (state.typecode != 'i' || state.len < D_LEN * sizeof(int32_t)) {
        mp_raise_ValueError(MP_ERROR_TEXT("st: array('i') of 7 needed"));
    }
    int32_t *st = state.buf;
    if (i < 0 || end > (mp_int_t)chunk.len || st[D_CAP] < 0 || (size_t)st[D_CAP] > buf.len) {
        mp_raise_ValueError(MP_ERROR_TEXT("i:end outside the chunk or capacity past the buffer"));
    }
    const uint8_t *in = chunk.buf;
    uint8_t *out = buf.buf;
    int32_t n = st[D_N], code = st[D_CODE], left = st[D_LEFT], bad = st[D_BAD], cap = st[D_CAP];
    while (i < end) {
        uint8_t b = in[i++];
        if (b == 0) {
            st[D_SIZE] = bad || left ? -1 : n;
            st[D_DONE] = 1;
            st[D_N] = st[D_CODE] = st[D_LEFT] = st[D_BAD] = 0;
            return MP_OBJ_NEW_SMALL_INT(i);
        }
        if (bad) {
            continue;
        }
        if (left == 0) {
            if (code && code != 0xFF) { // the previous block ended with a zero
                if (n >= cap) {
                    bad = 1;
                    continue;
                }
                out[n++] = 0;
            }
            code = b;
            left = b - 1;
        } else {
            if (n >= cap) {
                bad = 1;
                continue;
            }
            out[n++] = b;
            left--;
        }
    }
    st[D_N] = n;
    st[D_CODE] = code;
    st[D_LEFT] = left;
    st[D_BAD] = bad;
    return MP_OBJ_NEW_SMALL_INT(i);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(crc16c_cobs_feed_obj, 5, 5, crc16c_cobs_feed);

static const mp_rom_map_elem_t crc16c_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_crc16c) },
    { MP_ROM_QSTR(MP_QSTR_crc16), MP_ROM_PTR(&crc16c_crc16_obj) },
    { MP_ROM_QSTR(MP_QSTR_stamp), MP_ROM_PTR(&crc16c_stamp_obj) },
    { MP_ROM_QSTR(MP_QSTR_stamped), MP_ROM_PTR(&crc16c_stamped_obj) },
    { MP_ROM_QSTR(MP_QSTR_seal), MP_ROM_PTR(&crc16c_seal_obj) },
    { MP_ROM_QSTR(MP_QSTR_cobs_feed), MP_ROM_PTR(&crc16c_cobs_feed_obj) },
};
static MP_DEFINE_CONST_DICT(crc16c_module_globals, crc16c_module_globals_table);

const mp_obj_module_t crc16c_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&crc16c_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_crc16c, crc16c_user_cmodule);
