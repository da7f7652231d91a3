// Many-row products against fp32 weights stored in 16-output slabs, in AVX-512, for the row
// counts of batched decode and the local judge (8 to a few hundred rows). A general sgemm packs
// the whole weight matrix on every call: at 32 rows that copy costs about as much as the
// arithmetic (a third of batched generation's time went to OpenBLAS's sgemm_incopy). Here the
// weights are packed once, at load: slab s holds outputs 16s ..< 16s+16 as K rows of 16 floats,
// so the kernel streams a slab with one aligned load per k and broadcasts the inputs from their
// own rows. Every output is one fp32 accumulator summed over k in order.
#include "CTillerKernels.h"
#include <stdint.h>
#include <string.h>

// Plain C: the layout is the same on every CPU; only the kernel needs AVX-512.
void tiller_pack_slabs(const float *w, int out_features, int in_features, float *packed) {
    int slabs = (out_features + 15) / 16;
    for (int s = 0; s < slabs; s++) {
        float *dst = packed + (size_t)s * in_features * 16;
        for (int k = 0; k < in_features; k++) {
            for (int j = 0; j < 16; j++) {
                int o = s * 16 + j;
                dst[(size_t)k * 16 + j] = o < out_features ? w[(size_t)o * in_features + k] : 0.0f;
            }
        }
    }
}

// Rows run in chunks of up to 12 (24 accumulators), spread evenly: 32 rows run as 11 + 11 + 10.
// Chunk c holds rows [r0, r0 + n) with n = (rows − r0) / (chunks − c).
int tiller_input_chunks(int rows) { return (rows + 11) / 12; }

// From how many rows packing the inputs pays. On an Intel Xeon (AVX-512, AMX) the tile's 12
// broadcasts from 12 rows' cache lines were the bottleneck, and packing won from 24 rows (32×64
// steered generation on SmolLM2 242 → 321 tok/s). On an AMD EPYC (Zen 4) those reads are cheap
// and the packing is not: 32-row generation ran 9% faster unpacked (351 vs 323 tok/s), while
// prefill's thousands of rows still gain.
int tiller_pack_inputs_min_rows(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_is("amd") ? 48 : 24;
#else
    return 24;
#endif
}

void tiller_pack_inputs(const float *x, int rows, int in_features, int chunk0, int chunk1, float *xp) {
    int chunks = tiller_input_chunks(rows), r0 = 0;
    for (int c = 0; c < chunks && c < chunk1; c++) {
        int n = (rows - r0) / (chunks - c);
        if (c >= chunk0) {
            float *dst = xp + (size_t)r0 * in_features;
            for (int k = 0; k < in_features; k++)
                for (int r = 0; r < n; r++) dst[(size_t)k * n + r] = x[(size_t)(r0 + r) * in_features + k];
        }
        r0 += n;
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))

// R input rows × NS slabs (16·NS outputs): R·NS accumulators, NS slab loads and R broadcasts per k.
// X_AT is input (r, k)'s address expression: rows as they are, x[r·ldx + k], or packed by
// `tiller_pack_inputs`, xp[k·R + r], where the R broadcasts of a k come from one cache line
// instead of R rows' lines. At capture's thousands of rows the rows' lines fall out of L1 between
// slabs; packed, the tile ran 112 against 70–83 GFLOP/s on one thread here (2048 × 576 × 1536).
#define TILE_WITH(NAME, R, NS, X_AT)                                                                 \
    AVX512 static void NAME##_##R##_##NS(const float *x, size_t ldx, int K, const float *slab,        \
                                         size_t slab_stride, float *y, size_t ldy, int last_count) {  \
        (void)ldx;                                                                                   \
        __m512 acc[R][NS];                                                                           \
        for (int r = 0; r < R; r++)                                                                  \
            for (int s = 0; s < NS; s++) acc[r][s] = _mm512_setzero_ps();                           \
        for (int k = 0; k < K; k++) {                                                                \
            __m512 w[NS];                                                                            \
            for (int s = 0; s < NS; s++) w[s] = _mm512_loadu_ps(slab + s * slab_stride + (size_t)k * 16); \
            for (int r = 0; r < R; r++) {                                                            \
                __m512 xv = _mm512_set1_ps(X_AT);                                                    \
                for (int s = 0; s < NS; s++) acc[r][s] = _mm512_fmadd_ps(xv, w[s], acc[r][s]);      \
            }                                                                                        \
        }                                                                                            \
        __mmask16 tail = (__mmask16)((1u << last_count) - 1u);                                       \
        for (int r = 0; r < R; r++)                                                                  \
            for (int s = 0; s < NS; s++) {                                                           \
                if (s == NS - 1 && last_count < 16)                                                  \
                    _mm512_mask_storeu_ps(y + r * ldy + s * 16, tail, acc[r][s]);                    \
                else                                                                                 \
                    _mm512_storeu_ps(y + r * ldy + s * 16, acc[r][s]);                               \
            }                                                                                        \
    }
#define TILE(R, NS) TILE_WITH(tile, R, NS, x[r * ldx + k])
#define TILEP(R, NS) TILE_WITH(ptile, R, NS, x[(size_t)k * R + r])

TILE(1, 2) TILE(2, 2) TILE(3, 2) TILE(4, 2) TILE(5, 2) TILE(6, 2)
TILE(7, 2) TILE(8, 2) TILE(9, 2) TILE(10, 2) TILE(11, 2) TILE(12, 2)
TILE(1, 1) TILE(2, 1) TILE(3, 1) TILE(4, 1) TILE(5, 1) TILE(6, 1)
TILE(7, 1) TILE(8, 1) TILE(9, 1) TILE(10, 1) TILE(11, 1) TILE(12, 1)

TILEP(1, 2) TILEP(2, 2) TILEP(3, 2) TILEP(4, 2) TILEP(5, 2) TILEP(6, 2)
TILEP(7, 2) TILEP(8, 2) TILEP(9, 2) TILEP(10, 2) TILEP(11, 2) TILEP(12, 2)
TILEP(1, 1) TILEP(2, 1) TILEP(3, 1) TILEP(4, 1) TILEP(5, 1) TILEP(6, 1)
TILEP(7, 1) TILEP(8, 1) TILEP(9, 1) TILEP(10, 1) TILEP(11, 1) TILEP(12, 1)

typedef void (*tile_fn)(const float *, size_t, int, const float *, size_t, float *, size_t, int);
static const tile_fn tiles2[13] = {0, tile_1_2, tile_2_2, tile_3_2, tile_4_2, tile_5_2, tile_6_2,
                                   tile_7_2, tile_8_2, tile_9_2, tile_10_2, tile_11_2, tile_12_2};
static const tile_fn tiles1[13] = {0, tile_1_1, tile_2_1, tile_3_1, tile_4_1, tile_5_1, tile_6_1,
                                   tile_7_1, tile_8_1, tile_9_1, tile_10_1, tile_11_1, tile_12_1};

static const tile_fn ptiles2[13] = {0, ptile_1_2, ptile_2_2, ptile_3_2, ptile_4_2, ptile_5_2, ptile_6_2,
                                    ptile_7_2, ptile_8_2, ptile_9_2, ptile_10_2, ptile_11_2, ptile_12_2};
static const tile_fn ptiles1[13] = {0, ptile_1_1, ptile_2_1, ptile_3_1, ptile_4_1, ptile_5_1, ptile_6_1,
                                    ptile_7_1, ptile_8_1, ptile_9_1, ptile_10_1, ptile_11_1, ptile_12_1};

int tiller_packed_gemm_avx512(const float *x, const float *xp, int rows, int in_features, const float *packed,
                              int out_features, int slab0, int slab1, float *y, size_t ldy) {
    if (!tiller_kernels_avx512()) return 0;
    size_t stride = (size_t)in_features * 16;
    int chunks = tiller_input_chunks(rows);
    const tile_fn *two = xp ? ptiles2 : tiles2, *one = xp ? ptiles1 : tiles1;
    const float *inputs = xp ? xp : x;
    for (int s = slab0; s < slab1;) {
        int ns = (s + 1 < slab1) ? 2 : 1;
        int last = out_features - (s + ns - 1) * 16;
        if (last > 16) last = 16;
        const float *slab = packed + (size_t)s * stride;
        int r0 = 0;
        for (int c = 0; c < chunks; c++) {
            int n = (rows - r0) / (chunks - c);
            (ns == 2 ? two : one)[n](inputs + (size_t)r0 * in_features, (size_t)in_features, in_features, slab, stride,
                                           y + (size_t)r0 * ldy + (size_t)s * 16, ldy, last);
            r0 += n;
        }
        s += ns;
    }
    return 1;
}

#else
int tiller_packed_gemm_avx512(const float *x, const float *xp, int rows, int in_features, const float *packed,
                              int out_features, int slab0, int slab1, float *y, size_t ldy) {
    (void)x; (void)xp; (void)rows; (void)in_features; (void)packed; (void)out_features; (void)slab0; (void)slab1; (void)y; (void)ldy;
    return 0;
}
#endif
