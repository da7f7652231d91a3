// One-row fused dequantize-and-dot kernels in AVX-512, chosen at run time (the Swift kernels in
// TillerTensor/MatvecKernels.swift are the portable AVX2 path). Each block is decoded into
// registers, 16 elements per vector, as f32 values equal to the ones Dequantize.swift computes,
// and multiplied into fp32 accumulators: no activation is ever quantized, so the result is an f32
// dot product with the dequantized weights, up to summation order.
#include "CTillerKernels.h"
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))

int tiller_kernels_avx512(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("f16c");
    }
    return cached;
}

AVX512 static inline float f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

AVX512 static inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

/// 16 unsigned bytes as 16 floats.
AVX512 static inline __m512 u8f(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)); }
/// 16 signed bytes as 16 floats.
AVX512 static inline __m512 i8f(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)); }

// Q8_0: d (f16), 32 × int8; w = d·q.
AVX512 static float dot_q8_0(const uint8_t *r, const float *x, int blocks) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int b = 0;
    for (; b + 2 <= blocks; b += 2) {
        const uint8_t *p = r + 34 * b;
        const float *xp = x + 32 * b;
        __m512 s0 = _mm512_mul_ps(i8f(_mm_loadu_si128((const __m128i *)(p + 2))), _mm512_loadu_ps(xp));
        s0 = _mm512_fmadd_ps(i8f(_mm_loadu_si128((const __m128i *)(p + 18))), _mm512_loadu_ps(xp + 16), s0);
        __m512 s1 = _mm512_mul_ps(i8f(_mm_loadu_si128((const __m128i *)(p + 36))), _mm512_loadu_ps(xp + 32));
        s1 = _mm512_fmadd_ps(i8f(_mm_loadu_si128((const __m128i *)(p + 52))), _mm512_loadu_ps(xp + 48), s1);
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(f16(p)), s0, a0);
        a1 = _mm512_fmadd_ps(_mm512_set1_ps(f16(p + 34)), s1, a1);
    }
    for (; b < blocks; b++) {
        const uint8_t *p = r + 34 * b;
        const float *xp = x + 32 * b;
        __m512 s0 = _mm512_mul_ps(i8f(_mm_loadu_si128((const __m128i *)(p + 2))), _mm512_loadu_ps(xp));
        s0 = _mm512_fmadd_ps(i8f(_mm_loadu_si128((const __m128i *)(p + 18))), _mm512_loadu_ps(xp + 16), s0);
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(f16(p)), s0, a0);
    }
    return hsum(_mm512_add_ps(a0, a1));
}

// Q4_0: d (f16), 16 bytes: element i = low nibble of byte i, element 16+i = its high nibble;
// w = d·(q − 8).
AVX512 static float dot_q4_0(const uint8_t *r, const float *x, int blocks) {
    const __m128i low = _mm_set1_epi8(0x0F);
    const __m512 eight = _mm512_set1_ps(8);
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *p = r + 18 * b;
        const float *xp = x + 32 * b;
        __m128i v = _mm_loadu_si128((const __m128i *)(p + 2));
        __m512 q0 = _mm512_sub_ps(u8f(_mm_and_si128(v, low)), eight);
        __m512 q1 = _mm512_sub_ps(u8f(_mm_and_si128(_mm_srli_epi16(v, 4), low)), eight);
        __m512 s = _mm512_mul_ps(q0, _mm512_loadu_ps(xp));
        s = _mm512_fmadd_ps(q1, _mm512_loadu_ps(xp + 16), s);
        if (b & 1) a1 = _mm512_fmadd_ps(_mm512_set1_ps(f16(p)), s, a1);
        else a0 = _mm512_fmadd_ps(_mm512_set1_ps(f16(p)), s, a0);
    }
    return hsum(_mm512_add_ps(a0, a1));
}

// Q4_1: d, m (f16), 16 bytes of nibbles as Q4_0; w = d·q + m, so Σ w·x = d·Σ q·x + m·Σ x.
AVX512 static float dot_q4_1(const uint8_t *r, const float *x, const float *sums, int blocks) {
    const __m128i low = _mm_set1_epi8(0x0F);
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    float off0 = 0, off1 = 0;
    int b = 0;
    for (; b + 2 <= blocks; b += 2) {
        const uint8_t *p = r + 20 * b;
        const float *xp = x + 32 * b;
        __m128i v0 = _mm_loadu_si128((const __m128i *)(p + 4));
        __m128i v1 = _mm_loadu_si128((const __m128i *)(p + 24));
        __m512 s0 = _mm512_mul_ps(u8f(_mm_and_si128(v0, low)), _mm512_loadu_ps(xp));
        s0 = _mm512_fmadd_ps(u8f(_mm_and_si128(_mm_srli_epi16(v0, 4), low)), _mm512_loadu_ps(xp + 16), s0);
        __m512 s1 = _mm512_mul_ps(u8f(_mm_and_si128(v1, low)), _mm512_loadu_ps(xp + 32));
        s1 = _mm512_fmadd_ps(u8f(_mm_and_si128(_mm_srli_epi16(v1, 4), low)), _mm512_loadu_ps(xp + 48), s1);
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(f16(p)), s0, a0);
        a1 = _mm512_fmadd_ps(_mm512_set1_ps(f16(p + 20)), s1, a1);
        off0 += f16(p + 2) * sums[b];
        off1 += f16(p + 22) * sums[b + 1];
    }
    for (; b < blocks; b++) {
        const uint8_t *p = r + 20 * b;
        const float *xp = x + 32 * b;
        __m128i v = _mm_loadu_si128((const __m128i *)(p + 4));
        __m512 s = _mm512_mul_ps(u8f(_mm_and_si128(v, low)), _mm512_loadu_ps(xp));
        s = _mm512_fmadd_ps(u8f(_mm_and_si128(_mm_srli_epi16(v, 4), low)), _mm512_loadu_ps(xp + 16), s);
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(f16(p)), s, a0);
        off0 += f16(p + 2) * sums[b];
    }
    return hsum(_mm512_add_ps(a0, a1)) + (off0 + off1);
}

// Q5_0: d (f16), qh (32 fifth bits, bit i for element i), 16 bytes of nibbles as Q4_0;
// w = d·(q − 16).
AVX512 static float dot_q5_0(const uint8_t *r, const float *x, int blocks) {
    const __m128i low = _mm_set1_epi8(0x0F), sixteen8 = _mm_set1_epi8(0x10);
    const __m512 sixteen = _mm512_set1_ps(16);
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *p = r + 22 * b;
        const float *xp = x + 32 * b;
        uint32_t qh;
        memcpy(&qh, p + 2, 4);
        __m128i v = _mm_loadu_si128((const __m128i *)(p + 6));
        __m128i lv = _mm_and_si128(v, low), hv = _mm_and_si128(_mm_srli_epi16(v, 4), low);
        __m128i lo = _mm_mask_blend_epi8((__mmask16)(qh & 0xFFFF), lv, _mm_or_si128(lv, sixteen8));
        __m128i hi = _mm_mask_blend_epi8((__mmask16)(qh >> 16), hv, _mm_or_si128(hv, sixteen8));
        __m512 s = _mm512_mul_ps(_mm512_sub_ps(u8f(lo), sixteen), _mm512_loadu_ps(xp));
        s = _mm512_fmadd_ps(_mm512_sub_ps(u8f(hi), sixteen), _mm512_loadu_ps(xp + 16), s);
        if (b & 1) a1 = _mm512_fmadd_ps(_mm512_set1_ps(f16(p)), s, a1);
        else a0 = _mm512_fmadd_ps(_mm512_set1_ps(f16(p)), s, a0);
    }
    return hsum(_mm512_add_ps(a0, a1));
}

/// Scale and min of 32-element group j of a Q4_K/Q5_K block (6-bit fields packed in 12 bytes).
static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Q4_K: d, dmin (f16), 12 bytes of scales/mins, 128 bytes of nibbles; 8 groups of 32: group 2j
// is the low nibbles of bytes 32j ..< 32j+32, group 2j+1 their high nibbles;
// w = d·sc·q − dmin·mn, so Σ w·x = d·sc·Σ q·x − dmin·mn·Σ x.
AVX512 static float dot_q4_k(const uint8_t *r, const float *x, const float *sums, int blocks) {
    const __m128i low = _mm_set1_epi8(0x0F);
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    float off = 0;
    for (int b = 0; b < blocks; b++) {
        const uint8_t *p = r + 144 * b;
        const float *xb = x + 256 * b;
        const float d = f16(p), dmin = f16(p + 2);
        for (int j = 0; j < 4; j++) {
            const uint8_t *qs = p + 16 + 32 * j;
            const float *xp = xb + 64 * j;
            __m128i v0 = _mm_loadu_si128((const __m128i *)qs), v1 = _mm_loadu_si128((const __m128i *)(qs + 16));
            __m512 s0 = _mm512_mul_ps(u8f(_mm_and_si128(v0, low)), _mm512_loadu_ps(xp));
            s0 = _mm512_fmadd_ps(u8f(_mm_and_si128(v1, low)), _mm512_loadu_ps(xp + 16), s0);
            __m512 s1 = _mm512_mul_ps(u8f(_mm_and_si128(_mm_srli_epi16(v0, 4), low)), _mm512_loadu_ps(xp + 32));
            s1 = _mm512_fmadd_ps(u8f(_mm_and_si128(_mm_srli_epi16(v1, 4), low)), _mm512_loadu_ps(xp + 48), s1);
            int sc0, mn0, sc1, mn1;
            scale_min_k4(2 * j, p + 4, &sc0, &mn0);
            scale_min_k4(2 * j + 1, p + 4, &sc1, &mn1);
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(d * (float)sc0), s0, a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(d * (float)sc1), s1, a1);
            off += -(dmin * (float)mn0) * sums[8 * b + 2 * j] + -(dmin * (float)mn1) * sums[8 * b + 2 * j + 1];
        }
    }
    return hsum(_mm512_add_ps(a0, a1)) + off;
}

// Q6_K: 128 bytes of low nibbles (ql), 64 bytes of 2-bit high parts (qh), 16 int8 scales, d
// (f16); w = d·scale[i/16]·(q − 32). Half h (128 elements) reads ql[64h ..< +64], qh[32h ..< +32];
// its quarter s holds elements 32s ..< 32s+32: low nibbles of ql[32(s%2) ...] for s < 2, high
// nibbles for s ≥ 2, and bits 2s, 2s+1 of qh.
AVX512 static float dot_q6_k(const uint8_t *r, const float *x, int blocks) {
    const __m128i low = _mm_set1_epi8(0x0F), three = _mm_set1_epi8(3);
    const __m512 c32 = _mm512_set1_ps(32);
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *p = r + 210 * b;
        const int8_t *scales = (const int8_t *)(p + 192);
        const float d = f16(p + 208);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = p + 64 * h, *qh = p + 128 + 32 * h;
            const float *xh = x + 256 * b + 128 * h;
            for (int half = 0; half < 2; half++) {
                __m128i l0 = _mm_loadu_si128((const __m128i *)(ql + 16 * half));
                __m128i l1 = _mm_loadu_si128((const __m128i *)(ql + 32 + 16 * half));
                __m128i hb = _mm_loadu_si128((const __m128i *)(qh + 16 * half));
                __m128i q[4];
                q[0] = _mm_or_si128(_mm_and_si128(l0, low), _mm_slli_epi16(_mm_and_si128(hb, three), 4));
                q[1] = _mm_or_si128(_mm_and_si128(l1, low), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hb, 2), three), 4));
                q[2] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(l0, 4), low), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hb, 4), three), 4));
                q[3] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(l1, 4), low), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hb, 6), three), 4));
                for (int s = 0; s < 4; s++) {
                    // Elements 32s + 16·half ..< +16 of this half: scale index (128h + 32s + 16·half) / 16.
                    __m512 prod = _mm512_mul_ps(_mm512_sub_ps(u8f(q[s]), c32), _mm512_loadu_ps(xh + 32 * s + 16 * half));
                    __m512 scale = _mm512_set1_ps(d * (float)scales[8 * h + 2 * s + half]);
                    if (s & 1) a1 = _mm512_fmadd_ps(scale, prod, a1);
                    else a0 = _mm512_fmadd_ps(scale, prod, a0);
                }
            }
        }
    }
    return hsum(_mm512_add_ps(a0, a1));
}

AVX512 static void matvec(int type, const uint8_t *base, size_t rb, int n, const float *x, const float *sums,
                          float *y, int o0, int o1) {
    switch (type) {
    case TillerKernelQ8_0: for (int o = o0; o < o1; o++) y[o] = dot_q8_0(base + rb * o, x, n / 32); break;
    case TillerKernelQ4_0: for (int o = o0; o < o1; o++) y[o] = dot_q4_0(base + rb * o, x, n / 32); break;
    case TillerKernelQ4_1: for (int o = o0; o < o1; o++) y[o] = dot_q4_1(base + rb * o, x, sums, n / 32); break;
    case TillerKernelQ5_0: for (int o = o0; o < o1; o++) y[o] = dot_q5_0(base + rb * o, x, n / 32); break;
    case TillerKernelQ4_K: for (int o = o0; o < o1; o++) y[o] = dot_q4_k(base + rb * o, x, sums, n / 256); break;
    case TillerKernelQ6_K: for (int o = o0; o < o1; o++) y[o] = dot_q6_k(base + rb * o, x, n / 256); break;
    }
}

int tiller_matvec_avx512(int type, const void *base, size_t row_bytes, int in_features, const float *x,
                         const float *group_sums, float *y, int o0, int o1) {
    if (!tiller_kernels_avx512()) return 0;
    switch (type) {
    case TillerKernelQ8_0: case TillerKernelQ4_0: case TillerKernelQ5_0: case TillerKernelQ6_K: break;
    case TillerKernelQ4_1: case TillerKernelQ4_K: if (!group_sums) return 0; break;
    default: return 0;
    }
    matvec(type, (const uint8_t *)base, row_bytes, in_features, x, group_sums, y, o0, o1);
    return 1;
}


// MARK: - One-row VNNI kernels on 16-row slabs

// The input row is written as four base-128 int8 digits per 32-element block: with s the block's
// max |x| / 127, x ≈ s·(q1 + q2/128 + q3/128² + q4/128³), each digit the rounded remainder of the
// ones before, so the residual is at most s/(2·128³) ≈ 1.9e-9 · max |x| — some 60 times below the
// fp32 rounding of the block's largest element, and below the rounding an fp32 dot product of
// the block makes anyway. Integer dot products of the digits with the weights' integers are exact
// (vpdpbusd, int32); only their combination with the scales is rounded, in fp32.

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))

int tiller_kernels_vnni(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = tiller_kernels_avx512() && __builtin_cpu_supports("avx512vnni");
    }
    return cached;
}

/// Bytes of one block column of a slab (16 rows × 32 elements): Q4_1: d[16] f16, m[16] f16, 256
/// bytes of nibbles (as many as the GGUF blocks); Q8_0: d[16] f16, 512 bytes of weights + 128; Q4_K:
/// the Q4_1 shape with fp32 scales, a[16] = d·sc and b[16] = −dmin·m of each row's 32-element
/// sub-block (exact: an fp16 times a 6-bit integer), then 256 bytes of nibbles.
enum { VNNIBlockQ4_1 = 320, VNNIBlockQ8_0 = 544, VNNIBlockQ4_K = 384 };
static size_t vnni_block_bytes(int type) {
    switch (type) {
    case TillerKernelQ4_1: return VNNIBlockQ4_1;
    case TillerKernelQ8_0: return VNNIBlockQ8_0;
    case TillerKernelQ4_K: return VNNIBlockQ4_K;
    default: return 0;
    }
}

int tiller_vnni_slab_type(int type) {
    switch (type) {
    case TillerKernelQ4_1: return TillerKernelQ4_1;
    // Q4_0 and Q5_0 are d·(q − 8) and d·(q − 16) with the same fp16 d per 32 elements: their
    // integers fit a byte, so they re-lay exactly as Q8_0 blocks (a byte a weight instead of
    // 0.56 or 0.69, read by the kernel that does not turn nibbles into floats).
    case TillerKernelQ8_0: case TillerKernelQ4_0: case TillerKernelQ5_0: return TillerKernelQ8_0;
    // Q4_K's 32-element sub-blocks are Q4_1 blocks with a 6-bit scale and min under the
    // super-block's two fp16: re-laid with the products as fp32 (its own layout).
    case TillerKernelQ4_K: return TillerKernelQ4_K;
    default: return -1;
    }
}

size_t tiller_vnni_slab_bytes(int type, int in_features) {
    if (in_features % (type == TillerKernelQ4_K ? 256 : 32) || tiller_vnni_slab_type(type) < 0) return 0;
    return vnni_block_bytes(tiller_vnni_slab_type(type)) * (size_t)(in_features / 32);
}

/// Bytes of one GGUF block of a type that re-lays as Q8_0.
static size_t q8_source_block_bytes(int type) { return type == TillerKernelQ5_0 ? 22 : type == TillerKernelQ4_0 ? 18 : 34; }

/// The 32 integers of one GGUF block of a type that re-lays as Q8_0 (Q8_0, Q5_0, Q4_0); each of
/// these blocks starts with its fp16 scale.
static void block_as_q8(int type, const uint8_t *p, int8_t q[32]) {
    switch (type) {
    case TillerKernelQ5_0: {
        uint32_t qh;
        memcpy(&qh, p + 2, 4);
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(((p[6 + j] & 0x0F) | (((qh >> j) & 1) << 4)) - 16);
            q[j + 16] = (int8_t)(((p[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
        }
        return;
    }
    case TillerKernelQ4_0:
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((p[2 + j] & 0x0F) - 8);
            q[j + 16] = (int8_t)((p[2 + j] >> 4) - 8);
        }
        return;
    default:
        memcpy(q, p + 2, 32);
    }
}

// Layout of a block column, rows r < 16, elements e < 32 of the block:
//   Q4_1 chunk c < 4 (64 bytes at 64 + 64c): byte 4r + j holds element 4c + j of row r in its low
//   nibble and element 16 + 4c + j in its high nibble (the nibble pairs of the GGUF block).
//   Q8_0 chunk g < 8 (64 bytes at 32 + 64g): byte 4r + j is element 4g + j of row r plus 128, as
//   an unsigned byte (vpdpbusd multiplies unsigned by signed bytes; the digits are the signed ones).
// Each 4-byte lane is one row's four elements, so one vpdpbusd against four broadcast digits adds
// them to 16 rows at once, and the 16 rows' scales are one vector.
void tiller_vnni_pack(int type, const void *base, size_t row_bytes, int in_features, int out_features,
                      int slab0, int slab1, void *packed) {
    const int layout = tiller_vnni_slab_type(type);
    if (layout < 0 || !tiller_vnni_slab_bytes(type, in_features)) return;
    const size_t bb = vnni_block_bytes(layout);
    const int blocks = in_features / 32;
    for (int s = slab0; s < slab1; s++) {
        uint8_t *slab = (uint8_t *)packed + (size_t)s * bb * blocks;
        memset(slab, 0, bb * blocks);
        for (int r = 0; r < 16 && 16 * s + r < out_features; r++) {
            const uint8_t *row = (const uint8_t *)base + row_bytes * (size_t)(16 * s + r);
            for (int b = 0; b < blocks; b++) {
                uint8_t *o = slab + bb * b;
                if (type == TillerKernelQ4_K) {
                    // Sub-block b is element range 32(b % 8) of super-block b / 8 (144 bytes: d,
                    // dmin, 12 bytes of 6-bit scales and mins, 128 of nibbles): even sub-blocks
                    // in the low nibbles of a 32-byte run, odd ones in the high.
                    const uint8_t *sb = row + 144 * (size_t)(b / 8);
                    const int j = b % 8;
                    const uint8_t *sc = sb + 4;
                    int scale, min;
                    if (j < 4) { scale = sc[j] & 63; min = sc[j + 4] & 63; }
                    else { scale = (sc[j + 4] & 0x0F) | ((sc[j - 4] >> 6) << 4); min = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4); }
                    uint16_t dh, mh;
                    memcpy(&dh, sb, 2);
                    memcpy(&mh, sb + 2, 2);
                    const float a = _cvtsh_ss(dh) * (float)scale, m = -(_cvtsh_ss(mh) * (float)min);
                    memcpy(o + 4 * r, &a, 4);
                    memcpy(o + 64 + 4 * r, &m, 4);
                    uint8_t q[32];
                    const uint8_t *qs = sb + 16 + 32 * (j / 2);
                    for (int l = 0; l < 32; l++) q[l] = (j % 2) ? qs[l] >> 4 : qs[l] & 0x0F;
                    // As the Q4_1 layout pairs them: element e < 16 low, e + 16 high.
                    for (int c = 0; c < 4; c++)
                        for (int jj = 0; jj < 4; jj++)
                            o[128 + 64 * c + 4 * r + jj] = (uint8_t)(q[4 * c + jj] | (q[16 + 4 * c + jj] << 4));
                } else if (type == TillerKernelQ4_1) {
                    const uint8_t *p = row + 20 * b;
                    memcpy(o + 2 * r, p, 2);
                    memcpy(o + 32 + 2 * r, p + 2, 2);
                    for (int c = 0; c < 4; c++) memcpy(o + 64 + 64 * c + 4 * r, p + 4 + 4 * c, 4);
                } else {
                    int8_t q[32];
                    const uint8_t *p = row + q8_source_block_bytes(type) * b;
                    block_as_q8(type, p, q);
                    memcpy(o + 2 * r, p, 2);
                    for (int g = 0; g < 8; g++)
                        for (int j = 0; j < 4; j++) o[32 + 64 * g + 4 * r + j] = (uint8_t)q[4 * g + j] ^ 0x80;
                }
            }
        }
    }
}

VNNI static void vnni_digits(const float *x, int in_features, int8_t *digits, float *scales, int32_t *offsets) {
    const __m512 magnitude = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int b = 0; b < in_features / 32; b++) {
        __m512 x0 = _mm512_loadu_ps(x + 32 * b), x1 = _mm512_loadu_ps(x + 32 * b + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(x0, magnitude), _mm512_and_ps(x1, magnitude)));
        const float s1 = amax / 127.0f;
        // Digit scales are s1 / 128^k, exact powers of two apart; the kernel needs s1/128 and s1/128³.
        scales[3 * b] = s1 / 128.0f;
        scales[3 * b + 1] = s1 / 2097152.0f;
        scales[3 * b + 2] = _mm512_reduce_add_ps(_mm512_add_ps(x0, x1));
        __m512 s = _mm512_set1_ps(s1), inv = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
        int32_t level_sums[4];
        for (int l = 0; l < 4; l++) {
            __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, inv)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, inv));
            x0 = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(q0), s, x0);
            x1 = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(q1), s, x1);
            level_sums[l] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            _mm_storeu_si128((__m128i *)(digits + 128 * b + 32 * l), _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(digits + 128 * b + 32 * l + 16), _mm512_cvtepi32_epi8(q1));
            s = _mm512_mul_ps(s, _mm512_set1_ps(1.0f / 128));
            inv = _mm512_mul_ps(inv, _mm512_set1_ps(128.0f));
        }
        // What Q8_0's weights + 128 add to the two combined sums (see slab_q8_0).
        offsets[2 * b] = 128 * (128 * level_sums[0] + level_sums[1]);
        offsets[2 * b + 1] = 128 * (128 * level_sums[2] + level_sums[3]);
    }
}

int tiller_vnni_digits(const float *x, int in_features, int8_t *digits, float *scales, int32_t *offsets) {
    if (!tiller_kernels_vnni() || in_features % 32) return 0;
    vnni_digits(x, in_features, digits, scales, offsets);
    return 1;
}

/// Four digits of group `at` (4 elements) of level l, broadcast to every lane.
#define DIGITS(xb, l, at) _mm512_set1_epi32(*(const int32_t *)((xb) + 32 * (l) + (at)))

/// Σ over the block of digits × weights, combined: s1/128·(128·A1 + A2) + s1/128³·(128·A3 + A4),
/// each parenthesis an exact integer below 2^24 for Q4_1 (so converted exactly).
/// `offsets` (two a block) are subtracted from the two parentheses.
VNNI static inline __m512 combine(__m512i a1, __m512i a2, __m512i a3, __m512i a4, const int32_t *offsets, const float *scales) {
    __m512 hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_add_epi32(_mm512_slli_epi32(a1, 7), a2), _mm512_set1_epi32(offsets[0])));
    __m512 lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_add_epi32(_mm512_slli_epi32(a3, 7), a4), _mm512_set1_epi32(offsets[1])));
    return _mm512_fmadd_ps(lo, _mm512_set1_ps(scales[1]), _mm512_mul_ps(hi, _mm512_set1_ps(scales[0])));
}

/// A block column's 16 scales and mins and its nibbles: fp16 in the Q4_1 layout, fp32 in Q4_K's.
VNNI static inline __m512 nibble_scales(const uint8_t *p, int f32) {
    return f32 ? _mm512_loadu_ps(p) : _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
#define NIBBLE_BLOCK(f32) ((f32) ? VNNIBlockQ4_K : VNNIBlockQ4_1)
#define NIBBLE_MINS(f32) ((f32) ? 64 : 32)
#define NIBBLE_DATA(f32) ((f32) ? 128 : 64)

VNNI static inline __m512 slab_nibbles(const uint8_t *w, int blocks, const int8_t *digits, const float *scales, const int f32) {
    static const int32_t none[2] = {0, 0};
    const __m512i low = _mm512_set1_epi8(0x0F), zero = _mm512_setzero_si512();
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *p = w + NIBBLE_BLOCK(f32) * b;
        const int8_t *xb = digits + 128 * b;
        // Low and high nibbles in their own accumulators: eight dependency chains.
        __m512i a1 = zero, a2 = zero, a3 = zero, a4 = zero, b1 = zero, b2 = zero, b3 = zero, b4 = zero;
        for (int c = 0; c < 4; c++) {
            const __m512i v = _mm512_loadu_si512(p + NIBBLE_DATA(f32) + 64 * c);
            const __m512i lo = _mm512_and_si512(v, low), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            a1 = _mm512_dpbusd_epi32(a1, lo, DIGITS(xb, 0, 4 * c));
            a2 = _mm512_dpbusd_epi32(a2, lo, DIGITS(xb, 1, 4 * c));
            a3 = _mm512_dpbusd_epi32(a3, lo, DIGITS(xb, 2, 4 * c));
            a4 = _mm512_dpbusd_epi32(a4, lo, DIGITS(xb, 3, 4 * c));
            b1 = _mm512_dpbusd_epi32(b1, hi, DIGITS(xb, 0, 16 + 4 * c));
            b2 = _mm512_dpbusd_epi32(b2, hi, DIGITS(xb, 1, 16 + 4 * c));
            b3 = _mm512_dpbusd_epi32(b3, hi, DIGITS(xb, 2, 16 + 4 * c));
            b4 = _mm512_dpbusd_epi32(b4, hi, DIGITS(xb, 3, 16 + 4 * c));
        }
        a1 = _mm512_add_epi32(a1, b1), a2 = _mm512_add_epi32(a2, b2);
        a3 = _mm512_add_epi32(a3, b3), a4 = _mm512_add_epi32(a4, b4);
        // w = d·q + m: Σ w·x = d·Σ q·x + m·Σ x.
        const __m512 d = nibble_scales(p, f32), m = nibble_scales(p + NIBBLE_MINS(f32), f32);
        acc = _mm512_fmadd_ps(d, combine(a1, a2, a3, a4, none, scales + 3 * b), acc);
        acc = _mm512_fmadd_ps(m, _mm512_set1_ps(scales[3 * b + 2]), acc);
    }
    return acc;
}

VNNI static __m512 slab_q8_0(const uint8_t *w, int blocks, const int8_t *digits, const float *scales, const int32_t *offsets) {
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *p = w + VNNIBlockQ8_0 * b;
        const int8_t *xb = digits + 128 * b;
        // Two sets of accumulators (even and odd groups): eight dependency chains hide vpdpbusd's latency.
        __m512i a1 = zero, a2 = zero, a3 = zero, a4 = zero, b1 = zero, b2 = zero, b3 = zero, b4 = zero;
        for (int g = 0; g < 8; g += 2) {
            // The weights + 128 are the unsigned operand, the digits the signed one.
            const __m512i v = _mm512_loadu_si512(p + 32 + 64 * g), u = _mm512_loadu_si512(p + 96 + 64 * g);
            a1 = _mm512_dpbusd_epi32(a1, v, DIGITS(xb, 0, 4 * g));
            a2 = _mm512_dpbusd_epi32(a2, v, DIGITS(xb, 1, 4 * g));
            a3 = _mm512_dpbusd_epi32(a3, v, DIGITS(xb, 2, 4 * g));
            a4 = _mm512_dpbusd_epi32(a4, v, DIGITS(xb, 3, 4 * g));
            b1 = _mm512_dpbusd_epi32(b1, u, DIGITS(xb, 0, 4 * g + 4));
            b2 = _mm512_dpbusd_epi32(b2, u, DIGITS(xb, 1, 4 * g + 4));
            b3 = _mm512_dpbusd_epi32(b3, u, DIGITS(xb, 2, 4 * g + 4));
            b4 = _mm512_dpbusd_epi32(b4, u, DIGITS(xb, 3, 4 * g + 4));
        }
        a1 = _mm512_add_epi32(a1, b1), a2 = _mm512_add_epi32(a2, b2);
        a3 = _mm512_add_epi32(a3, b3), a4 = _mm512_add_epi32(a4, b4);
        // Level l's sum carries 128·Σ digits of level l; the offsets take that out of both parentheses.
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
        acc = _mm512_fmadd_ps(d, combine(a1, a2, a3, a4, offsets + 2 * b, scales + 3 * b), acc);
    }
    return acc;
}

VNNI static void matvec_vnni(int type, const uint8_t *packed, int in_features, const int8_t *digits,
                             const float *scales, const int32_t *offsets, float *y, int out_features, int slab0, int slab1) {
    const int blocks = in_features / 32;
    const size_t slab_bytes = vnni_block_bytes(type) * (size_t)blocks;
    for (int s = slab0; s < slab1; s++) {
        const uint8_t *w = packed + slab_bytes * s;
        const __m512 r = type == TillerKernelQ4_1 ? slab_nibbles(w, blocks, digits, scales, 0)
                       : type == TillerKernelQ4_K ? slab_nibbles(w, blocks, digits, scales, 1)
                                                  : slab_q8_0(w, blocks, digits, scales, offsets);
        const int n = out_features - 16 * s;
        _mm512_mask_storeu_ps(y + 16 * s, n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1), r);
    }
}

// Four input rows against one slab (batched decode of a model without an fp32 copy): each chunk
// of weights is loaded once for the four rows, sixteen independent accumulators (row × digit).
// Rows past the caller's count point at a real row and their results are dropped.
VNNI static void rows4_q8_0(const uint8_t *w, int blocks, const int8_t *const *d, const float *const *sc,
                            const int32_t *const *off, __m512 *out) {
    __m512 acc[4];
    for (int r = 0; r < 4; r++) acc[r] = _mm512_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *p = w + VNNIBlockQ8_0 * b;
        __m512i a[4][4];
        for (int r = 0; r < 4; r++)
            for (int l = 0; l < 4; l++) a[r][l] = _mm512_setzero_si512();
        for (int g = 0; g < 8; g++) {
            const __m512i v = _mm512_loadu_si512(p + 32 + 64 * g);
            for (int r = 0; r < 4; r++)
                for (int l = 0; l < 4; l++) a[r][l] = _mm512_dpbusd_epi32(a[r][l], v, DIGITS(d[r] + 128 * b, l, 4 * g));
        }
        const __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
        for (int r = 0; r < 4; r++)
            acc[r] = _mm512_fmadd_ps(dv, combine(a[r][0], a[r][1], a[r][2], a[r][3], off[r] + 2 * b, sc[r] + 3 * b), acc[r]);
    }
    for (int r = 0; r < 4; r++) out[r] = acc[r];
}

VNNI static inline void rows4_nibbles(const uint8_t *w, int blocks, const int8_t *const *d, const float *const *sc, __m512 *out,
                                      const int f32) {
    static const int32_t none[2] = {0, 0};
    const __m512i low = _mm512_set1_epi8(0x0F);
    __m512 acc[4];
    for (int r = 0; r < 4; r++) acc[r] = _mm512_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *p = w + NIBBLE_BLOCK(f32) * b;
        __m512i a[4][4];
        for (int r = 0; r < 4; r++)
            for (int l = 0; l < 4; l++) a[r][l] = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            const __m512i v = _mm512_loadu_si512(p + NIBBLE_DATA(f32) + 64 * c);
            const __m512i lo = _mm512_and_si512(v, low), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            for (int r = 0; r < 4; r++)
                for (int l = 0; l < 4; l++)
                    a[r][l] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a[r][l], lo, DIGITS(d[r] + 128 * b, l, 4 * c)), hi,
                                                  DIGITS(d[r] + 128 * b, l, 16 + 4 * c));
        }
        const __m512 dv = nibble_scales(p, f32), mv = nibble_scales(p + NIBBLE_MINS(f32), f32);
        for (int r = 0; r < 4; r++) {
            acc[r] = _mm512_fmadd_ps(dv, combine(a[r][0], a[r][1], a[r][2], a[r][3], none, sc[r] + 3 * b), acc[r]);
            acc[r] = _mm512_fmadd_ps(mv, _mm512_set1_ps(sc[r][3 * b + 2]), acc[r]);
        }
    }
    for (int r = 0; r < 4; r++) out[r] = acc[r];
}

VNNI static void matmul_vnni(int type, const uint8_t *packed, int in_features, int rows, const int8_t *digits,
                             const float *scales, const int32_t *offsets, float *y, size_t ldy, int out_features,
                             int slab0, int slab1) {
    const int blocks = in_features / 32;
    const size_t slab_bytes = vnni_block_bytes(type) * (size_t)blocks;
    for (int s = slab0; s < slab1; s++) {
        const uint8_t *w = packed + slab_bytes * s;
        const int n = out_features - 16 * s;
        const __mmask16 mask = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
        for (int r0 = 0; r0 < rows; r0 += 4) {
            const int8_t *d[4];
            const float *sc[4];
            const int32_t *off[4];
            for (int r = 0; r < 4; r++) {
                const int row = r0 + r < rows ? r0 + r : r0;
                d[r] = digits + (size_t)row * 128 * blocks;
                sc[r] = scales + (size_t)row * 3 * blocks;
                off[r] = offsets + (size_t)row * 2 * blocks;
            }
            __m512 out[4];
            if (type == TillerKernelQ4_1) rows4_nibbles(w, blocks, d, sc, out, 0);
            else if (type == TillerKernelQ4_K) rows4_nibbles(w, blocks, d, sc, out, 1);
            else rows4_q8_0(w, blocks, d, sc, off, out);
            for (int r = 0; r < 4 && r0 + r < rows; r++) _mm512_mask_storeu_ps(y + (size_t)(r0 + r) * ldy + 16 * s, mask, out[r]);
        }
    }
}

int tiller_matmul_vnni(int type, const void *packed, int in_features, int rows, const int8_t *digits, const float *scales,
                       const int32_t *offsets, float *y, size_t ldy, int out_features, int slab0, int slab1) {
    if (!tiller_kernels_vnni() || !vnni_block_bytes(type) || in_features % 32) return 0;
    matmul_vnni(type, (const uint8_t *)packed, in_features, rows, digits, scales, offsets, y, ldy, out_features, slab0, slab1);
    return 1;
}

int tiller_matvec_vnni(int type, const void *packed, int in_features, const int8_t *digits, const float *scales,
                       const int32_t *offsets, float *y, int out_features, int slab0, int slab1) {
    if (!tiller_kernels_vnni() || !vnni_block_bytes(type) || in_features % 32) return 0;
    matvec_vnni(type, (const uint8_t *)packed, in_features, digits, scales, offsets, y, out_features, slab0, slab1);
    return 1;
}

#else
int tiller_kernels_avx512(void) { return 0; }
int tiller_matvec_avx512(int type, const void *base, size_t row_bytes, int in_features, const float *x,
                         const float *group_sums, float *y, int o0, int o1) {
    (void)type; (void)base; (void)row_bytes; (void)in_features; (void)x; (void)group_sums; (void)y; (void)o0; (void)o1;
    return 0;
}
int tiller_kernels_vnni(void) { return 0; }
size_t tiller_vnni_slab_bytes(int type, int in_features) { (void)type; (void)in_features; return 0; }
int tiller_vnni_slab_type(int type) { (void)type; return -1; }
void tiller_vnni_pack(int type, const void *base, size_t row_bytes, int in_features, int out_features,
                      int slab0, int slab1, void *packed) {
    (void)type; (void)base; (void)row_bytes; (void)in_features; (void)out_features; (void)slab0; (void)slab1; (void)packed;
}
int tiller_vnni_digits(const float *x, int in_features, int8_t *digits, float *scales, int32_t *offsets) {
    (void)x; (void)in_features; (void)digits; (void)scales; (void)offsets;
    return 0;
}
int tiller_matmul_vnni(int type, const void *packed, int in_features, int rows, const int8_t *digits, const float *scales,
                       const int32_t *offsets, float *y, size_t ldy, int out_features, int slab0, int slab1) {
    (void)type; (void)packed; (void)in_features; (void)rows; (void)digits; (void)scales; (void)offsets; (void)y; (void)ldy;
    (void)out_features; (void)slab0; (void)slab1;
    return 0;
}
int tiller_matvec_vnni(int type, const void *packed, int in_features, const int8_t *digits, const float *scales,
                       const int32_t *offsets, float *y, int out_features, int slab0, int slab1) {
    (void)type; (void)packed; (void)in_features; (void)digits; (void)scales; (void)offsets; (void)y; (void)out_features; (void)slab0; (void)slab1;
    return 0;
}
#endif
