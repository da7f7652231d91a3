// Loads OpenBLAS at first use instead of at program start, so that its kernel can be chosen first.
//
// OpenBLAS (DYNAMIC_ARCH builds, as Debian's) picks its kernels in a library constructor from the
// CPU model. Builds older than the CPU do not know it and fall back to generic SSE3 ("Prescott")
// kernels: on such a machine sgemm ran 3-4x slower than with the AVX2 kernels the CPU supports.
// The choice can only be steered through OPENBLAS_CORETYPE before the library loads, which a
// program linked against it cannot do. So: when the user has not set OPENBLAS_CORETYPE, Tiller sets
// it to SkylakeX on a CPU with AVX-512 (F, BW, VL, DQ: its sgemm runs 1.6-1.7x the AVX2 kernel's
// speed on the machines this was built on), else to Haswell on a CPU with AVX2 and FMA (one
// kernel family per instruction set, hence the same fp32 rounding on every such machine), then
// dlopens the library.
#include "COpenBLAS.h"

#if defined(__APPLE__)
#include <Accelerate/Accelerate.h>

void tiller_sgemm(int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, (enum CBLAS_TRANSPOSE)transA, (enum CBLAS_TRANSPOSE)transB, m, n, k, alpha, a, lda,
                b, ldb, beta, c, ldc);
}
void tiller_dgemv(int trans, int m, int n, double alpha, const double *a, int lda, const double *x, int incx,
                  double beta, double *y, int incy) {
    cblas_dgemv(CblasRowMajor, (enum CBLAS_TRANSPOSE)trans, m, n, alpha, a, lda, x, incx, beta, y, incy);
}
void tiller_blas_set_threads(int n) { (void)n; }
const char *tiller_blas_core(void) { return "Accelerate"; }

#else
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef void (*dgemv_fn)(int, int, int, int, double, const double *, int, const double *, int, double, double *, int);
typedef void (*threads_fn)(int);
typedef char *(*corename_fn)(void);

static sgemm_fn p_sgemm;
static dgemv_fn p_dgemv;
static threads_fn p_threads;
static corename_fn p_corename;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void fail(const char *what, const char *detail) {
    fprintf(stderr, "tiller: cannot use OpenBLAS: %s (%s). Install it with `apt-get install libopenblas-dev`.\n",
            what, detail ? detail : "no detail");
    abort();
}

static void load(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (getenv("OPENBLAS_CORETYPE") == NULL) {
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512dq")) {
            setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
        } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            setenv("OPENBLAS_CORETYPE", "Haswell", 0);
        }
    }
#endif
    const char *names[] = {"libopenblas.so.0", "libopenblas.so"};
    void *lib = NULL;
    for (unsigned i = 0; i < sizeof names / sizeof names[0] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) fail("libopenblas.so.0 was not found", dlerror());
    p_sgemm = (sgemm_fn)dlsym(lib, "cblas_sgemm");
    p_dgemv = (dgemv_fn)dlsym(lib, "cblas_dgemv");
    p_threads = (threads_fn)dlsym(lib, "openblas_set_num_threads");
    p_corename = (corename_fn)dlsym(lib, "openblas_get_corename");
    if (!p_sgemm || !p_dgemv) fail("the library has no cblas_sgemm/cblas_dgemv", dlerror());
}

static inline void ready(void) { pthread_once(&once, load); }

void tiller_sgemm(int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc) {
    ready();
    p_sgemm(TillerBlasRowMajor, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void tiller_dgemv(int trans, int m, int n, double alpha, const double *a, int lda, const double *x, int incx,
                  double beta, double *y, int incy) {
    ready();
    p_dgemv(TillerBlasRowMajor, trans, m, n, alpha, a, lda, x, incx, beta, y, incy);
}

void tiller_blas_set_threads(int n) {
    ready();
    if (p_threads) p_threads(n);
}

const char *tiller_blas_core(void) {
    ready();
    return p_corename ? p_corename() : "unknown";
}
#endif
