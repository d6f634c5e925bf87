/*
 * Portable C kernels: the fallback for every CPU and the reference shape of every
 * SIMD kernel (same algorithms, same order of operations where it matters).
 * GEMM tile 4x8.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "kernels.h"

#define MR 4
#define NR 8

/* exp(x), the algorithm of common.h in plain C (no FMA, so a few more roundings).
 * Measured max error over every float in [-104, 0]: 1.188 ulp (tests/test_kernels.c
 * sweep, worst at x = -59.95). x is clamped below at lo: MHA_EXP_LO, or
 * MHA_EXP_FLUSH for the softmax. */
static inline float exp1_from(float x, float lo)
{
    /* Branch-free (the compiler vectorizes the loops around it). NaN passes the
     * clamp and makes r and p NaN; n is zeroed so the int conversion stays defined. */
    x = x < lo ? lo : x;
    x = x > MHA_EXP_HI ? MHA_EXP_HI : x;
    /* Round to nearest even: adding 1.5*2^23 pushes the fraction out (|x*log2e| < 2^22). */
    const float magic = 12582912.0f;
    float n = (x * MHA_EXP_LOG2E + magic) - magic;
    float nz = n == n ? n : 0.0f;
    float r = x - n * MHA_EXP_C1;
    r = r - n * MHA_EXP_C2;
    float p = MHA_EXP_P0;
    p = p * r + MHA_EXP_P1;
    p = p * r + MHA_EXP_P2;
    p = p * r + MHA_EXP_P3;
    p = p * r + MHA_EXP_P4;
    p = p * r + MHA_EXP_P5;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t ni = (int32_t)nz;
    int32_t n1 = ni >> 1, n2 = ni - n1;
    uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return (p * s1) * s2;
}

static inline float exp1(float x)
{
    return exp1_from(x, MHA_EXP_LO);
}

static void mha_f32_exp__scalar(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = exp1(x[i]);
}

/* tanh(x), the algorithm of common.h in plain C. Branch-free like exp1. */
static inline float tanh1(float x)
{
    const float a = fabsf(x);
    const float xs = a < MHA_TANH_SMALL ? MHA_TANH_SMALL : a;
    const float z = xs * xs;
    float q = MHA_TANH_Q0;
    q = q * z + MHA_TANH_Q1;
    q = q * z + MHA_TANH_Q2;
    q = q * z + MHA_TANH_Q3;
    q = q * z + MHA_TANH_Q4;
    const float poly = (xs * z) * q + xs;
    float xe = a < MHA_TANH_POLY ? MHA_TANH_POLY : a;
    xe = xe > MHA_TANH_SAT ? MHA_TANH_SAT : xe;
    const float big = 1.0f - 2.0f / (exp1(2.0f * xe) + 1.0f);
    const float y = a < MHA_TANH_SMALL ? a : (a < MHA_TANH_POLY ? poly : big);
    return copysignf(y, x);
}

static void mha_f32_tanh__scalar(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = tanh1(x[i]);
}

static float mha_f32_rowmax__scalar(const float *x, size_t n)
{
    float m = x[0];
    for (size_t i = 1; i < n; i++)
        m = (x[i] > m || x[i] != x[i]) ? x[i] : m; /* a NaN, once taken, stays */
    return m;
}

static float mha_f32_exp_sub_sum__scalar(const float *x, float sub, float *y, size_t n)
{
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        /* The flush of common.h: lanes below MHA_EXP_FLUSH never reach exp1. */
        float d = x[i] - sub;
        float e = d < MHA_EXP_FLUSH ? 0.0f : exp1_from(d, MHA_EXP_FLUSH);
        y[i] = e;
        sum += e;
    }
    return sum;
}

static void mha_f32_scale__scalar(float *x, float s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

static void mha_f32_scale_add__scalar(float *x, float s, const float *add, size_t n)
{
    if (!add) {
        mha_f32_scale__scalar(x, s, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float t = x[i] * s;
        x[i] = t + add[i];
    }
}

static void mha_f32_mask_u8__scalar(float *x, const uint8_t *keep, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = keep[i] ? x[i] : -INFINITY;
}

/* The 4x8 tile on A[r][p] = a[r*rs + p*cs]: unpacked (rs = lda, cs = 1) or one
 * packed micro-panel (rs = 1, cs = MR). Rows r >= avail read row avail-1 (valid
 * memory); rows past m are never stored. */
static inline void gemm_4x8(size_t m, size_t n, size_t k, const float *a, size_t rs, size_t cs,
                            size_t avail, const float *b, float *c, size_t ldc, const float *bias,
                            int accumulate)
{
    if (m == 0 || n == 0)
        return;
    const float *ar[MR];
    for (size_t r = 0; r < MR; r++)
        ar[r] = a + (r < avail ? r : avail - 1) * rs;
    /* Plain C on purpose: the fallback and the reference shape, not a fast path
     * (gcc's auto-vectorizer gets about 5 GFLOP/s out of it with SSE2). */
    float acc[MR][NR] = {{0}};
    const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3];
    for (size_t p = 0; p < k; p++) {
        const float *bp = b + p * NR;
        const float x0 = a0[p * cs], x1 = a1[p * cs], x2 = a2[p * cs], x3 = a3[p * cs];
        for (size_t j = 0; j < NR; j++) {
            acc[0][j] += x0 * bp[j];
            acc[1][j] += x1 * bp[j];
            acc[2][j] += x2 * bp[j];
            acc[3][j] += x3 * bp[j];
        }
    }
    for (size_t r = 0; r < m; r++) {
        float *cr = c + r * ldc;
        for (size_t j = 0; j < n; j++) {
            float v = acc[r][j];
            if (accumulate)
                v += cr[j];
            if (bias)
                v += bias[j];
            cr[j] = v;
        }
    }
}

static void mha_f32_gemm_4x8__scalar(size_t m, size_t n, size_t k, const float *a, size_t lda,
                                     const float *b, float *c, size_t ldc, const float *bias,
                                     int accumulate)
{
    gemm_4x8(m, n, k, a, lda, 1, m, b, c, ldc, bias, accumulate);
}

static void mha_f32_gemm_pa_4x8__scalar(size_t m, size_t n, size_t k, const float *a,
                                        const float *b, float *c, size_t ldc, const float *bias,
                                        int accumulate)
{
    gemm_4x8(m, n, k, a, 1, MR, MR, b, c, ldc, bias, accumulate);
}

static void mha_f32_pack_a_4__scalar(size_t m, size_t k, const float *src, size_t ld, float *dst)
{
    mha_pack_a_generic(MR, m, k, src, ld, dst);
}

static void mha_f32_pack_b_nk_8__scalar(size_t n, size_t k, const float *src, size_t ld,
                                        float *dst)
{
    mha_pack_b_nk_generic(NR, n, k, src, ld, dst);
}

static void mha_f32_pack_b_kn_8__scalar(size_t n, size_t k, const float *src, size_t ld,
                                        float *dst)
{
    mha_pack_b_kn_generic(NR, n, k, src, ld, dst);
}

/* Decoding kernels: 4 rows at a time, each with its own accumulator (x[i] loaded
 * once for the 4), remaining rows one at a time. Rows r at rows + r*ld (ld may be 0). */
static void mha_f32_dot_rows_4__scalar(const float *x, const float *rows, size_t ld, size_t m,
                                       size_t n, float *out)
{
    size_t r = 0;
    for (; r + 4 <= m; r += 4) {
        const float *p0 = rows + r * ld, *p1 = p0 + ld, *p2 = p1 + ld, *p3 = p2 + ld;
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        for (size_t i = 0; i < n; i++) {
            const float xi = x[i];
            s0 += xi * p0[i];
            s1 += xi * p1[i];
            s2 += xi * p2[i];
            s3 += xi * p3[i];
        }
        out[r] = s0;
        out[r + 1] = s1;
        out[r + 2] = s2;
        out[r + 3] = s3;
    }
    for (; r < m; r++) {
        const float *p = rows + r * ld;
        float s = 0.0f;
        for (size_t i = 0; i < n; i++)
            s += x[i] * p[i];
        out[r] = s;
    }
}

/* 4 rows per pass over y (y read and written once per 4 rows); every w[r] is used,
 * zero or not, so a NaN in a row reaches y. */
static void mha_f32_axpy_rows_4__scalar(const float *w, const float *rows, size_t ld, size_t m,
                                        size_t n, float *y)
{
    size_t r = 0;
    for (; r + 4 <= m; r += 4) {
        const float *p0 = rows + r * ld, *p1 = p0 + ld, *p2 = p1 + ld, *p3 = p2 + ld;
        const float w0 = w[r], w1 = w[r + 1], w2 = w[r + 2], w3 = w[r + 3];
        for (size_t i = 0; i < n; i++) {
            float t = w0 * p0[i] + w1 * p1[i];
            float u = w2 * p2[i] + w3 * p3[i];
            y[i] += t + u;
        }
    }
    for (; r < m; r++) {
        const float *p = rows + r * ld;
        const float wr = w[r];
        for (size_t i = 0; i < n; i++)
            y[i] += wr * p[i];
    }
}

/* Several query rows: one at a time through the single-row kernels. */
static void mha_f32_dot_rows_nx__scalar(const float *x, size_t ldx, size_t nx, const float *rows,
                                     size_t ld, size_t m, size_t n, float *out, size_t ldo)
{
    mha_dot_rows_nx_by_row(x, ldx, nx, rows, ld, m, n, out, ldo, mha_f32_dot_rows_4__scalar);
}

static void mha_f32_axpy_rows_nx__scalar(const float *w, size_t ldw, size_t nx, const float *rows,
                                      size_t ld, size_t m, size_t n, float *y, size_t ldy)
{
    mha_axpy_rows_nx_by_row(w, ldw, nx, rows, ld, m, n, y, ldy, mha_f32_axpy_rows_4__scalar);
}

const mha_kernels mha_kernels_scalar = {
    .isa = MHA_ISA_SCALAR,
    .name = "scalar",
    .gemm_mr = MR,
    .gemm_nr = NR,
    .f32_exp = mha_f32_exp__scalar,
    .f32_rowmax = mha_f32_rowmax__scalar,
    .f32_exp_sub_sum = mha_f32_exp_sub_sum__scalar,
    .f32_scale = mha_f32_scale__scalar,
    .f32_gemm = mha_f32_gemm_4x8__scalar,
    .f32_pack_b_nk = mha_f32_pack_b_nk_8__scalar,
    .f32_pack_b_kn = mha_f32_pack_b_kn_8__scalar,
    .f32_scale_add = mha_f32_scale_add__scalar,
    .f32_mask_u8 = mha_f32_mask_u8__scalar,
    .f32_dot_rows = mha_f32_dot_rows_4__scalar,
    .f32_axpy_rows = mha_f32_axpy_rows_4__scalar,
    .f32_tanh = mha_f32_tanh__scalar,
    .f32_gemm_pa = mha_f32_gemm_pa_4x8__scalar,
    .f32_pack_a = mha_f32_pack_a_4__scalar,
    .f32_dot_rows_nx = mha_f32_dot_rows_nx__scalar,
    .f32_axpy_rows_nx = mha_f32_axpy_rows_nx__scalar,
};
