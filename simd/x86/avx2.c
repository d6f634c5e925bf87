/*
 * AVX2 + FMA kernels (256-bit). GEMM tile 6x16: 12 ymm accumulators, 2 for the B
 * row and 1 broadcast of A, out of 16 registers.
 */
#if !defined(__AVX2__) || !defined(__FMA__)
#error "simd/x86/avx2.c must be compiled with -mavx2 -mfma"
#endif

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "common.h"
#include "kernels.h"

#define MR 6
#define NR 16

/* Lane mask of the first n (< 8) lanes, for maskload/maskstore. */
static inline __m256i tail_mask(size_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

/* exp of 8 lanes, the algorithm of common.h. Measured max error over every float in
 * [-104, 0]: 0.889 ulp (tests/test_kernels.c sweep, worst at x = -38.45). x is
 * clamped below at lo: MHA_EXP_LO, or MHA_EXP_FLUSH for the softmax. */
static inline __m256 exp8_from(__m256 x, float lo)
{
    /* max/min return their second operand when one is NaN: NaN passes through. */
    x = _mm256_max_ps(_mm256_set1_ps(lo), x);
    x = _mm256_min_ps(_mm256_set1_ps(MHA_EXP_HI), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(MHA_EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(MHA_EXP_C1), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(MHA_EXP_C2), r);
    __m256 p = _mm256_set1_ps(MHA_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MHA_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MHA_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MHA_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MHA_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MHA_EXP_P5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

static inline __m256 exp8(__m256 x)
{
    return exp8_from(x, MHA_EXP_LO);
}

/* exp8 with the softmax's flush of common.h: results below 2^-126 are +0 (the
 * lanes clamped to MHA_EXP_FLUSH are zeroed; NaN is not-less-than and stays). */
static inline __m256 exp8_flush(__m256 d)
{
    const __m256 keep = _mm256_cmp_ps(d, _mm256_set1_ps(MHA_EXP_FLUSH), _CMP_NLT_UQ);
    return _mm256_and_ps(keep, exp8_from(d, MHA_EXP_FLUSH));
}

static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* y[i] = f(x[i]) 8 lanes at a time, the tail masked (zeros in the unused lanes).
 * Called with a constant f, which the compiler inlines. */
static inline void map8(const float *x, float *y, size_t n, __m256 (*f)(__m256))
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, f(_mm256_maskload_ps(x + i, m)));
    }
}

static void mha_f32_exp__avx2(const float *x, float *y, size_t n)
{
    map8(x, y, n, exp8);
}

/* tanh of 8 lanes, the algorithm of common.h (both branches, blended). */
static inline __m256 tanh8(__m256 x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 a = _mm256_andnot_ps(sign, x);
    const __m256 xs = _mm256_max_ps(a, _mm256_set1_ps(MHA_TANH_SMALL));
    const __m256 z = _mm256_mul_ps(xs, xs);
    __m256 q = _mm256_set1_ps(MHA_TANH_Q0);
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(MHA_TANH_Q1));
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(MHA_TANH_Q2));
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(MHA_TANH_Q3));
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(MHA_TANH_Q4));
    const __m256 poly = _mm256_fmadd_ps(_mm256_mul_ps(xs, z), q, xs);
    /* max/min return their second operand when one is NaN: NaN reaches exp8. */
    __m256 xe = _mm256_max_ps(_mm256_set1_ps(MHA_TANH_POLY), a);
    xe = _mm256_min_ps(_mm256_set1_ps(MHA_TANH_SAT), xe);
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 e = exp8(_mm256_add_ps(xe, xe));
    const __m256 t = _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one));
    const __m256 big = _mm256_sub_ps(one, t);
    const __m256 in_poly = _mm256_cmp_ps(a, _mm256_set1_ps(MHA_TANH_POLY), _CMP_LT_OQ);
    const __m256 tiny = _mm256_cmp_ps(a, _mm256_set1_ps(MHA_TANH_SMALL), _CMP_LT_OQ);
    __m256 y = _mm256_blendv_ps(big, poly, in_poly);
    y = _mm256_blendv_ps(y, a, tiny);
    return _mm256_or_ps(y, _mm256_and_ps(x, sign));
}

static void mha_f32_tanh__avx2(const float *x, float *y, size_t n)
{
    map8(x, y, n, tanh8);
}

static float mha_f32_rowmax__avx2(const float *x, size_t n)
{
    /* maxps drops NaN depending on operand order: NaN lanes are tracked apart. */
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 m0 = ninf, m1 = ninf, nan = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        m0 = _mm256_max_ps(m0, v0);
        m1 = _mm256_max_ps(m1, v1);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v0, v1, _CMP_UNORD_Q));
    }
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        m0 = _mm256_max_ps(m0, v);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 v = _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, m), _mm256_castsi256_ps(m));
        m1 = _mm256_max_ps(m1, v);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(nan))
        return NAN;
    return hmax8(_mm256_max_ps(m0, m1));
}

static float mha_f32_exp_sub_sum__avx2(const float *x, float sub, float *y, size_t n)
{
    const __m256 vs = _mm256_set1_ps(sub);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 e0 = exp8_flush(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
        __m256 e1 = exp8_flush(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vs));
        _mm256_storeu_ps(y + i, e0);
        _mm256_storeu_ps(y + i + 8, e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8_flush(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
        _mm256_storeu_ps(y + i, e);
        s0 = _mm256_add_ps(s0, e);
    }
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 e = exp8_flush(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vs));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
        _mm256_maskstore_ps(y + i, m, e);
        s1 = _mm256_add_ps(s1, e);
    }
    return hsum8(_mm256_add_ps(s0, s1));
}

static void mha_f32_scale__avx2(float *x, float s, size_t n)
{
    const __m256 vs = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(x + i, m, _mm256_mul_ps(_mm256_maskload_ps(x + i, m), vs));
    }
}

static void mha_f32_scale_add__avx2(float *x, float s, const float *add, size_t n)
{
    if (!add) {
        mha_f32_scale__avx2(x, s, n);
        return;
    }
    const __m256 vs = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 t = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        _mm256_storeu_ps(x + i, _mm256_add_ps(t, _mm256_loadu_ps(add + i)));
    }
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 t = _mm256_mul_ps(_mm256_maskload_ps(x + i, m), vs);
        _mm256_maskstore_ps(x + i, m, _mm256_add_ps(t, _mm256_maskload_ps(add + i, m)));
    }
}

static void mha_f32_mask_u8__avx2(float *x, const uint8_t *keep, size_t n)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i k8 = _mm_loadl_epi64((const __m128i *)(const void *)(keep + i));
        __m256i k = _mm256_cvtepu8_epi32(k8);
        __m256 drop = _mm256_castsi256_ps(_mm256_cmpeq_epi32(k, _mm256_setzero_si256()));
        _mm256_storeu_ps(x + i, _mm256_blendv_ps(_mm256_loadu_ps(x + i), ninf, drop));
    }
    for (; i < n; i++)
        x[i] = keep[i] ? x[i] : -INFINITY;
}

/* Floats of B the GEMM tile prefetches ahead of its reads (16 k-steps, one line
 * each): the projection driver streams each W slice from L2 once per call (see
 * avx512.c); prefetches past the panel's end do not fault. */
#define B_AHEAD (16 * NR)

/* The 6x16 tile on A[r][p] = a[r*rs + p*cs]: unpacked (rs = lda, cs = 1) or one
 * packed micro-panel (rs = 1, cs = MR). Rows r >= avail read row avail-1 (valid
 * memory); rows past m are never stored. Inlined into both entries so that the
 * packed one gets constant offsets from one pointer. */
static inline __attribute__((always_inline)) void
gemm_6x16(size_t m, size_t n, size_t k, const float *a, size_t rs, size_t cs, size_t avail,
          const float *b, float *c, size_t ldc, const float *bias, int accumulate)
{
    if (m == 0 || n == 0)
        return;
    /* C rows are far apart (and far away when a caller blocks k): start loading
     * them now (for the stores too) so that they are in L1 when the k loop ends. */
    for (size_t r = 0; r < m; r++)
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
    const float *a0 = a;
    const float *a1 = a + (1 < avail ? 1 : avail - 1) * rs;
    const float *a2 = a + (2 < avail ? 2 : avail - 1) * rs;
    const float *a3 = a + (3 < avail ? 3 : avail - 1) * rs;
    const float *a4 = a + (4 < avail ? 4 : avail - 1) * rs;
    const float *a5 = a + (5 < avail ? 5 : avail - 1) * rs;
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#define STEP(p)                                                                       \
    do {                                                                              \
        _mm_prefetch((const char *)(b + (p) * NR + B_AHEAD), _MM_HINT_T0);            \
        __m256 b0 = _mm256_loadu_ps(b + (p) * NR), b1 = _mm256_loadu_ps(b + (p) * NR + 8); \
        __m256 av;                                                                    \
        av = _mm256_broadcast_ss(a0 + (p) * cs);                                      \
        c00 = _mm256_fmadd_ps(av, b0, c00), c01 = _mm256_fmadd_ps(av, b1, c01);       \
        av = _mm256_broadcast_ss(a1 + (p) * cs);                                      \
        c10 = _mm256_fmadd_ps(av, b0, c10), c11 = _mm256_fmadd_ps(av, b1, c11);       \
        av = _mm256_broadcast_ss(a2 + (p) * cs);                                      \
        c20 = _mm256_fmadd_ps(av, b0, c20), c21 = _mm256_fmadd_ps(av, b1, c21);       \
        av = _mm256_broadcast_ss(a3 + (p) * cs);                                      \
        c30 = _mm256_fmadd_ps(av, b0, c30), c31 = _mm256_fmadd_ps(av, b1, c31);       \
        av = _mm256_broadcast_ss(a4 + (p) * cs);                                      \
        c40 = _mm256_fmadd_ps(av, b0, c40), c41 = _mm256_fmadd_ps(av, b1, c41);       \
        av = _mm256_broadcast_ss(a5 + (p) * cs);                                      \
        c50 = _mm256_fmadd_ps(av, b0, c50), c51 = _mm256_fmadd_ps(av, b1, c51);       \
    } while (0)
    /* Unrolling by hand made gcc rotate accumulators and spill row pointers. */
    for (size_t p = 0; p < k; p++)
        STEP(p);
#undef STEP

    __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                         {c30, c31}, {c40, c41}, {c50, c51}};
    __m256i mk0 = tail_mask(n >= 8 ? 8 : n), mk1 = tail_mask(n >= 8 ? n - 8 : 0);
    __m256 bv0 = _mm256_setzero_ps(), bv1 = _mm256_setzero_ps();
    if (bias) {
        bv0 = _mm256_maskload_ps(bias, mk0);
        bv1 = _mm256_maskload_ps(bias + 8, mk1);
    }
    for (size_t r = 0; r < m; r++) {
        float *cr = c + r * ldc;
        __m256 v0 = acc[r][0], v1 = acc[r][1];
        if (n == NR) {
            if (accumulate) {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cr));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cr + 8));
            }
            if (bias) {
                v0 = _mm256_add_ps(v0, bv0);
                v1 = _mm256_add_ps(v1, bv1);
            }
            _mm256_storeu_ps(cr, v0);
            _mm256_storeu_ps(cr + 8, v1);
        } else {
            if (accumulate) {
                v0 = _mm256_add_ps(v0, _mm256_maskload_ps(cr, mk0));
                v1 = _mm256_add_ps(v1, _mm256_maskload_ps(cr + 8, mk1));
            }
            if (bias) {
                v0 = _mm256_add_ps(v0, bv0);
                v1 = _mm256_add_ps(v1, bv1);
            }
            _mm256_maskstore_ps(cr, mk0, v0);
            _mm256_maskstore_ps(cr + 8, mk1, v1);
        }
    }
}

static void mha_f32_gemm_6x16__avx2(size_t m, size_t n, size_t k, const float *a, size_t lda,
                                    const float *b, float *c, size_t ldc, const float *bias,
                                    int accumulate)
{
    gemm_6x16(m, n, k, a, lda, 1, m, b, c, ldc, bias, accumulate);
}

static void mha_f32_gemm_pa_6x16__avx2(size_t m, size_t n, size_t k, const float *a,
                                       const float *b, float *c, size_t ldc, const float *bias,
                                       int accumulate)
{
    gemm_6x16(m, n, k, a, 1, MR, MR, b, c, ldc, bias, accumulate);
}

static void mha_f32_pack_a_6__avx2(size_t m, size_t k, const float *src, size_t ld, float *dst)
{
    mha_pack_a_generic(MR, m, k, src, ld, dst);
}

static void mha_f32_pack_b_nk_16__avx2(size_t n, size_t k, const float *src, size_t ld,
                                       float *dst)
{
    mha_pack_b_nk_generic(NR, n, k, src, ld, dst);
}

static void mha_f32_pack_b_kn_16__avx2(size_t n, size_t k, const float *src, size_t ld,
                                       float *dst)
{
    mha_pack_b_kn_generic(NR, n, k, src, ld, dst);
}

/* ------------------------------------------------------------ decoding */

/* The 8 sums of a0..a7 as 8 floats: hadd transposes while it adds (6 hadds, 2 lane
 * permutes and 1 add for the 8 rows). */
static inline __m256 hsum8x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                             __m256 a6, __m256 a7)
{
    __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
    __m256 t2 = _mm256_hadd_ps(a4, a5), t3 = _mm256_hadd_ps(a6, a7);
    /* u0 = [rows 0..3, low lanes | rows 0..3, high lanes], u1 the same for rows 4..7. */
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* out[0..cnt) for rows p, p + ld, ..., cnt <= 8; rows past cnt read row cnt-1 (valid
 * memory, in L1) and are not stored. 8 accumulators + x: 9 of the 16 ymm. */
static inline void dot_rows_8(const float *x, const float *rows, size_t ld, size_t cnt,
                              size_t n, float *out)
{
    const float *p0 = rows;
    const float *p1 = rows + (1 < cnt ? 1 : cnt - 1) * ld;
    const float *p2 = rows + (2 < cnt ? 2 : cnt - 1) * ld;
    const float *p3 = rows + (3 < cnt ? 3 : cnt - 1) * ld;
    const float *p4 = rows + (4 < cnt ? 4 : cnt - 1) * ld;
    const float *p5 = rows + (5 < cnt ? 5 : cnt - 1) * ld;
    const float *p6 = rows + (6 < cnt ? 6 : cnt - 1) * ld;
    const float *p7 = rows + (7 < cnt ? 7 : cnt - 1) * ld;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps();
    __m256 a3 = _mm256_setzero_ps(), a4 = _mm256_setzero_ps(), a5 = _mm256_setzero_ps();
    __m256 a6 = _mm256_setzero_ps(), a7 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(p0 + i), a0);
        a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(p1 + i), a1);
        a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(p2 + i), a2);
        a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(p3 + i), a3);
        a4 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(p4 + i), a4);
        a5 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(p5 + i), a5);
        a6 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(p6 + i), a6);
        a7 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(p7 + i), a7);
    }
    if (i < n) {
        /* maskload zeroes the lanes it skips (and never faults on them). */
        __m256i k = tail_mask(n - i);
        __m256 xv = _mm256_maskload_ps(x + i, k);
        a0 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(p0 + i, k), a0);
        a1 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(p1 + i, k), a1);
        a2 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(p2 + i, k), a2);
        a3 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(p3 + i, k), a3);
        a4 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(p4 + i, k), a4);
        a5 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(p5 + i, k), a5);
        a6 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(p6 + i, k), a6);
        a7 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(p7 + i, k), a7);
    }
    __m256 s = hsum8x8(a0, a1, a2, a3, a4, a5, a6, a7);
    if (cnt == 8)
        _mm256_storeu_ps(out, s);
    else
        _mm256_maskstore_ps(out, tail_mask(cnt), s);
}

static inline float dot_row_1(const float *x, const float *p, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(p + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(p + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(p + i), a0);
    if (i < n) {
        __m256i k = tail_mask(n - i);
        a1 = _mm256_fmadd_ps(_mm256_maskload_ps(x + i, k), _mm256_maskload_ps(p + i, k), a1);
    }
    return hsum8(_mm256_add_ps(a0, a1));
}

/* 8 rows per step, one ymm accumulator each over n, x loaded once per 8 rows;
 * m % 8 >= 4 rows go through the same step with clamped row pointers, fewer one at
 * a time. */
static void mha_f32_dot_rows_8__avx2(const float *x, const float *rows, size_t ld, size_t m,
                                     size_t n, float *out)
{
    mha_dot_rows_by_8(x, rows, ld, m, n, out, dot_rows_8, dot_row_1);
}

/* y[0..64) += sum_r w[r] rows[r][0..64): y in 8 ymm (8 independent FMA chains). */
static inline void axpy_rows_64(const float *w, const float *rows, size_t ld, size_t m, float *y)
{
    __m256 y0 = _mm256_loadu_ps(y), y1 = _mm256_loadu_ps(y + 8);
    __m256 y2 = _mm256_loadu_ps(y + 16), y3 = _mm256_loadu_ps(y + 24);
    __m256 y4 = _mm256_loadu_ps(y + 32), y5 = _mm256_loadu_ps(y + 40);
    __m256 y6 = _mm256_loadu_ps(y + 48), y7 = _mm256_loadu_ps(y + 56);
#define ROW64(rr)                                                                          \
    do {                                                                                   \
        const float *p = rows + (rr) * ld;                                                 \
        __m256 wv = _mm256_broadcast_ss(w + (rr));                                         \
        y0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p), y0);                                  \
        y1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 8), y1);                              \
        y2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 16), y2);                             \
        y3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 24), y3);                             \
        y4 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 32), y4);                             \
        y5 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 40), y5);                             \
        y6 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 48), y6);                             \
        y7 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 56), y7);                             \
    } while (0)
    size_t r = 0;
    for (; r + 2 <= m; r += 2) {
        ROW64(r);
        ROW64(r + 1);
    }
    if (r < m)
        ROW64(r);
#undef ROW64
    _mm256_storeu_ps(y, y0);
    _mm256_storeu_ps(y + 8, y1);
    _mm256_storeu_ps(y + 16, y2);
    _mm256_storeu_ps(y + 24, y3);
    _mm256_storeu_ps(y + 32, y4);
    _mm256_storeu_ps(y + 40, y5);
    _mm256_storeu_ps(y + 48, y6);
    _mm256_storeu_ps(y + 56, y7);
}

/* y[0..32): 4 ymm, even rows and odd rows into two sets of accumulators (8 chains). */
static inline void axpy_rows_32(const float *w, const float *rows, size_t ld, size_t m, float *y)
{
    __m256 y0 = _mm256_loadu_ps(y), y1 = _mm256_loadu_ps(y + 8);
    __m256 y2 = _mm256_loadu_ps(y + 16), y3 = _mm256_loadu_ps(y + 24);
    __m256 z0 = _mm256_setzero_ps(), z1 = z0, z2 = z0, z3 = z0;
#define ROW32(rr, a0, a1, a2, a3)                                                          \
    do {                                                                                   \
        const float *p = rows + (rr) * ld;                                                 \
        __m256 wv = _mm256_broadcast_ss(w + (rr));                                         \
        a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p), a0);                                  \
        a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 8), a1);                              \
        a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 16), a2);                             \
        a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 24), a3);                             \
    } while (0)
    size_t r = 0;
    for (; r + 2 <= m; r += 2) {
        ROW32(r, y0, y1, y2, y3);
        ROW32(r + 1, z0, z1, z2, z3);
    }
    if (r < m)
        ROW32(r, y0, y1, y2, y3);
#undef ROW32
    _mm256_storeu_ps(y, _mm256_add_ps(y0, z0));
    _mm256_storeu_ps(y + 8, _mm256_add_ps(y1, z1));
    _mm256_storeu_ps(y + 16, _mm256_add_ps(y2, z2));
    _mm256_storeu_ps(y + 24, _mm256_add_ps(y3, z3));
}

/* y[0..nn), nn <= 8 (maskload when nn < 8): 1 ymm, rows dealt to 4 accumulators. */
static inline void axpy_rows_8(const float *w, const float *rows, size_t ld, size_t m,
                               size_t nn, float *y)
{
    const __m256i k = tail_mask(nn);
    const int full = nn == 8;
    __m256 a = full ? _mm256_loadu_ps(y) : _mm256_maskload_ps(y, k);
    __m256 b = _mm256_setzero_ps(), c = b, d = b;
#define LOAD8(p) (full ? _mm256_loadu_ps(p) : _mm256_maskload_ps((p), k))
    size_t r = 0;
    for (; r + 4 <= m; r += 4) {
        const float *p = rows + r * ld;
        a = _mm256_fmadd_ps(_mm256_broadcast_ss(w + r), LOAD8(p), a);
        b = _mm256_fmadd_ps(_mm256_broadcast_ss(w + r + 1), LOAD8(p + ld), b);
        c = _mm256_fmadd_ps(_mm256_broadcast_ss(w + r + 2), LOAD8(p + 2 * ld), c);
        d = _mm256_fmadd_ps(_mm256_broadcast_ss(w + r + 3), LOAD8(p + 3 * ld), d);
    }
    for (; r < m; r++)
        a = _mm256_fmadd_ps(_mm256_broadcast_ss(w + r), LOAD8(rows + r * ld), a);
#undef LOAD8
    a = _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d));
    if (full)
        _mm256_storeu_ps(y, a);
    else
        _mm256_maskstore_ps(y, k, a);
}

/* y[0..n) += sum_r w[r] rows[r][0..n), y held in registers over all m rows: 64 floats
 * per pass while they last, then 32, then 8 (unmasked), then a masked tail. */
static inline void axpy_rows_cols(const float *w, const float *rows, size_t ld, size_t m,
                                  size_t n, float *y)
{
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        axpy_rows_64(w, rows + i, ld, m, y + i);
    if (i + 32 <= n) {
        axpy_rows_32(w, rows + i, ld, m, y + i);
        i += 32;
    }
    for (; i < n; i += 8)
        axpy_rows_8(w, rows + i, ld, m, n - i < 8 ? n - i : 8, y + i);
}

/* n > 64 takes several passes over the rows: they go in blocks of ~16 KiB, so that
 * the passes after the first read L1 (1.5-2x at n = 80..128 with K/V in L2/L3). */
static void mha_f32_axpy_rows_2__avx2(const float *w, const float *rows, size_t ld, size_t m,
                                      size_t n, float *y)
{
    mha_axpy_rows_blocked(w, rows, ld, m, n, y, 64, axpy_rows_cols);
}

/* Several query rows: one at a time through the single-row kernels. */
static void mha_f32_dot_rows_nx__avx2(const float *x, size_t ldx, size_t nx, const float *rows,
                                     size_t ld, size_t m, size_t n, float *out, size_t ldo)
{
    mha_dot_rows_nx_by_row(x, ldx, nx, rows, ld, m, n, out, ldo, mha_f32_dot_rows_8__avx2);
}

static void mha_f32_axpy_rows_nx__avx2(const float *w, size_t ldw, size_t nx, const float *rows,
                                      size_t ld, size_t m, size_t n, float *y, size_t ldy)
{
    mha_axpy_rows_nx_by_row(w, ldw, nx, rows, ld, m, n, y, ldy, mha_f32_axpy_rows_2__avx2);
}

const mha_kernels mha_kernels_avx2 = {
    .isa = MHA_ISA_AVX2,
    .name = "avx2",
    .gemm_mr = MR,
    .gemm_nr = NR,
    .f32_exp = mha_f32_exp__avx2,
    .f32_rowmax = mha_f32_rowmax__avx2,
    .f32_exp_sub_sum = mha_f32_exp_sub_sum__avx2,
    .f32_scale = mha_f32_scale__avx2,
    .f32_gemm = mha_f32_gemm_6x16__avx2,
    .f32_pack_b_nk = mha_f32_pack_b_nk_16__avx2,
    .f32_pack_b_kn = mha_f32_pack_b_kn_16__avx2,
    .f32_scale_add = mha_f32_scale_add__avx2,
    .f32_mask_u8 = mha_f32_mask_u8__avx2,
    .f32_dot_rows = mha_f32_dot_rows_8__avx2,
    .f32_axpy_rows = mha_f32_axpy_rows_2__avx2,
    .f32_tanh = mha_f32_tanh__avx2,
    .f32_gemm_pa = mha_f32_gemm_pa_6x16__avx2,
    .f32_pack_a = mha_f32_pack_a_6__avx2,
    .f32_dot_rows_nx = mha_f32_dot_rows_nx__avx2,
    .f32_axpy_rows_nx = mha_f32_axpy_rows_nx__avx2,
};
