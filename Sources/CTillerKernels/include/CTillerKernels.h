#ifndef CTILLER_KERNELS_H
#define CTILLER_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/// GGML type ids of the blocks the AVX-512 one-row kernels read (ggml's numbering).
enum {
    TillerKernelQ4_0 = 2, TillerKernelQ4_1 = 3, TillerKernelQ5_0 = 6, TillerKernelQ8_0 = 8,
    TillerKernelQ4_K = 12, TillerKernelQ6_K = 14,
};

/// 1 when the CPU runs the AVX-512 kernels (AVX-512 F, BW, VL, DQ and F16C), else 0.
int tiller_kernels_avx512(void);

/// y[o] = W[o]·x for o in [o0, o1): one input row against stored rows of `type`, `row_bytes`
/// apart, `in_features` long, accumulated in fp32. `group_sums[k]` = Σ x[32k ..< 32k+32] is read
/// by the types with an offset (Q4_1, Q4_K). Returns 0 (and writes nothing) when the type has no
/// kernel here or the CPU lacks AVX-512.
int tiller_matvec_avx512(int type, const void *base, size_t row_bytes, int in_features, const float *x,
                         const float *group_sums, float *y, int o0, int o1);

/// Packs a row-major out×in f32 matrix into 16-output slabs: slab s is `in_features` rows of 16
/// floats (outputs 16s ..< 16s+16, zero past the last output). `packed` holds ⌈out/16⌉·16·in floats.
void tiller_pack_slabs(const float *w, int out_features, int in_features, float *packed);

/// The row chunks (at most 12 rows each) that the packed kernel runs `rows` input rows in.
int tiller_input_chunks(int rows);

/// Input rows from which the packed kernel should read packed inputs on this CPU.
int tiller_pack_inputs_min_rows(void);

/// Packs chunks [chunk0, chunk1) of row-major rows×in inputs for the packed kernel: chunk c, of n
/// rows starting at r0, goes to xp + r0·in as xp[k·n + r]. `xp` holds rows·in floats.
void tiller_pack_inputs(const float *x, int rows, int in_features, int chunk0, int chunk1, float *xp);

/// y[r·ldy + o] = Σ_k x[r·in + k] · W[o, k] for every row r < rows and every output o of slabs
/// [slab0, slab1), from weights packed by `tiller_pack_slabs`; fp32 accumulation in k order.
/// `xp`, when not null, is `x` packed by `tiller_pack_inputs` and is read instead (same result,
/// bit for bit). Returns 0 (and writes nothing) when the CPU lacks AVX-512.
int tiller_packed_gemm_avx512(const float *x, const float *xp, int rows, int in_features, const float *packed,
                              int out_features, int slab0, int slab1, float *y, size_t ldy);

/// One query's softmax attention (no soft-cap): scores[j − lo] = q·k_j·scale for keys lo…p,
/// softmax, out = Σ w_j·v_j. Rows j < split are k_pre/v_pre + j·kv_dim, the rest
/// k_own/v_own + (j − split)·kv_dim. `scores` holds p − lo + 1 floats. Returns 0 (nothing
/// written) without AVX-512 or when head_dim is not a multiple of 16 up to 256.
int tiller_attend_query_avx512(const float *q, const float *k_pre, const float *k_own, const float *v_pre,
                               const float *v_own, int split, int kv_dim, int head_dim, int lo, int p, float scale,
                               float *scores, float *out);

/// 1 when the CPU runs the one-row VNNI kernels (the AVX-512 set above plus AVX-512 VNNI).
int tiller_kernels_vnni(void);

/// The slab layout a matrix stored as `type` is re-laid in, which is the type the kernels below
/// are called with: Q4_1 as Q4_1; Q8_0, Q5_0 and Q4_0 as Q8_0 (their integers fit a byte, so the
/// re-lay is exact); Q4_K as its own layout (Q4_1's shape with fp32 sub-block scales, exact too;
/// in_features a multiple of 256); -1 for types without a layout.
int tiller_vnni_slab_type(int type);

/// Bytes of one 16-row slab of a matrix stored as `type` re-laid for `tiller_matvec_vnni`,
/// `in_features` long; 0 for types without a layout.
size_t tiller_vnni_slab_bytes(int type, int in_features);

/// Re-lays rows 16s ..< 16s+16 (zero past `out_features`) of a matrix stored as GGUF blocks of
/// `type`, `row_bytes` apart, as slab s of `packed` (in the layout of `tiller_vnni_slab_type`),
/// for s in [slab0, slab1).
void tiller_vnni_pack(int type, const void *base, size_t row_bytes, int in_features, int out_features,
                      int slab0, int slab1, void *packed);

/// Writes one input row as the VNNI kernels read it, per 32-element block: four int8 digits of its
/// 32 elements (`digits`, 128 bytes a block), three floats (`scales`: the scales of the two digit
/// pairs and Σx) and two int32 (`offsets`, for Q8_0's weights stored + 128). Returns 0 without VNNI.
int tiller_vnni_digits(const float *x, int in_features, int8_t *digits, float *scales, int32_t *offsets);

/// y[o] = W[o]·x for the outputs of slabs [slab0, slab1) (outputs ≥ out_features are not written),
/// from slabs written by `tiller_vnni_pack` and an input written by `tiller_vnni_digits`; `type`
/// is the slab layout (`tiller_vnni_slab_type`). Returns 0 (and writes nothing) without VNNI or
/// for a type without a layout.
int tiller_matvec_vnni(int type, const void *packed, int in_features, const int8_t *digits, const float *scales,
                       const int32_t *offsets, float *y, int out_features, int slab0, int slab1);

/// The same for `rows` input rows, each written by `tiller_vnni_digits` at row r's offsets
/// (digits + r·128·blocks, scales + r·3·blocks, offsets + r·2·blocks, blocks = in_features / 32):
/// y[r·ldy + o]. Four rows share each load of the weights.
int tiller_matmul_vnni(int type, const void *packed, int in_features, int rows, const int8_t *digits, const float *scales,
                       const int32_t *offsets, float *y, size_t ldy, int out_features, int slab0, int slab1);

#endif
