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
 * [-104, 0]: 0.889 ulp (tests/test_kernels.c sweep, worst at x = -38.45). */
static inline __m256 exp8(__m256 x)
{
    /* max/min return their second operand when one is NaN: NaN passes through. */
    x = _mm256_max_ps(_mm256_set1_ps(MHA_EXP_LO), x);
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

static void mha_f32_exp__avx2(const float *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, exp8(_mm256_maskload_ps(x + i, m)));
    }
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
        __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
        __m256 e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vs));
        _mm256_storeu_ps(y + i, e0);
        _mm256_storeu_ps(y + i + 8, e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
        _mm256_storeu_ps(y + i, e);
        s0 = _mm256_add_ps(s0, e);
    }
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vs));
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

static void mha_f32_gemm_6x16__avx2(size_t m, size_t n, size_t k, const float *a, size_t lda,
                                    const float *b, float *c, size_t ldc, const float *bias,
                                    int accumulate)
{
    if (m == 0 || n == 0)
        return;
    /* Rows past m read row m-1 (valid memory) and are never stored. */
    const float *a0 = a;
    const float *a1 = a + (1 < m ? 1 : m - 1) * lda;
    const float *a2 = a + (2 < m ? 2 : m - 1) * lda;
    const float *a3 = a + (3 < m ? 3 : m - 1) * lda;
    const float *a4 = a + (4 < m ? 4 : m - 1) * lda;
    const float *a5 = a + (5 < m ? 5 : m - 1) * lda;
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#define STEP(p)                                                                       \
    do {                                                                              \
        __m256 b0 = _mm256_loadu_ps(b + (p) * NR), b1 = _mm256_loadu_ps(b + (p) * NR + 8); \
        __m256 av;                                                                    \
        av = _mm256_broadcast_ss(a0 + (p));                                           \
        c00 = _mm256_fmadd_ps(av, b0, c00), c01 = _mm256_fmadd_ps(av, b1, c01);       \
        av = _mm256_broadcast_ss(a1 + (p));                                           \
        c10 = _mm256_fmadd_ps(av, b0, c10), c11 = _mm256_fmadd_ps(av, b1, c11);       \
        av = _mm256_broadcast_ss(a2 + (p));                                           \
        c20 = _mm256_fmadd_ps(av, b0, c20), c21 = _mm256_fmadd_ps(av, b1, c21);       \
        av = _mm256_broadcast_ss(a3 + (p));                                           \
        c30 = _mm256_fmadd_ps(av, b0, c30), c31 = _mm256_fmadd_ps(av, b1, c31);       \
        av = _mm256_broadcast_ss(a4 + (p));                                           \
        c40 = _mm256_fmadd_ps(av, b0, c40), c41 = _mm256_fmadd_ps(av, b1, c41);       \
        av = _mm256_broadcast_ss(a5 + (p));                                           \
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
};
