/*
 * AArch64 Advanced SIMD (NEON) kernels, 128-bit. GEMM tile 8x8: 16 accumulators,
 * 8 registers holding 4 k-steps of A (one per row, used lane by lane) and 2 for
 * the B row: 26 of the 32 vector registers.
 */
#if !defined(__aarch64__) || !defined(__ARM_NEON)
#error "simd/arm/neon.c must be compiled for aarch64 with Advanced SIMD"
#endif

#include <arm_neon.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "kernels.h"

#define MR 8
#define NR 8

/* exp of 4 lanes, the algorithm of common.h. Measured max error over a strided
 * sample of [-104, 0] under qemu: 1 ulp (tests/test_kernels.c). x is clamped below
 * at lo: MHA_EXP_LO, or MHA_EXP_FLUSH for the softmax. */
static inline float32x4_t exp4_from(float32x4_t x, float lo)
{
    /* FMAX/FMIN return NaN when an operand is NaN: NaN passes through. */
    x = vmaxq_f32(x, vdupq_n_f32(lo));
    x = vminq_f32(x, vdupq_n_f32(MHA_EXP_HI));
    float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(MHA_EXP_LOG2E)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(MHA_EXP_C1));
    r = vfmsq_f32(r, n, vdupq_n_f32(MHA_EXP_C2));
    float32x4_t p = vdupq_n_f32(MHA_EXP_P0);
    p = vfmaq_f32(vdupq_n_f32(MHA_EXP_P1), p, r);
    p = vfmaq_f32(vdupq_n_f32(MHA_EXP_P2), p, r);
    p = vfmaq_f32(vdupq_n_f32(MHA_EXP_P3), p, r);
    p = vfmaq_f32(vdupq_n_f32(MHA_EXP_P4), p, r);
    p = vfmaq_f32(vdupq_n_f32(MHA_EXP_P5), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    int32x4_t ni = vcvtq_s32_f32(n);
    int32x4_t n1 = vshrq_n_s32(ni, 1);
    int32x4_t n2 = vsubq_s32(ni, n1);
    const int32x4_t bias = vdupq_n_s32(127);
    float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, bias), 23));
    float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, bias), 23));
    return vmulq_f32(vmulq_f32(p, s1), s2);
}

static inline float32x4_t exp4(float32x4_t x)
{
    return exp4_from(x, MHA_EXP_LO);
}

/* exp4 with the softmax's flush of common.h: results below 2^-126 are +0 (the
 * lanes clamped to MHA_EXP_FLUSH are zeroed; NaN fails the less-than and stays). */
static inline float32x4_t exp4_flush(float32x4_t d)
{
    const uint32x4_t flush = vcltq_f32(d, vdupq_n_f32(MHA_EXP_FLUSH));
    const float32x4_t e = exp4_from(d, MHA_EXP_FLUSH);
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(e), flush));
}

/* Tails go through a 4-float stack buffer. */
static inline float32x4_t load_tail(const float *x, size_t n, float fill)
{
    float t[4] = {fill, fill, fill, fill};
    memcpy(t, x, n * sizeof(float));
    return vld1q_f32(t);
}

static inline void store_tail(float *y, size_t n, float32x4_t v)
{
    float t[4];
    vst1q_f32(t, v);
    memcpy(y, t, n * sizeof(float));
}

/* y[i] = f(x[i]) 4 lanes at a time, the tail through the stack buffer (zeros in
 * the unused lanes). Called with a constant f, which the compiler inlines. */
static inline void map4(const float *x, float *y, size_t n, float32x4_t (*f)(float32x4_t))
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, f(vld1q_f32(x + i)));
    if (i < n)
        store_tail(y + i, n - i, f(load_tail(x + i, n - i, 0.0f)));
}

static void mha_f32_exp__neon(const float *x, float *y, size_t n)
{
    map4(x, y, n, exp4);
}

/* tanh of 4 lanes, the algorithm of common.h (both branches, blended). */
static inline float32x4_t tanh4(float32x4_t x)
{
    const float32x4_t a = vabsq_f32(x);
    /* FMAX/FMIN return NaN when an operand is NaN: NaN reaches exp4. */
    const float32x4_t xs = vmaxq_f32(a, vdupq_n_f32(MHA_TANH_SMALL));
    const float32x4_t z = vmulq_f32(xs, xs);
    float32x4_t q = vdupq_n_f32(MHA_TANH_Q0);
    q = vfmaq_f32(vdupq_n_f32(MHA_TANH_Q1), q, z);
    q = vfmaq_f32(vdupq_n_f32(MHA_TANH_Q2), q, z);
    q = vfmaq_f32(vdupq_n_f32(MHA_TANH_Q3), q, z);
    q = vfmaq_f32(vdupq_n_f32(MHA_TANH_Q4), q, z);
    const float32x4_t poly = vfmaq_f32(xs, vmulq_f32(xs, z), q);
    float32x4_t xe = vmaxq_f32(a, vdupq_n_f32(MHA_TANH_POLY));
    xe = vminq_f32(xe, vdupq_n_f32(MHA_TANH_SAT));
    const float32x4_t one = vdupq_n_f32(1.0f);
    const float32x4_t e = exp4(vaddq_f32(xe, xe));
    const float32x4_t big = vsubq_f32(one, vdivq_f32(vdupq_n_f32(2.0f), vaddq_f32(e, one)));
    const uint32x4_t in_poly = vcltq_f32(a, vdupq_n_f32(MHA_TANH_POLY));
    const uint32x4_t tiny = vcltq_f32(a, vdupq_n_f32(MHA_TANH_SMALL));
    float32x4_t y = vbslq_f32(in_poly, poly, big);
    y = vbslq_f32(tiny, a, y);
    /* The sign bit from x, the rest from y. */
    return vbslq_f32(vdupq_n_u32(0x80000000u), x, y);
}

static void mha_f32_tanh__neon(const float *x, float *y, size_t n)
{
    map4(x, y, n, tanh4);
}

/* FMAX and FMAXV return NaN when any operand is NaN: NaN propagates by itself. */
static float mha_f32_rowmax__neon(const float *x, size_t n)
{
    float32x4_t m0 = vdupq_n_f32(-INFINITY), m1 = m0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        m0 = vmaxq_f32(m0, vld1q_f32(x + i));
        m1 = vmaxq_f32(m1, vld1q_f32(x + i + 4));
    }
    for (; i + 4 <= n; i += 4)
        m0 = vmaxq_f32(m0, vld1q_f32(x + i));
    if (i < n)
        m1 = vmaxq_f32(m1, load_tail(x + i, n - i, -INFINITY));
    return vmaxvq_f32(vmaxq_f32(m0, m1));
}

static float mha_f32_exp_sub_sum__neon(const float *x, float sub, float *y, size_t n)
{
    const float32x4_t vs = vdupq_n_f32(sub);
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t e0 = exp4_flush(vsubq_f32(vld1q_f32(x + i), vs));
        float32x4_t e1 = exp4_flush(vsubq_f32(vld1q_f32(x + i + 4), vs));
        vst1q_f32(y + i, e0);
        vst1q_f32(y + i + 4, e1);
        s0 = vaddq_f32(s0, e0);
        s1 = vaddq_f32(s1, e1);
    }
    for (; i + 4 <= n; i += 4) {
        float32x4_t e = exp4_flush(vsubq_f32(vld1q_f32(x + i), vs));
        vst1q_f32(y + i, e);
        s0 = vaddq_f32(s0, e);
    }
    if (i < n) {
        /* Pad with -inf: exp(-inf - sub) = 0 adds nothing (sub is finite). */
        float32x4_t e = exp4_flush(vsubq_f32(load_tail(x + i, n - i, -INFINITY), vs));
        store_tail(y + i, n - i, e);
        static const uint32_t lanes[4] = {0, 1, 2, 3};
        uint32x4_t keep = vcltq_u32(vld1q_u32(lanes), vdupq_n_u32((uint32_t)(n - i)));
        s1 = vaddq_f32(s1, vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(e), keep)));
    }
    return vaddvq_f32(vaddq_f32(s0, s1));
}

static void mha_f32_scale__neon(float *x, float s, size_t n)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), s));
    for (; i < n; i++)
        x[i] *= s;
}

static void mha_f32_scale_add__neon(float *x, float s, const float *add, size_t n)
{
    if (!add) {
        mha_f32_scale__neon(x, s, n);
        return;
    }
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t t = vmulq_n_f32(vld1q_f32(x + i), s);
        vst1q_f32(x + i, vaddq_f32(t, vld1q_f32(add + i)));
    }
    for (; i < n; i++) {
        float t = x[i] * s;
        x[i] = t + add[i];
    }
}

static void mha_f32_mask_u8__neon(float *x, const uint8_t *keep, size_t n)
{
    const float32x4_t ninf = vdupq_n_f32(-INFINITY);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x8_t k16 = vmovl_u8(vld1_u8(keep + i));
        uint32x4_t d0 = vceqzq_u32(vmovl_u16(vget_low_u16(k16)));
        uint32x4_t d1 = vceqzq_u32(vmovl_u16(vget_high_u16(k16)));
        vst1q_f32(x + i, vbslq_f32(d0, ninf, vld1q_f32(x + i)));
        vst1q_f32(x + i + 4, vbslq_f32(d1, ninf, vld1q_f32(x + i + 4)));
    }
    for (; i < n; i++)
        x[i] = keep[i] ? x[i] : -INFINITY;
}

/* C tile epilogue of both GEMM entries: acc (+ C) (+ bias) into the m x n corner. */
static inline void store_8x8(float32x4_t acc[MR][2], size_t m, size_t n, float *c, size_t ldc,
                             const float *bias, int accumulate)
{
    float bb[NR] = {0};
    if (bias)
        memcpy(bb, bias, n * sizeof(float));
    float32x4_t bv0 = vld1q_f32(bb), bv1 = vld1q_f32(bb + 4);
    for (size_t r = 0; r < m; r++) {
        float *cr = c + r * ldc;
        float t[NR];
        if (n == NR) {
            if (accumulate) {
                acc[r][0] = vaddq_f32(acc[r][0], vld1q_f32(cr));
                acc[r][1] = vaddq_f32(acc[r][1], vld1q_f32(cr + 4));
            }
        } else if (accumulate) {
            memcpy(t, cr, n * sizeof(float));
            acc[r][0] = vaddq_f32(acc[r][0], vld1q_f32(t));
            acc[r][1] = vaddq_f32(acc[r][1], vld1q_f32(t + 4));
        }
        if (bias) {
            acc[r][0] = vaddq_f32(acc[r][0], bv0);
            acc[r][1] = vaddq_f32(acc[r][1], bv1);
        }
        if (n == NR) {
            vst1q_f32(cr, acc[r][0]);
            vst1q_f32(cr + 4, acc[r][1]);
        } else {
            vst1q_f32(t, acc[r][0]);
            vst1q_f32(t + 4, acc[r][1]);
            memcpy(cr, t, n * sizeof(float));
        }
    }
}

static void mha_f32_gemm_8x8__neon(size_t m, size_t n, size_t k, const float *a, size_t lda,
                                   const float *b, float *c, size_t ldc, const float *bias,
                                   int accumulate)
{
    if (m == 0 || n == 0)
        return;
    /* Rows past m read row m-1 (valid memory) and are never stored. */
    const float *ar[MR];
    for (size_t r = 0; r < MR; r++)
        ar[r] = a + (r < m ? r : m - 1) * lda;
    const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3];
    const float *a4 = ar[4], *a5 = ar[5], *a6 = ar[6], *a7 = ar[7];
    float32x4_t c00 = vdupq_n_f32(0.0f), c01 = c00, c10 = c00, c11 = c00;
    float32x4_t c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    float32x4_t c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    float32x4_t c60 = c00, c61 = c00, c70 = c00, c71 = c00;
#define LANE(l)                                                                          \
    do {                                                                                 \
        float32x4_t b0 = vld1q_f32(b + (p + (l)) * NR), b1 = vld1q_f32(b + (p + (l)) * NR + 4); \
        c00 = vfmaq_laneq_f32(c00, b0, x0, l), c01 = vfmaq_laneq_f32(c01, b1, x0, l);   \
        c10 = vfmaq_laneq_f32(c10, b0, x1, l), c11 = vfmaq_laneq_f32(c11, b1, x1, l);   \
        c20 = vfmaq_laneq_f32(c20, b0, x2, l), c21 = vfmaq_laneq_f32(c21, b1, x2, l);   \
        c30 = vfmaq_laneq_f32(c30, b0, x3, l), c31 = vfmaq_laneq_f32(c31, b1, x3, l);   \
        c40 = vfmaq_laneq_f32(c40, b0, x4, l), c41 = vfmaq_laneq_f32(c41, b1, x4, l);   \
        c50 = vfmaq_laneq_f32(c50, b0, x5, l), c51 = vfmaq_laneq_f32(c51, b1, x5, l);   \
        c60 = vfmaq_laneq_f32(c60, b0, x6, l), c61 = vfmaq_laneq_f32(c61, b1, x6, l);   \
        c70 = vfmaq_laneq_f32(c70, b0, x7, l), c71 = vfmaq_laneq_f32(c71, b1, x7, l);   \
    } while (0)
    size_t p = 0;
    for (; p + 4 <= k; p += 4) {
        float32x4_t x0 = vld1q_f32(a0 + p), x1 = vld1q_f32(a1 + p);
        float32x4_t x2 = vld1q_f32(a2 + p), x3 = vld1q_f32(a3 + p);
        float32x4_t x4 = vld1q_f32(a4 + p), x5 = vld1q_f32(a5 + p);
        float32x4_t x6 = vld1q_f32(a6 + p), x7 = vld1q_f32(a7 + p);
        LANE(0);
        LANE(1);
        LANE(2);
        LANE(3);
    }
    for (; p < k; p++) {
        /* One k-step: A values in lane 0. */
        float32x4_t x0 = vld1q_dup_f32(a0 + p), x1 = vld1q_dup_f32(a1 + p);
        float32x4_t x2 = vld1q_dup_f32(a2 + p), x3 = vld1q_dup_f32(a3 + p);
        float32x4_t x4 = vld1q_dup_f32(a4 + p), x5 = vld1q_dup_f32(a5 + p);
        float32x4_t x6 = vld1q_dup_f32(a6 + p), x7 = vld1q_dup_f32(a7 + p);
        LANE(0);
    }
#undef LANE

    float32x4_t acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                              {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
    store_8x8(acc, m, n, c, ldc, bias, accumulate);
}

/* The packed micro-panel holds the 8 rows of a k-step side by side: two loads
 * give them, and each row's FMA takes its lane. */
static void mha_f32_gemm_pa_8x8__neon(size_t m, size_t n, size_t k, const float *a,
                                      const float *b, float *c, size_t ldc, const float *bias,
                                      int accumulate)
{
    if (m == 0 || n == 0)
        return;
    float32x4_t c00 = vdupq_n_f32(0.0f), c01 = c00, c10 = c00, c11 = c00;
    float32x4_t c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    float32x4_t c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    float32x4_t c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    for (size_t p = 0; p < k; p++) {
        float32x4_t b0 = vld1q_f32(b + p * NR), b1 = vld1q_f32(b + p * NR + 4);
        float32x4_t xa = vld1q_f32(a + p * MR), xb = vld1q_f32(a + p * MR + 4);
        c00 = vfmaq_laneq_f32(c00, b0, xa, 0), c01 = vfmaq_laneq_f32(c01, b1, xa, 0);
        c10 = vfmaq_laneq_f32(c10, b0, xa, 1), c11 = vfmaq_laneq_f32(c11, b1, xa, 1);
        c20 = vfmaq_laneq_f32(c20, b0, xa, 2), c21 = vfmaq_laneq_f32(c21, b1, xa, 2);
        c30 = vfmaq_laneq_f32(c30, b0, xa, 3), c31 = vfmaq_laneq_f32(c31, b1, xa, 3);
        c40 = vfmaq_laneq_f32(c40, b0, xb, 0), c41 = vfmaq_laneq_f32(c41, b1, xb, 0);
        c50 = vfmaq_laneq_f32(c50, b0, xb, 1), c51 = vfmaq_laneq_f32(c51, b1, xb, 1);
        c60 = vfmaq_laneq_f32(c60, b0, xb, 2), c61 = vfmaq_laneq_f32(c61, b1, xb, 2);
        c70 = vfmaq_laneq_f32(c70, b0, xb, 3), c71 = vfmaq_laneq_f32(c71, b1, xb, 3);
    }
    float32x4_t acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                              {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
    store_8x8(acc, m, n, c, ldc, bias, accumulate);
}

static void mha_f32_pack_a_8__neon(size_t m, size_t k, const float *src, size_t ld, float *dst)
{
    mha_pack_a_generic(MR, m, k, src, ld, dst);
}

static void mha_f32_pack_b_nk_8__neon(size_t n, size_t k, const float *src, size_t ld,
                                      float *dst)
{
    mha_pack_b_nk_generic(NR, n, k, src, ld, dst);
}

static void mha_f32_pack_b_kn_8__neon(size_t n, size_t k, const float *src, size_t ld,
                                      float *dst)
{
    mha_pack_b_kn_generic(NR, n, k, src, ld, dst);
}

/* ------------------------------------------------------------ decoding */

/* The 4 sums of a0..a3 as one vector: pairwise adds transpose while they add. */
static inline float32x4_t hsum4x4(float32x4_t a0, float32x4_t a1, float32x4_t a2, float32x4_t a3)
{
    return vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3));
}

/* out[0..cnt) for rows p, p + ld, ..., cnt <= 8; rows past cnt read row cnt-1 (valid
 * memory, in L1) and are not stored. 8 accumulators + x; n % 4 in scalar. */
static inline void dot_rows_8(const float *x, const float *rows, size_t ld, size_t cnt,
                              size_t n, float *out)
{
    const float *p[8];
    for (size_t r = 0; r < 8; r++)
        p[r] = rows + (r < cnt ? r : cnt - 1) * ld;
    const float *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
    const float *p4 = p[4], *p5 = p[5], *p6 = p[6], *p7 = p[7];
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    float32x4_t a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t xv = vld1q_f32(x + i);
        a0 = vfmaq_f32(a0, xv, vld1q_f32(p0 + i));
        a1 = vfmaq_f32(a1, xv, vld1q_f32(p1 + i));
        a2 = vfmaq_f32(a2, xv, vld1q_f32(p2 + i));
        a3 = vfmaq_f32(a3, xv, vld1q_f32(p3 + i));
        a4 = vfmaq_f32(a4, xv, vld1q_f32(p4 + i));
        a5 = vfmaq_f32(a5, xv, vld1q_f32(p5 + i));
        a6 = vfmaq_f32(a6, xv, vld1q_f32(p6 + i));
        a7 = vfmaq_f32(a7, xv, vld1q_f32(p7 + i));
    }
    float s[8];
    vst1q_f32(s, hsum4x4(a0, a1, a2, a3));
    vst1q_f32(s + 4, hsum4x4(a4, a5, a6, a7));
    for (; i < n; i++)
        for (size_t r = 0; r < 8; r++)
            s[r] += x[i] * p[r][i];
    memcpy(out, s, cnt * sizeof(float));
}

static inline float dot_row_1(const float *x, const float *p, size_t n)
{
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(p + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(p + i + 4));
    }
    for (; i + 4 <= n; i += 4)
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(p + i));
    float sum = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++)
        sum += x[i] * p[i];
    return sum;
}

/* 8 rows per step, one accumulator each over n, x loaded once per 8 rows;
 * m % 8 >= 4 rows go through the same step with clamped row pointers, fewer one at
 * a time. */
static void mha_f32_dot_rows_8__neon(const float *x, const float *rows, size_t ld, size_t m,
                                     size_t n, float *out)
{
    mha_dot_rows_by_8(x, rows, ld, m, n, out, dot_rows_8, dot_row_1);
}

/* y[0..32) += sum_r w[r] rows[r][0..32): y in 8 q registers, even and odd rows into
 * two sets of accumulators (16 chains: 4 FMA pipes x 4 cycles on big cores). */
static inline void axpy_rows_32(const float *w, const float *rows, size_t ld, size_t m, float *y)
{
    float32x4_t y0 = vld1q_f32(y), y1 = vld1q_f32(y + 4), y2 = vld1q_f32(y + 8);
    float32x4_t y3 = vld1q_f32(y + 12), y4 = vld1q_f32(y + 16), y5 = vld1q_f32(y + 20);
    float32x4_t y6 = vld1q_f32(y + 24), y7 = vld1q_f32(y + 28);
    float32x4_t z0 = vdupq_n_f32(0.0f), z1 = z0, z2 = z0, z3 = z0, z4 = z0, z5 = z0, z6 = z0;
    float32x4_t z7 = z0;
#define ROW32(rr, a0, a1, a2, a3, a4, a5, a6, a7)                                          \
    do {                                                                                   \
        const float *q = rows + (rr) * ld;                                                 \
        const float wr = w[rr];                                                            \
        a0 = vfmaq_n_f32(a0, vld1q_f32(q), wr);                                            \
        a1 = vfmaq_n_f32(a1, vld1q_f32(q + 4), wr);                                        \
        a2 = vfmaq_n_f32(a2, vld1q_f32(q + 8), wr);                                        \
        a3 = vfmaq_n_f32(a3, vld1q_f32(q + 12), wr);                                       \
        a4 = vfmaq_n_f32(a4, vld1q_f32(q + 16), wr);                                       \
        a5 = vfmaq_n_f32(a5, vld1q_f32(q + 20), wr);                                       \
        a6 = vfmaq_n_f32(a6, vld1q_f32(q + 24), wr);                                       \
        a7 = vfmaq_n_f32(a7, vld1q_f32(q + 28), wr);                                       \
    } while (0)
    size_t r = 0;
    for (; r + 2 <= m; r += 2) {
        ROW32(r, y0, y1, y2, y3, y4, y5, y6, y7);
        ROW32(r + 1, z0, z1, z2, z3, z4, z5, z6, z7);
    }
    if (r < m)
        ROW32(r, y0, y1, y2, y3, y4, y5, y6, y7);
#undef ROW32
    vst1q_f32(y, vaddq_f32(y0, z0));
    vst1q_f32(y + 4, vaddq_f32(y1, z1));
    vst1q_f32(y + 8, vaddq_f32(y2, z2));
    vst1q_f32(y + 12, vaddq_f32(y3, z3));
    vst1q_f32(y + 16, vaddq_f32(y4, z4));
    vst1q_f32(y + 20, vaddq_f32(y5, z5));
    vst1q_f32(y + 24, vaddq_f32(y6, z6));
    vst1q_f32(y + 28, vaddq_f32(y7, z7));
}

/* y[0..4): 1 q register, rows dealt to 4 accumulators. */
static inline void axpy_rows_4(const float *w, const float *rows, size_t ld, size_t m, float *y)
{
    float32x4_t a = vld1q_f32(y), b = vdupq_n_f32(0.0f), c = b, d = b;
    size_t r = 0;
    for (; r + 4 <= m; r += 4) {
        const float *q = rows + r * ld;
        a = vfmaq_n_f32(a, vld1q_f32(q), w[r]);
        b = vfmaq_n_f32(b, vld1q_f32(q + ld), w[r + 1]);
        c = vfmaq_n_f32(c, vld1q_f32(q + 2 * ld), w[r + 2]);
        d = vfmaq_n_f32(d, vld1q_f32(q + 3 * ld), w[r + 3]);
    }
    for (; r < m; r++)
        a = vfmaq_n_f32(a, vld1q_f32(rows + r * ld), w[r]);
    vst1q_f32(y, vaddq_f32(vaddq_f32(a, b), vaddq_f32(c, d)));
}

/* y is held in registers over all m rows: 32 floats per pass while they last, then 4,
 * then the last n % 4 columns in scalar. */
static inline void axpy_rows_cols(const float *w, const float *rows, size_t ld, size_t m,
                                  size_t n, float *y)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        axpy_rows_32(w, rows + i, ld, m, y + i);
    for (; i + 4 <= n; i += 4)
        axpy_rows_4(w, rows + i, ld, m, y + i);
    for (; i < n; i++) {
        float acc = y[i];
        for (size_t r = 0; r < m; r++)
            acc += w[r] * rows[r * ld + i];
        y[i] = acc;
    }
}

/* n > 32 takes several passes over the rows: they go in blocks of ~16 KiB, so that
 * the passes after the first read L1. */
static void mha_f32_axpy_rows_2__neon(const float *w, const float *rows, size_t ld, size_t m,
                                      size_t n, float *y)
{
    mha_axpy_rows_blocked(w, rows, ld, m, n, y, 32, axpy_rows_cols);
}

/* Several query rows: one at a time through the single-row kernels. */
static void mha_f32_dot_rows_nx__neon(const float *x, size_t ldx, size_t nx, const float *rows,
                                     size_t ld, size_t m, size_t n, float *out, size_t ldo)
{
    mha_dot_rows_nx_by_row(x, ldx, nx, rows, ld, m, n, out, ldo, mha_f32_dot_rows_8__neon);
}

static void mha_f32_axpy_rows_nx__neon(const float *w, size_t ldw, size_t nx, const float *rows,
                                      size_t ld, size_t m, size_t n, float *y, size_t ldy)
{
    mha_axpy_rows_nx_by_row(w, ldw, nx, rows, ld, m, n, y, ldy, mha_f32_axpy_rows_2__neon);
}

const mha_kernels mha_kernels_neon = {
    .isa = MHA_ISA_NEON,
    .name = "neon",
    .gemm_mr = MR,
    .gemm_nr = NR,
    .f32_exp = mha_f32_exp__neon,
    .f32_rowmax = mha_f32_rowmax__neon,
    .f32_exp_sub_sum = mha_f32_exp_sub_sum__neon,
    .f32_scale = mha_f32_scale__neon,
    .f32_gemm = mha_f32_gemm_8x8__neon,
    .f32_pack_b_nk = mha_f32_pack_b_nk_8__neon,
    .f32_pack_b_kn = mha_f32_pack_b_kn_8__neon,
    .f32_scale_add = mha_f32_scale_add__neon,
    .f32_mask_u8 = mha_f32_mask_u8__neon,
    .f32_dot_rows = mha_f32_dot_rows_8__neon,
    .f32_axpy_rows = mha_f32_axpy_rows_2__neon,
    .f32_tanh = mha_f32_tanh__neon,
    .f32_gemm_pa = mha_f32_gemm_pa_8x8__neon,
    .f32_pack_a = mha_f32_pack_a_8__neon,
    .f32_dot_rows_nx = mha_f32_dot_rows_nx__neon,
    .f32_axpy_rows_nx = mha_f32_axpy_rows_nx__neon,
};
