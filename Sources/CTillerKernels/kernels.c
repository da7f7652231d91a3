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

#else
int tiller_kernels_avx512(void) { return 0; }
int tiller_matvec_avx512(int type, const void *base, size_t row_bytes, int in_features, const float *x,
                         const float *group_sums, float *y, int o0, int o1) {
    (void)type; (void)base; (void)row_bytes; (void)in_features; (void)x; (void)group_sums; (void)y; (void)o0; (void)o1;
    return 0;
}
#endif
