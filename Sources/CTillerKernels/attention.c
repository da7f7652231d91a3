// One query's softmax attention over its visible keys in AVX-512 (the Swift attendHead in
// TillerModels/Backend.swift is the portable path): scores q·k·scale in fp32, e^(s − max) by the
// same Cephes polynomial as TillerTensor's vexp, then Σ (w / Σ w)·v with the output row held in
// registers. Keys and values below `split` come from the shared prefix, the rest from the
// sequence's own rows.
#include "CTillerKernels.h"
#include <math.h>
#include <stdint.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))

AVX512 static inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-87.0f));
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 shifted = _mm512_fmadd_ps(x, _mm512_set1_ps(1.4426950408889634f), magic);
    __m512 n = _mm512_sub_ps(shifted, magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440054690583e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    __m512i bits = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_castps_si512(magic));
    __m512 scale = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(127)), 23));
    return _mm512_mul_ps(y, scale);
}

/// Lane t = the sum of a[t]'s 16 lanes: pairs interleaved and added within 128-bit lanes, then
/// 64-bit halves, then the four 128-bit lanes transposed and added (45 shuffles and adds for 16
/// sums, against about 8 a sum one at a time).
AVX512 static inline __m512 reduce16(const __m512 *a) {
    __m512 b[8], c[4];
    for (int i = 0; i < 8; i++)
        b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 4; i++) {
        __m512d lo = _mm512_unpacklo_pd(_mm512_castps_pd(b[2 * i]), _mm512_castps_pd(b[2 * i + 1]));
        __m512d hi = _mm512_unpackhi_pd(_mm512_castps_pd(b[2 * i]), _mm512_castps_pd(b[2 * i + 1]));
        c[i] = _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi));
    }
    // c[i]'s 128-bit lane L holds lane group L's partial sums of a[4i ..< 4i+4].
    __m512 e01 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
    __m512 e23 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x88), _mm512_shuffle_f32x4(c[2], c[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(e01, e23, 0x88), _mm512_shuffle_f32x4(e01, e23, 0xDD));
}

#define ROW(base_pre, base_own, j) ((j) < split ? (base_pre) + (size_t)(j) * kv_dim : (base_own) + (size_t)((j) - split) * kv_dim)

AVX512 static void attend(const float *q, const float *k_pre, const float *k_own, const float *v_pre,
                          const float *v_own, int split, int kv_dim, int head_dim, int lo, int p, float scale,
                          float *scores, float *out) {
    const int chunks = head_dim / 16;
    __m512 qv[16];
    for (int c = 0; c < chunks; c++) qv[c] = _mm512_loadu_ps(q + 16 * c);
    // Scores, sixteen keys at a time (one reduction for all sixteen), then four at a time.
    __m512 mv16 = _mm512_set1_ps(-INFINITY);
    int j = lo;
    for (; j + 16 <= p + 1; j += 16) {
        const float *k[16];
        __m512 a[16];
        for (int t = 0; t < 16; t++) {
            k[t] = ROW(k_pre, k_own, j + t);
            a[t] = _mm512_setzero_ps();
        }
        for (int c = 0; c < chunks; c++)
            for (int t = 0; t < 16; t++) a[t] = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k[t] + 16 * c), a[t]);
        __m512 sv = _mm512_mul_ps(reduce16(a), _mm512_set1_ps(scale));
        _mm512_storeu_ps(scores + (j - lo), sv);
        mv16 = _mm512_max_ps(mv16, sv);
    }
    float m = _mm512_reduce_max_ps(mv16);
    for (; j + 4 <= p + 1; j += 4) {
        const float *k0 = ROW(k_pre, k_own, j), *k1 = ROW(k_pre, k_own, j + 1);
        const float *k2 = ROW(k_pre, k_own, j + 2), *k3 = ROW(k_pre, k_own, j + 3);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (int c = 0; c < chunks; c++) {
            a0 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k0 + 16 * c), a0);
            a1 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k1 + 16 * c), a1);
            a2 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k2 + 16 * c), a2);
            a3 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k3 + 16 * c), a3);
        }
        float s0 = _mm512_reduce_add_ps(a0) * scale, s1 = _mm512_reduce_add_ps(a1) * scale;
        float s2 = _mm512_reduce_add_ps(a2) * scale, s3 = _mm512_reduce_add_ps(a3) * scale;
        scores[j - lo] = s0; scores[j + 1 - lo] = s1; scores[j + 2 - lo] = s2; scores[j + 3 - lo] = s3;
        float mx = fmaxf(fmaxf(s0, s1), fmaxf(s2, s3));
        if (mx > m) m = mx;
    }
    for (; j <= p; j++) {
        const float *k = ROW(k_pre, k_own, j);
        __m512 a = _mm512_setzero_ps();
        for (int c = 0; c < chunks; c++) a = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k + 16 * c), a);
        float s = _mm512_reduce_add_ps(a) * scale;
        scores[j - lo] = s;
        if (s > m) m = s;
    }
    // Softmax weights (unnormalised) and their sum.
    const int n = p - lo + 1;
    const __m512 mv = _mm512_set1_ps(m);
    __m512 sums = _mm512_setzero_ps();
    int e = 0;
    for (; e + 16 <= n; e += 16) {
        __m512 x = exp16(_mm512_sub_ps(_mm512_loadu_ps(scores + e), mv));
        _mm512_storeu_ps(scores + e, x);
        sums = _mm512_add_ps(sums, x);
    }
    if (e < n) {
        __mmask16 tail = (__mmask16)((1u << (n - e)) - 1u);
        __m512 x = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, scores + e), mv));
        x = _mm512_maskz_mov_ps(tail, x);
        _mm512_mask_storeu_ps(scores + e, tail, x);
        sums = _mm512_add_ps(sums, x);
    }
    const float inv = 1.0f / _mm512_reduce_add_ps(sums);
    // Σ_j w_j·v_j with the output row in registers.
    __m512 acc[16];
    for (int c = 0; c < chunks; c++) acc[c] = _mm512_setzero_ps();
    for (int jj = lo; jj <= p; jj++) {
        const float *v = ROW(v_pre, v_own, jj);
        __m512 w = _mm512_set1_ps(scores[jj - lo] * inv);
        for (int c = 0; c < chunks; c++) acc[c] = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + 16 * c), acc[c]);
    }
    for (int c = 0; c < chunks; c++) _mm512_storeu_ps(out + 16 * c, acc[c]);
}

int tiller_attend_query_avx512(const float *q, const float *k_pre, const float *k_own, const float *v_pre,
                               const float *v_own, int split, int kv_dim, int head_dim, int lo, int p, float scale,
                               float *scores, float *out) {
    if (!tiller_kernels_avx512() || head_dim % 16 != 0 || head_dim > 256 || p < lo) return 0;
    attend(q, k_pre, k_own, v_pre, v_own, split, kv_dim, head_dim, lo, p, scale, scores, out);
    return 1;
}

#else
int tiller_attend_query_avx512(const float *q, const float *k_pre, const float *k_own, const float *v_pre,
                               const float *v_own, int split, int kv_dim, int head_dim, int lo, int p, float scale,
                               float *scores, float *out) {
    (void)q; (void)k_pre; (void)k_own; (void)v_pre; (void)v_own; (void)split; (void)kv_dim; (void)head_dim;
    (void)lo; (void)p; (void)scale; (void)scores; (void)out;
    return 0;
}
#endif
