// The BLAS subset Tiller uses (row-major): OpenBLAS on Linux, loaded on first use; Accelerate on
// macOS. See blas.c for why OpenBLAS is loaded late.
#ifndef TILLER_COPENBLAS_H
#define TILLER_COPENBLAS_H

// CBLAS's values for the layout and transpose arguments.
enum { TillerBlasRowMajor = 101, TillerBlasNoTrans = 111, TillerBlasTrans = 112 };

// C = alpha · op(A) · op(B) + beta · C, row-major.
void tiller_sgemm(int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc);
// y = alpha · op(A) · x + beta · y, row-major.
void tiller_dgemv(int trans, int m, int n, double alpha, const double *a, int lda, const double *x, int incx,
                  double beta, double *y, int incy);
// The number of threads BLAS may use for one call.
void tiller_blas_set_threads(int n);
// The kernel family in use (OpenBLAS's core name, e.g. "Haswell"; "Accelerate" on macOS).
const char *tiller_blas_core(void);

#endif
