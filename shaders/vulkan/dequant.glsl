// Weight elements read from the file's stored blocks (bytes in a uint array `W`), one element at a
// time: `wload(rowByte, k)` is element k of the row that starts at byte `rowByte`. Block layouts
// are TillerTensor/Dequantize.swift's (ggml's), and the arithmetic is the same: Q4_1 is d·q + m,
// the K-quants (d·sc)·q − (dmin·m). Exactly one W_* is defined per variant.

uint rbyte(uint off) { return (W[off >> 2] >> ((off & 3u) * 8u)) & 0xFFu; }
// A 16-bit field; every one in these layouts starts at an even byte.
uint rhalf(uint off) { return (W[off >> 2] >> ((off & 2u) * 8u)) & 0xFFFFu; }
float rf16(uint off) { return unpackHalf2x16(rhalf(off)).x; }
uint ru32(uint off) { return rhalf(off) | (rhalf(off + 2u) << 16); }

#if defined(W_F32)
const uint BLOCK = 1u, BLOCK_BYTES = 4u;
float wload(uint rowByte, uint k) { return uintBitsToFloat(W[(rowByte >> 2) + k]); }
#elif defined(W_F16)
const uint BLOCK = 1u, BLOCK_BYTES = 2u;
float wload(uint rowByte, uint k) { return rf16(rowByte + 2u * k); }
#elif defined(W_BF16)
const uint BLOCK = 1u, BLOCK_BYTES = 2u;
float wload(uint rowByte, uint k) { return uintBitsToFloat(rhalf(rowByte + 2u * k) << 16); }
#elif defined(W_Q8_0)
// f16 d, 32 × int8; x = q·d
const uint BLOCK = 32u, BLOCK_BYTES = 34u;
float wload(uint rowByte, uint k) {
    uint b = rowByte + (k >> 5) * BLOCK_BYTES;
    int q = int(rbyte(b + 2u + (k & 31u)) << 24) >> 24;
    return float(q) * rf16(b);
}
#elif defined(W_Q4_0)
// f16 d, 16 bytes: element i < 16 the low nibble of byte i, 16 + i the high one; x = d·(q − 8)
const uint BLOCK = 32u, BLOCK_BYTES = 18u;
float wload(uint rowByte, uint k) {
    uint b = rowByte + (k >> 5) * BLOCK_BYTES, i = k & 31u;
    uint q = (rbyte(b + 2u + (i & 15u)) >> ((i >> 4) * 4u)) & 15u;
    return rf16(b) * (float(q) - 8.0);
}
#elif defined(W_Q4_1)
// f16 d, f16 m, nibbles as Q4_0; x = d·q + m
const uint BLOCK = 32u, BLOCK_BYTES = 20u;
float wload(uint rowByte, uint k) {
    uint b = rowByte + (k >> 5) * BLOCK_BYTES, i = k & 31u;
    uint q = (rbyte(b + 4u + (i & 15u)) >> ((i >> 4) * 4u)) & 15u;
    precise float dq = rf16(b) * float(q);
    return dq + rf16(b + 2u);
}
#elif defined(W_Q5_0)
// f16 d, u32 fifth bits (bit i for element i), nibbles as Q4_0; x = d·(q − 16)
const uint BLOCK = 32u, BLOCK_BYTES = 22u;
float wload(uint rowByte, uint k) {
    uint b = rowByte + (k >> 5) * BLOCK_BYTES, i = k & 31u;
    uint q = ((rbyte(b + 6u + (i & 15u)) >> ((i >> 4) * 4u)) & 15u) | (((ru32(b + 2u) >> i) & 1u) << 4);
    return rf16(b) * (float(q) - 16.0);
}
#elif defined(W_Q4_K)
// f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles: sub-block j (32 elements)
// reads bytes 32·(j/2) ..< +32, low nibbles for even j; x = (d·sc)·q − (dmin·m)
const uint BLOCK = 256u, BLOCK_BYTES = 144u;
// Sub-block j's 6-bit scale and min, packed in the block's 12 bytes at b + 4.
void q4kScaleMin(uint b, uint j, out uint sc, out uint m) {
    if (j < 4u) {
        sc = rbyte(b + 4u + j) & 63u;
        m = rbyte(b + 8u + j) & 63u;
    } else {
        sc = (rbyte(b + 8u + j) & 15u) | ((rbyte(b + j) >> 6) << 4);
        m = (rbyte(b + 8u + j) >> 4) | ((rbyte(b + 4u + j) >> 6) << 4);
    }
}
float wload(uint rowByte, uint k) {
    uint b = rowByte + (k >> 8) * BLOCK_BYTES, i = k & 255u, j = i >> 5;
    uint sc, m;
    q4kScaleMin(b, j, sc, m);
    uint q = (rbyte(b + 16u + 32u * (j >> 1) + (i & 31u)) >> ((j & 1u) * 4u)) & 15u;
    precise float dl = rf16(b) * float(sc);
    precise float ml = rf16(b + 2u) * float(m);
    precise float x = dl * float(q);
    return x - ml;
}
#elif defined(W_Q6_K)
// 128 bytes ql, 64 bytes qh, 16 int8 scales, f16 d. Element e: half h = e/128; low nibbles from
// ql byte 64h + e%64 (high nibble when e%128 ≥ 64), two high bits from qh byte 32h + e%32, field
// (e%128)/32; x = (d·scale[e/16])·(q − 32)
const uint BLOCK = 256u, BLOCK_BYTES = 210u;
float wload(uint rowByte, uint k) {
    uint b = rowByte + (k >> 8) * BLOCK_BYTES, e = k & 255u, h = e >> 7, r = e & 127u;
    uint lo = (rbyte(b + 64u * h + (r & 63u)) >> ((r >> 6) * 4u)) & 15u;
    uint hi = (rbyte(b + 128u + 32u * h + (r & 31u)) >> ((r >> 5) * 2u)) & 3u;
    int sc = int(rbyte(b + 192u + (e >> 4)) << 24) >> 24;
    precise float dl = rf16(b + 208u) * float(sc);
    return dl * (float(lo | (hi << 4)) - 32.0);
}
#else
#error "no weight type defined"
#endif

// `wblock(rowByte, k0, w)`: elements k0 ..< k0 + 32 of a row (k0 a multiple of 32, the whole run
// inside the row) into w, eight vec4s. Each block's scales are read once and its packed quants a
// word at a time, instead of per element as wload does; the arithmetic per element is wload's.
uint nib(uint word, uint j, uint shift) { return (word >> (8u * j + shift)) & 15u; }
// The 32-bit word at byte `off`: one load where the layout keeps it 4-aligned (Q4_1's 20-byte and
// Q4_K's 144-byte blocks always are), two half-word loads where it may sit at an odd half-word.
#if defined(W_Q4_1) || defined(W_Q4_K)
uint rword(uint off) { return W[off >> 2]; }
#else
uint rword(uint off) { return rhalf(off) | (rhalf(off + 2u) << 16); }
#endif

#if defined(W_F32) || defined(W_F16) || defined(W_BF16)
void wblock(uint rowByte, uint k0, out vec4 w[8]) {
    [[unroll]] for (uint q = 0u; q < 8u; q++)
        w[q] = vec4(wload(rowByte, k0 + 4u * q), wload(rowByte, k0 + 4u * q + 1u),
                    wload(rowByte, k0 + 4u * q + 2u), wload(rowByte, k0 + 4u * q + 3u));
}
#elif defined(W_Q8_0)
void wblock(uint rowByte, uint k0, out vec4 w[8]) {
    uint b = rowByte + (k0 >> 5) * BLOCK_BYTES;
    float d = rf16(b);
    [[unroll]] for (uint q = 0u; q < 8u; q++) {
        uint lo = rhalf(b + 2u + 4u * q), hi = rhalf(b + 4u + 4u * q);
        ivec4 v = ivec4(int(lo << 24) >> 24, int(lo << 16) >> 24, int(hi << 24) >> 24, int(hi << 16) >> 24);
        w[q] = vec4(v) * d;
    }
}
#elif defined(W_Q4_0) || defined(W_Q4_1) || defined(W_Q5_0)
void wblock(uint rowByte, uint k0, out vec4 w[8]) {
    uint b = rowByte + (k0 >> 5) * BLOCK_BYTES;
    float d = rf16(b);
#if defined(W_Q4_0)
    uint qs = b + 2u;
#elif defined(W_Q4_1)
    uint qs = b + 4u;
    vec2 dm = unpackHalf2x16(W[b >> 2]);
    d = dm.x;
    float m = dm.y;
#else
    uint qs = b + 6u;
    uint qh = ru32(b + 2u);
#endif
    // Bytes 4q ..< 4q + 4 hold elements 4q + j (low nibbles) and 16 + 4q + j (high nibbles).
    [[unroll]] for (uint q = 0u; q < 4u; q++) {
        uint word = rword(qs + 4u * q);
        [[unroll]] for (uint half_ = 0u; half_ < 2u; half_++) {
            vec4 v;
            [[unroll]] for (uint j = 0u; j < 4u; j++) {
                uint e = 16u * half_ + 4u * q + j;
                uint n = nib(word, j, 4u * half_);
#if defined(W_Q4_0)
                v[j] = d * (float(n) - 8.0);
#elif defined(W_Q4_1)
                precise float dq = d * float(n);
                v[j] = dq + m;
#else
                v[j] = d * (float(n | (((qh >> e) & 1u) << 4)) - 16.0);
#endif
            }
            w[4u * half_ + q] = v;
        }
    }
}
#elif defined(W_Q4_K)
void wblock(uint rowByte, uint k0, out vec4 w[8]) {
    uint b = rowByte + (k0 >> 8) * BLOCK_BYTES, j = (k0 & 255u) >> 5;
    uint sc, m;
    q4kScaleMin(b, j, sc, m);
    precise float dl = rf16(b) * float(sc);
    precise float ml = rf16(b + 2u) * float(m);
    uint qs = b + 16u + 32u * (j >> 1), shift = (j & 1u) * 4u;
    [[unroll]] for (uint q = 0u; q < 8u; q++) {
        uint word = rword(qs + 4u * q);
        vec4 v;
        [[unroll]] for (uint i = 0u; i < 4u; i++) {
            precise float x = dl * float(nib(word, i, shift));
            v[i] = x - ml;
        }
        w[q] = v;
    }
}
#elif defined(W_Q6_K)
void wblock(uint rowByte, uint k0, out vec4 w[8]) {
    uint b = rowByte + (k0 >> 8) * BLOCK_BYTES, e0 = k0 & 255u, h = e0 >> 7, r0 = e0 & 127u;
    uint ql = b + 64u * h + (r0 & 63u), lshift = (r0 >> 6) * 4u;
    uint qh = b + 128u + 32u * h, hshift = (r0 >> 5) * 2u;
    float d = rf16(b + 208u);
    uint scw = rhalf(b + 192u + (e0 >> 4));
    [[unroll]] for (uint q = 0u; q < 8u; q++) {
        uint lw = rword(ql + 4u * q), hw = rword(qh + 4u * q);
        int sc = int((scw >> (8u * (q >> 2))) << 24) >> 24;
        precise float dl = d * float(sc);
        vec4 v;
        [[unroll]] for (uint i = 0u; i < 4u; i++) {
            uint lo = (lw >> (8u * i + lshift)) & 15u;
            uint hi = (hw >> (8u * i + hshift)) & 3u;
            v[i] = dl * (float(lo | (hi << 4)) - 32.0);
        }
        w[q] = v;
    }
}
#endif
