// hmac256: HMAC-SHA256 with one key for the pump's link (SEC-2, issue 12), compiled into
// the ARM images as a user C module (tools/arm/build.sh). firmware/wire.py's Auth uses it
// when `import hmac256` works and its Python path (hashlib) otherwise.
//
//   h = hmac256.HMAC(key, prefix=b"")   key: any length (> 64 bytes: hashed, RFC 2104)
//   h.sign(msg, n, out, at, size)       out[at:at + size] = HMAC(key, prefix + msg[:n])[:size]
//   h.verify(msg, n, mac, at, size)     HMAC(key, prefix + msg[:n])[:size] == mac[at:at + size]
//   h.seal(buf, at, counter, size, wire)
//                                       a signed frame's end: buf[at:at + 4] = counter (u32
//                                       LE), then HMAC(key, prefix + buf[:at + 4])[:size],
//                                       then crc16c.seal(buf, at + 4 + size, wire): the CRC
//                                       and the COBS frame in wire; returns its length
//   h.check(buf, at, size)              the counter at buf[at] (u32 LE) if the size bytes
//                                       after it are HMAC(key, prefix + buf[:at + 4]), else
//                                       None
//
// seal and check are the link's calls (firmware/wire.py Encoder.finish, firmware/link.py):
// one call per MAC with the trailer's counter included, the answer's CRC and COBS in the
// same call (issue 12: a signed status spent ~8,000 M0+ instructions in the Python around
// sign/verify and the CRC and COBS calls).
//
// Why C: MicroPython's sha256 objects cannot be copied, so the Python path hashes both key
// pads again for every MAC (four SHA-256 blocks); here the states after the ipad and opad
// blocks (and the prefix: the schema hash every MAC covers) are computed once, so a short
// message costs two compressions. sign and verify allocate nothing (the scheduler and the
// link's hot paths run under heap_lock in the tests). Its own SHA-256 (FIPS 180-4): the
// ports' hashlib backends differ (qemu: crypto-algorithms, rp2: mbedtls) and expose no
// midstate. verify compares every byte (no early exit: the time tells nothing).

#include <string.h>

#include "py/runtime.h"

// tools/arm/cmod/crc16c (always built with this module): CRC + COBS of buf[:n] into wire
size_t crc16c_seal_into(uint8_t *buf, size_t n, size_t buf_len, uint8_t *wire, size_t wire_len);

#define BLOCK 64
#define DIGEST 32

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t H0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
// FIPS 180-4's Sigma/sigma with the rotations nested (ROR(x, 2) ^ ROR(x, 13) ^ ROR(x, 22) =
// ROR(x ^ ROR(x ^ ROR(x, 9), 11), 2)): the M0+ has no rotate-by-immediate, and the nested
// form keeps one copy of x alive instead of three
#define S0(x) ROR((x) ^ ROR((x) ^ ROR((x), 9), 11), 2)
#define S1(x) ROR((x) ^ ROR((x) ^ ROR((x), 14), 5), 6)
#define G0(x) (ROR(x, 7) ^ ROR(x, 18) ^ ((x) >> 3))
#define G1(x) (ROR(x, 17) ^ ROR(x, 19) ^ ((x) >> 10))
// one round; the eight rounds of a loop pass name the registers in turn, so that nothing
// moves between rounds. Maj(a, b, c) = b ^ ((a ^ b) & (b ^ c)), and this round's b ^ c is
// the previous round's a ^ b (kept in ab_prev)
#define ROUND(a, b, c, d, e, f, g, h, i) do { \
        uint32_t t1 = h + S1(e) + (g ^ (e & (f ^ g))) + K[i] + w[i]; \
        uint32_t ab = a ^ b; \
        d += t1; \
        h = t1 + S0(a) + (b ^ (ab & ab_prev)); \
        ab_prev = ab; \
} while (0)

// One SHA-256 block, every loop unrolled (straight code: ~4,300 M0+ instructions with the
// port's -Os, ~4,950 as loops built -O3, ~5,500 as loops built -Os; 8.6 kB of flash).
// Five blocks in a signed status (issue 12).
__attribute__((optimize("Os")))
static void compress(uint32_t state[8], const uint8_t *p) {
    uint32_t w[64];
    _Pragma("GCC unroll 16")
    for (int i = 0; i < 16; i++, p += 4) {
        w[i] = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    }
    _Pragma("GCC unroll 48")
    for (int i = 16; i < 64; i++) {
        w[i] = w[i - 16] + G0(w[i - 15]) + w[i - 7] + G1(w[i - 2]);
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    uint32_t ab_prev = b ^ c;
    _Pragma("GCC unroll 8")
    for (int i = 0; i < 64; i += 8) {
        ROUND(a, b, c, d, e, f, g, h, i);
        ROUND(h, a, b, c, d, e, f, g, i + 1);
        ROUND(g, h, a, b, c, d, e, f, i + 2);
        ROUND(f, g, h, a, b, c, d, e, i + 3);
        ROUND(e, f, g, h, a, b, c, d, i + 4);
        ROUND(d, e, f, g, h, a, b, c, i + 5);
        ROUND(c, d, e, f, g, h, a, b, i + 6);
        ROUND(b, c, d, e, f, g, h, a, i + 7);
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

// a running hash: state, the bytes of the current block, total length
typedef struct {
    uint32_t state[8];
    uint8_t block[BLOCK];
    uint32_t used; // bytes in block
    uint32_t total; // bytes hashed (messages here are far below 2**32 bytes)
} sha_t;

static void sha_start(sha_t *s, const uint32_t *state, uint32_t total) {
    memcpy(s->state, state, sizeof(s->state));
    s->used = 0;
    s->total = total;
}

static void sha_update(sha_t *s, const uint8_t *p, size_t n) {
    s->total += n;
    if (s->used) {
        size_t take = BLOCK - s->used;
        if (take > n) {
            take = n;
        }
        memcpy(s->block + s->used, p, take);
        s->used += take;
        p += take;
        n -= take;
        if (s->used < BLOCK) {
            return;
        }
        compress(s->state, s->block);
        s->used = 0;
    }
    while (n >= BLOCK) {
        compress(s->state, p);
        p += BLOCK;
        n -= BLOCK;
    }
    memcpy(s->block, p, n);
    s->used = n;
}

static void sha_finish(sha_t *s, uint8_t out[DIGEST]) {
    uint32_t bits_hi = s->total >> 29, bits_lo = s->total << 3;
    uint32_t u = s->used;
    s->block[u++] = 0x80;
    if (u > BLOCK - 8) {
        memset(s->block + u, 0, BLOCK - u);
        compress(s->state, s->block);
        u = 0;
    }
    memset(s->block + u, 0, BLOCK - 8 - u);
    for (int i = 0; i < 4; i++) {
        s->block[BLOCK - 8 + i] = bits_hi >> (24 - 8 * i);
        s->block[BLOCK - 4 + i] = bits_lo >> (24 - 8 * i);
    }
    compress(s->state, s->block);
    for (int i = 0; i < 8; i++) {
        uint32_t v = s->state[i];
        out[4 * i] = v >> 24;
        out[4 * i + 1] = v >> 16;
        out[4 * i + 2] = v >> 8;
        out[4 * i + 3] = v;
    }
}

typedef struct {
    mp_obj_base_t base;
    uint32_t inner[8]; // after the ipad block and the prefix's whole blocks
    uint32_t outer[8]; // after the opad block
    uint32_t inner_total; // bytes behind `inner`
    uint8_t rest_len; // the prefix's last partial block, hashed with every message
    uint8_t rest[BLOCK - 1];
} hmac_obj_t;

static mp_obj_t hmac_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw,
    const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 1, 2, false);
    mp_buffer_info_t key, prefix = {.buf = (void *)"", .len = 0};
    mp_get_buffer_raise(args[0], &key, MP_BUFFER_READ);
    if (n_args > 1) {
        mp_get_buffer_raise(args[1], &prefix, MP_BUFFER_READ);
    }
    hmac_obj_t *self = mp_obj_malloc(hmac_obj_t, type);
    sha_t s;
    uint8_t pad[BLOCK];
    memset(pad, 0, BLOCK);
    if (key.len > BLOCK) {
        sha_start(&s, H0, 0);
        sha_update(&s, key.buf, key.len);
        sha_finish(&s, pad);
    } else {
        memcpy(pad, key.buf, key.len);
    }
    for (int i = 0; i < BLOCK; i++) {
        pad[i] ^= 0x36;
    }
    sha_start(&s, H0, 0);
    sha_update(&s, pad, BLOCK);
    sha_update(&s, prefix.buf, prefix.len);
    memcpy(self->inner, s.state, sizeof(self->inner));
    self->inner_total = s.total - s.used;
    self->rest_len = s.used;
    memcpy(self->rest, s.block, s.used);
    for (int i = 0; i < BLOCK; i++) {
        pad[i] ^= 0x36 ^ 0x5c;
    }
    sha_start(&s, H0, 0);
    sha_update(&s, pad, BLOCK);
    memcpy(self->outer, s.state, sizeof(self->outer));
    memset(pad, 0, BLOCK); // no copy of the key left on the stack
    memset(&s, 0, sizeof(s));
    return MP_OBJ_FROM_PTR(self);
}

// HMAC(key, prefix + p[:n]) into mac
static void hmac_digest(const hmac_obj_t *self, const uint8_t *p, size_t n, uint8_t mac[DIGEST]) {
    sha_t s;
    sha_start(&s, self->inner, self->inner_total);
    sha_update(&s, self->rest, self->rest_len);
    sha_update(&s, p, n);
    sha_finish(&s, mac);
    sha_start(&s, self->outer, BLOCK);
    sha_update(&s, mac, DIGEST);
    sha_finish(&s, mac);
}

static void check_size(mp_int_t len, mp_int_t at, size_t buf_len) {
    if (len < 1 || len > DIGEST || at < 0 || (size_t)at + (size_t)len > buf_len) {
        mp_raise_ValueError(MP_ERROR_TEXT("MAC size 1..32 inside the buffer needed"));
    }
}

// The MAC of prefix + msg[:n] into mac; the args are (self, msg, n, buf, at, size): checks
// them and returns buf's bytes at `at` (size bytes, writable if `write`)
static uint8_t *hmac_compute(const mp_obj_t *args, bool write, uint8_t mac[DIGEST],
    size_t *size) {
    hmac_obj_t *self = MP_OBJ_TO_PTR(args[0]);
    mp_buffer_info_t msg, buf;
    mp_get_buffer_raise(args[1], &msg, MP_BUFFER_READ);
    mp_int_t n = mp_obj_get_int(args[2]);
    mp_get_buffer_raise(args[3], &buf, write ? MP_BUFFER_WRITE : MP_BUFFER_READ);
    mp_int_t at = mp_obj_get_int(args[4]);
    mp_int_t len = mp_obj_get_int(args[5]);
    if (n < 0 || (size_t)n > msg.len) {
        mp_raise_ValueError(MP_ERROR_TEXT("n outside the message buffer"));
    }
    check_size(len, at, buf.len);
    hmac_digest(self, msg.buf, n, mac);
    *size = len;
    return (uint8_t *)buf.buf + at;
}

static mp_obj_t hmac_sign(size_t n_args, const mp_obj_t *args) {
    uint8_t mac[DIGEST];
    size_t size;
    uint8_t *dst = hmac_compute(args, true, mac, &size);
    memcpy(dst, mac, size);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(hmac_sign_obj, 6, 6, hmac_sign);

static mp_obj_t hmac_verify(size_t n_args, const mp_obj_t *args) {
    uint8_t mac[DIGEST];
    size_t size;
    const uint8_t *want = hmac_compute(args, false, mac, &size);
    uint8_t diff = 0;
    for (size_t i = 0; i < size; i++) {
        diff |= mac[i] ^ want[i];
    }
    return mp_obj_new_bool(diff == 0);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(hmac_verify_obj, 6, 6, hmac_verify);

// the trailer's checks: the counter at buf[at], the MAC after it, inside the buffer
static void trailer(mp_obj_t buf_in, mp_obj_t at_in, mp_obj_t size_in, bool write,
    mp_buffer_info_t *buf, mp_int_t *at, mp_int_t *size) {
    mp_get_buffer_raise(buf_in, buf, write ? MP_BUFFER_WRITE : MP_BUFFER_READ);
    *at = mp_obj_get_int(at_in);
    *size = mp_obj_get_int(size_in);
    check_size(*size, *at < 0 ? -1 : *at + 4, buf->len);
}

static mp_obj_t hmac_seal(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t frame, wire;
    mp_int_t at, size;
    trailer(args[1], args[2], args[4], true, &frame, &at, &size);
    mp_get_buffer_raise(args[5], &wire, MP_BUFFER_WRITE);
    uint8_t *buf = frame.buf;
    uint32_t counter = mp_obj_int_get_truncated(args[3]);
    for (int i = 0; i < 4; i++) {
        buf[at + i] = counter >> (8 * i);
    }
    uint8_t mac[DIGEST];
    hmac_digest(MP_OBJ_TO_PTR(args[0]), buf, at + 4, mac);
    memcpy(buf + at + 4, mac, size);
    return MP_OBJ_NEW_SMALL_INT(crc16c_seal_into(buf, at + 4 + size, frame.len, wire.buf,
        wire.len));
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(hmac_seal_obj, 6, 6, hmac_seal);

static mp_obj_t hmac_check(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t frame;
    mp_int_t at, size;
    trailer(args[1], args[2], args[3], false, &frame, &at, &size);
    const uint8_t *buf = frame.buf;
    uint8_t mac[DIGEST];
    hmac_digest(MP_OBJ_TO_PTR(args[0]), buf, at + 4, mac);
    uint8_t diff = 0;
    for (mp_int_t i = 0; i < size; i++) {
        diff |= mac[i] ^ buf[at + 4 + i];
    }
    if (diff) {
        return mp_const_none;
    }
    const uint8_t *c = buf + at;
    return mp_obj_new_int_from_uint(c[0] | (c[1] << 8) | (c[2] << 16) | ((uint32_t)c[3] << 24));
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(hmac_check_obj, 4, 4, hmac_check);

static const mp_rom_map_elem_t hmac_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR_sign), MP_ROM_PTR(&hmac_sign_obj) },
    { MP_ROM_QSTR(MP_QSTR_verify), MP_ROM_PTR(&hmac_verify_obj) },
    { MP_ROM_QSTR(MP_QSTR_seal), MP_ROM_PTR(&hmac_seal_obj) },
    { MP_ROM_QSTR(MP_QSTR_check), MP_ROM_PTR(&hmac_check_obj) },
};
static MP_DEFINE_CONST_DICT(hmac_locals_dict, hmac_locals_dict_table);

MP_DEFINE_CONST_OBJ_TYPE(
    hmac256_type_HMAC,
    MP_QSTR_HMAC,
    MP_TYPE_FLAG_NONE,
    make_new, hmac_make_new,
    locals_dict, &hmac_locals_dict
    );

static const mp_rom_map_elem_t hmac256_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_hmac256) },
    { MP_ROM_QSTR(MP_QSTR_HMAC), MP_ROM_PTR(&hmac256_type_HMAC) },
};
static MP_DEFINE_CONST_DICT(hmac256_module_globals, hmac256_module_globals_table);

const mp_obj_module_t hmac256_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&hmac256_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_hmac256, hmac256_user_cmodule);
