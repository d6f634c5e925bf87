/*
 * Pieces every kernel translation unit shares: the exp and tanh constants (one
 * algorithm on every ISA) and the generic packing loops, instantiated per ISA with
 * its nr so the compiler vectorizes them with that unit's flags. Internal to simd/.
 */
#ifndef MHA_SIMD_COMMON_H
#define MHA_SIMD_COMMON_H

#include <stddef.h>
#include <string.h>

/*
 * exp(x), x = n*ln2 + r:
 *   x is clamped to [MHA_EXP_LO, MHA_EXP_HI] (NaN passes through the clamp): below
 *   -104 the result rounds to 0, above 89 it overflows to +inf, and n stays within
 *   [-150, 128].
 *   n = round(x * log2(e)), r = x - n*C1 - n*C2 (Cody-Waite: C1 has 9 significant
 *   bits, so n*C1 is exact and x - n*C1 loses nothing), |r| <= ln2/2.
 *   e^r ~ 1 + r + r^2 * P(r), P of degree 5 (Cephes expf minimax coefficients),
 *   evaluated as one Horner chain ((P(r) r + 1) r + 1): no r*r term, which would
 *   underflow to a (slow) denormal for tiny |x|.
 *   2^n = 2^n1 * 2^n2 with n1 = n >> 1, n2 = n - n1, both in [-75, 64] and so normal
 *   floats: p*2^n1 is exact and the second multiply rounds once, giving correct
 *   denormals, 0 and +inf.
 */
/*
 * The softmax's exp (f32_exp_sub_sum) flushes to +0 every result below 2^-126:
 * x < MHA_EXP_FLUSH, the least float whose exact exp is >= 2^-126 (-126 ln 2 =
 * -87.33654475 rounds to the float below, whose exp is a denormal). Such lanes are
 * clamped to MHA_EXP_FLUSH (a normal result: no denormal is produced, which costs
 * a microcode assist on Intel cores) and then zeroed by a compare; NaN compares
 * false and stays NaN. The lanes at or above the threshold keep their bits.
 */
#define MHA_EXP_FLUSH (-0x1.5d589ep+6f) /* -87.3365402 */
#define MHA_EXP_LO (-104.0f)
#define MHA_EXP_HI 89.0f
#define MHA_EXP_LOG2E 1.44269504088896341f
#define MHA_EXP_C1 0.693359375f
#define MHA_EXP_C2 (-2.12194440e-4f)
#define MHA_EXP_P0 1.9875691500e-4f
#define MHA_EXP_P1 1.3981999507e-3f
#define MHA_EXP_P2 8.3334519073e-3f
#define MHA_EXP_P3 4.1665795894e-2f
#define MHA_EXP_P4 1.6666665459e-1f
#define MHA_EXP_P5 5.0000001201e-1f

/*
 * tanh(x), the Cephes tanhf algorithm, on a = |x| (the sign is copied back last):
 *   a < MHA_TANH_SMALL: tanh = x, the correctly rounded result (tanh(a) = a - a^3/3
 *   + ..., and a^2/3 < 2^-25 is below half an ulp). No arithmetic on such lanes, so
 *   denormal inputs cost nothing.
 *   a < MHA_TANH_POLY: the odd polynomial a + a^3 Q(a^2), Q of degree 4 (Cephes
 *   minimax coefficients), evaluated on max(a, MHA_TANH_SMALL).
 *   else: 1 - 2 / (exp(2a) + 1) through the exp of this file, on min(a, MHA_TANH_SAT):
 *   beyond 9.01 tanh rounds to 1, and at 9.5 the formula gives exactly 1, so exp
 *   never overflows. A NaN passes the clamps and the exp, and stays NaN.
 * Both branches are computed and blended (no data-dependent branch in SIMD code).
 */
#define MHA_TANH_SMALL 0x1p-12f
#define MHA_TANH_POLY 0.625f
#define MHA_TANH_SAT 9.5f
#define MHA_TANH_Q0 (-5.70498872745e-3f)
#define MHA_TANH_Q1 2.06390887954e-2f
#define MHA_TANH_Q2 (-5.37397155531e-2f)
#define MHA_TANH_Q3 1.33314422036e-1f
#define MHA_TANH_Q4 (-3.33332819422e-1f)

/* Packing of B stored transposed (n rows of k): B[p][j] = src[j*ld + p]. */
static inline void mha_pack_b_nk_generic(size_t nr, size_t n, size_t k, const float *src,
                                         size_t ld, float *dst)
{
    for (size_t j0 = 0; j0 < n; j0 += nr, dst += k * nr) {
        size_t w = n - j0 < nr ? n - j0 : nr;
        for (size_t j = 0; j < w; j++) {
            const float *s = src + (j0 + j) * ld;
            for (size_t p = 0; p < k; p++)
                dst[p * nr + j] = s[p];
        }
        for (size_t j = w; j < nr; j++)
            for (size_t p = 0; p < k; p++)
                dst[p * nr + j] = 0.0f;
    }
}

/* Packing of B stored as is (k rows of n): B[p][j] = src[p*ld + j]. */
static inline void mha_pack_b_kn_generic(size_t nr, size_t n, size_t k, const float *src,
                                         size_t ld, float *dst)
{
    for (size_t j0 = 0; j0 < n; j0 += nr, dst += k * nr) {
        size_t w = n - j0 < nr ? n - j0 : nr;
        for (size_t p = 0; p < k; p++) {
            memcpy(dst + p * nr, src + p * ld + j0, w * sizeof(float));
            for (size_t j = w; j < nr; j++)
                dst[p * nr + j] = 0.0f;
        }
    }
}

/* Packing of A (m rows of k) into micro-panels of mr rows: A[r][p] of panel i at
 * dst[i*k*mr + p*mr + r], rows past m zero. Each ISA passes its mr; a source row
 * is read once, sequentially, so 4 KiB row strides cost nothing here. */
static inline void mha_pack_a_generic(size_t mr, size_t m, size_t k, const float *src, size_t ld,
                                      float *dst)
{
    for (size_t i0 = 0; i0 < m; i0 += mr, dst += k * mr) {
        size_t h = m - i0 < mr ? m - i0 : mr;
        for (size_t r = 0; r < h; r++) {
            const float *s = src + (i0 + r) * ld;
            for (size_t p = 0; p < k; p++)
                dst[p * mr + r] = s[p];
        }
        for (size_t r = h; r < mr; r++)
            for (size_t p = 0; p < k; p++)
                dst[p * mr + r] = 0.0f;
    }
}

/* out[r] = dot(x, rows[r]) through an ISA's 8-row step (which takes 1..8 rows,
 * re-reading the last for the missing ones) and its single-row dot: a tail of 4
 * to 7 rows still goes through the 8-row step, fewer go one at a time. */
typedef void (*mha_dot8_fn)(const float *x, const float *rows, size_t ld, size_t cnt, size_t n,
                            float *out);
typedef float (*mha_dot1_fn)(const float *x, const float *row, size_t n);

static inline void mha_dot_rows_by_8(const float *x, const float *rows, size_t ld, size_t m,
                                     size_t n, float *out, mha_dot8_fn dot8, mha_dot1_fn dot1)
{
    size_t r = 0;
    for (; r + 8 <= m; r += 8)
        dot8(x, rows + r * ld, ld, 8, n, out + r);
    if (m - r >= 4) {
        dot8(x, rows + r * ld, ld, m - r, n, out + r);
        return;
    }
    for (; r < m; r++)
        out[r] = dot1(x, rows + r * ld, n);
}

/* y[i] += sum_r w[r] * rows[r][i] through cols(), an ISA's pass over y in
 * register-sized pieces. When y takes several passes (n > one_pass floats), the
 * rows go in blocks of ~16 KiB so that the passes after the first read L1. */
typedef void (*mha_axpy_cols_fn)(const float *w, const float *rows, size_t ld, size_t m, size_t n,
                                 float *y);

static inline void mha_axpy_rows_blocked(const float *w, const float *rows, size_t ld, size_t m,
                                         size_t n, float *y, size_t one_pass, mha_axpy_cols_fn cols)
{
    const size_t rb = n <= one_pass ? m : (4096 / n > 4 ? 4096 / n : 4);
    for (size_t r0 = 0; r0 < m; r0 += rb)
        cols(w + r0, rows + r0 * ld, ld, m - r0 < rb ? m - r0 : rb, n, y);
}

/* f32_dot_rows_nx and f32_axpy_rows_nx one query row at a time, through an ISA's
 * single-row kernels (bits equal to theirs, so independent of nx by construction). */
typedef void (*mha_dot_rows_fn)(const float *x, const float *rows, size_t ld, size_t m, size_t n,
                                float *out);
typedef void (*mha_axpy_rows_fn)(const float *w, const float *rows, size_t ld, size_t m, size_t n,
                                 float *y);

static inline void mha_dot_rows_nx_by_row(const float *x, size_t ldx, size_t nx, const float *rows,
                                          size_t ld, size_t m, size_t n, float *out, size_t ldo,
                                          mha_dot_rows_fn dot)
{
    for (size_t r = 0; r < nx; r++)
        dot(x + r * ldx, rows, ld, m, n, out + r * ldo);
}

static inline void mha_axpy_rows_nx_by_row(const float *w, size_t ldw, size_t nx, const float *rows,
                                           size_t ld, size_t m, size_t n, float *y, size_t ldy,
                                           mha_axpy_rows_fn axpy)
{
    for (size_t r = 0; r < nx; r++)
        axpy(w + r * ldw, rows, ld, m, n, y + r * ldy);
}

#endif /* MHA_SIMD_COMMON_H */
