/*
 * The kernel table: one struct of function pointers per ISA, filled at compile
 * time in that ISA's translation unit and chosen once at run time (engine/cpu.c).
 * Kernels know registers and tiles, nothing about shapes beyond a tile, masks,
 * threads or allocation.
 *
 * GEMM microkernel contract (all ISAs):
 *   C[m x n] (+)= A[m x k] * B[k x n] (+ bias[n])      m <= mr, n <= nr, k >= 0
 *   A, for f32_gemm_pa (the fast path): one packed micro-panel of mr rows,
 *     A[r][p] = a[p*mr + r], as f32_pack_a writes it; rows past m are read, never
 *     stored. For f32_gemm: row-major and unpacked, A[r][p] = a[r*lda + p].
 *   B is one packed panel of nr columns: B[p][j] = b[p*nr + j] (zero-padded past n).
 *   C is row-major: C[r][j] = c[r*ldc + j]; only the m x n corner is touched.
 *   accumulate != 0 adds to C, else overwrites it. bias may be NULL.
 *   Pointers need no alignment.
 * Packing B writes panels of nr columns, panel after panel, each k*nr floats,
 * zero-padding the last panel: ceil(n / nr) * k * nr floats in all. Packing A
 * writes micro-panels of mr rows the same way: ceil(m / mr) * k * mr floats.
 * Both panels are k-major, so the columns [p0, p0 + kc) of a panel start at
 * a + p0*mr (b + p0*nr): a caller may block k without repacking.
 *
 * Why A is packed: the kernel reads mr rows of A at once. Read in place, rows a
 * multiple of 4 KiB apart (K or H*d = 1024 floats) all fall into the same L1 sets
 * and the kernel ran at 49-59% of peak on an Intel Xeon against 84-97% on
 * contiguous data; BLIS and OpenBLAS pack A for this reason. One mechanism for
 * every ISA (and the dtypes to come): pack, then run the micro-panel kernel.
 */
#ifndef MHA_SIMD_KERNELS_H
#define MHA_SIMD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "mha.h"

typedef struct mha_kernels {
    mha_isa isa;
    const char *name;
    size_t gemm_mr, gemm_nr;

    /* y[i] = exp(x[i]); x == y allowed. Max error 2 ulp over all floats (measured
     * over every float in [-104, 0]: 0.89 ulp with FMA, 1.19 ulp scalar); exp(-inf) = 0, results below
     * 2^-149 round to denormals or 0, exp(x > 88.7228) = +inf, NaN stays NaN. The
     * same algorithm on every ISA (not libm), so results agree to an ulp. */
    void (*f32_exp)(const float *x, float *y, size_t n);
    /* max of x[0..n), n >= 1; -inf if every element is -inf; NaN if any element is
     * NaN (so a NaN row is never mistaken for a fully masked one). */
    float (*f32_rowmax)(const float *x, size_t n);
    /* y[i] = exp(x[i] - sub), returns the sum of the y[i]; x == y allowed.
     * The engine passes a finite sub (the row max); x[i] == -inf gives 0. Results
     * below 2^-126 are flushed to +0: x[i] - sub < MHA_EXP_FLUSH (-87.3365402, the
     * least float whose exp is >= 2^-126; simd/common.h) gives exactly +0, so no
     * denormal is produced (a microcode assist per lane on Intel) nor handed to
     * P.V. Every other element has f32_exp's bits for x[i] - sub. A NaN in x (or
     * sub == +-inf) gives NaN elements and a NaN sum: never hidden. */
    float (*f32_exp_sub_sum)(const float *x, float sub, float *y, size_t n);
    /* x[i] *= s; n may be 0 (true of every kernel taking n, except rowmax). */
    void (*f32_scale)(float *x, float s, size_t n);

    void (*f32_gemm)(size_t m, size_t n, size_t k, const float *a, size_t lda,
                     const float *b_packed, float *c, size_t ldc, const float *bias,
                     int accumulate);
    /* Pack B[p][j] = src[j*ld + p] (src holds B transposed: n rows of k, e.g. an
     * nn.Linear weight [out, in] or a K block [keys, d]). */
    void (*f32_pack_b_nk)(size_t n, size_t k, const float *src, size_t ld, float *dst);
    /* Pack B[p][j] = src[p*ld + j] (src holds B as is: k rows of n, e.g. a V block). */
    void (*f32_pack_b_kn)(size_t n, size_t k, const float *src, size_t ld, float *dst);

    /* Added for the attention tile (scale + masks of one score row). */
    /* x[i] = x[i] * s + add[i] (one rounding per operation, no FMA contraction, so
     * every ISA gives the same bits); add == NULL gives x[i] *= s. */
    void (*f32_scale_add)(float *x, float s, const float *add, size_t n);
    /* x[i] = keep[i] ? x[i] : -inf (a boolean mask row, nonzero = may attend). */
    void (*f32_mask_u8)(float *x, const uint8_t *keep, size_t n);

    /* Added for decoding (few query rows against many keys), where packing K and V
     * would cost as much as the attention: they read K and V rows in place.
     * rows[r][i] = rows[r*ld + i]; ld >= n, or 0 (every row the same); no alignment. */
    /* out[r] = sum_i x[i] * rows[r][i] for r < m (the scores of one query row). */
    void (*f32_dot_rows)(const float *x, const float *rows, size_t ld, size_t m, size_t n,
                         float *out);
    /* y[i] += sum_r w[r] * rows[r][i] for i < n (P V for one query row); w[r] == 0
     * rows still contribute 0 * rows[r][i] (NaN propagates). */
    void (*f32_axpy_rows)(const float *w, const float *rows, size_t ld, size_t m, size_t n,
                          float *y);

    /* Added for additive (Bahdanau) attention, whose scores are w_v . tanh(...). */
    /* y[i] = tanh(x[i]); x == y allowed. The same algorithm on every ISA (not libm,
     * see common.h). Max error 2 ulp over all floats; measured over every finite
     * float: avx2 and avx512 1.371 ulp (|x| = 0.63022), scalar 1.343 ulp (|x| =
     * 0.63255, no FMA); neon gives the avx2 bits (same operations; checked on a
     * strided sample under qemu). SIMD results are within 2 ulp of the scalar ones.
     * Exact special values:
     * tanh(+-0) = +-0, tanh(+-inf) = +-1, |x| < 2^-12 gives x itself (denormals
     * included), |x| >= 9.5 gives +-1, NaN stays NaN. */
    void (*f32_tanh)(const float *x, float *y, size_t n);

    /* Added for packed A (see the GEMM contract above). */
    /* The microkernel on one packed micro-panel of A. */
    void (*f32_gemm_pa)(size_t m, size_t n, size_t k, const float *a_packed,
                        const float *b_packed, float *c, size_t ldc, const float *bias,
                        int accumulate);
    /* Pack A[r][p] = src[r*ld + p] (m rows of k) into ceil(m / mr) micro-panels. */
    void (*f32_pack_a)(size_t m, size_t k, const float *src, size_t ld, float *dst);

    /* Added for decoding with several query rows per kv head (GQA groups, a few
     * queries per sequence): f32_dot_rows and f32_axpy_rows for nx query rows at
     * once, each row of `rows` read once for all of them. Read per query row, a
     * token-major K or V block (rows H*d*4 bytes apart, often a multiple of 4 KiB)
     * falls into a few L1 sets, and every query row read it from L2 again.
     * out[r*ldo + j] = sum_i x[r*ldx + i] * rows[j][i] for r < nx, j < m.
     * y[r*ldy + i] += sum_j w[r*ldw + j] * rows[j][i] for r < nx, i < n (every w
     * used, zero or not, as in f32_axpy_rows).
     * Each result is computed the same way whatever nx and m: a row's bits do not
     * depend on how many rows share the call. */
    void (*f32_dot_rows_nx)(const float *x, size_t ldx, size_t nx, const float *rows, size_t ld,
                            size_t m, size_t n, float *out, size_t ldo);
    void (*f32_axpy_rows_nx)(const float *w, size_t ldw, size_t nx, const float *rows, size_t ld,
                             size_t m, size_t n, float *y, size_t ldy);
} mha_kernels;

/* The table of an ISA, or NULL if this build lacks it or this CPU cannot run it. */
const mha_kernels *mha_kernels_for(mha_isa isa);
/* The table of the active ISA (chosen once, thread-safe). */
const mha_kernels *mha_kernels_active(void);

/* Per-ISA tables, defined in the ISA translation units. */
extern const mha_kernels mha_kernels_scalar;
#if defined(MHA_HAVE_AVX2)
extern const mha_kernels mha_kernels_avx2;
#endif
#if defined(MHA_HAVE_AVX512)
extern const mha_kernels mha_kernels_avx512;
#endif
#if defined(MHA_HAVE_NEON)
extern const mha_kernels mha_kernels_neon;
#endif

#endif /* MHA_SIMD_KERNELS_H */
