#ifndef CTILLER_KERNELS_H
#define CTILLER_KERNELS_H
#include <stddef.h>

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

#endif
