/*
 * AVX-512 F/BW/VL/DQ kernels (512-bit, mask registers for every tail). GEMM tile
 * 8x32: 16 zmm accumulators (enough to cover 2 FMA pipes x 4 cycles of latency
 * twice over), 2 for the B row and 1 broadcast of A, out of 32 registers.
 */
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512DQ__) || !defined(__FMA__)
#error "simd/x86/avx512.c must be compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma"
#endif

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "common.h"
#include "kernels.h"

#define MR 8
#define NR 32

/* Mask of the first n (<= 16) lanes. */
static inline __mmask16 tail_mask(size_t n)
{
    return (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u);
}

/* exp of 16 lanes, the algorithm of common.h. Measured max error over every float
 * in [-104, 0]: 0.889 ulp (tests/test_kernels.c sweep, worst at x = -38.45). */
static inline __m512 exp16(__m512 x)
{
    /* max/min return their second operand when one is NaN: NaN passes through. */
    x = _mm512_max_ps(_mm512_set1_ps(MHA_EXP_LO), x);
    x = _mm512_min_ps(_mm512_set1_ps(MHA_EXP_HI), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(MHA_EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(MHA_EXP_C1), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(MHA_EXP_C2), r);
    __m512 p = _mm512_set1_ps(MHA_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MHA_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MHA_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MHA_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MHA_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MHA_EXP_P5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    /* p * 2^n in one rounding: vscalefps handles overflow to inf and gradual
     * underflow itself, so the two-multiply split of common.h is not needed. */
    return _mm512_scalef_ps(p, n);
}

static void mha_f32_exp__avx512(const float *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

static float mha_f32_rowmax__avx512(const float *x, size_t n)
{
    /* maxps drops NaN depending on operand order: NaN lanes are tracked apart. */
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 m0 = ninf, m1 = ninf;
    __mmask16 nan = 0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        m0 = _mm512_max_ps(m0, v0);
        m1 = _mm512_max_ps(m1, v1);
        nan |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q);
    }
    for (; i < n; i += 16) {
        __m512 v = _mm512_mask_loadu_ps(ninf, tail_mask(n - i), x + i);
        m0 = _mm512_max_ps(m0, v);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
    if (nan)
        return NAN;
    return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

static float mha_f32_exp_sub_sum__avx512(const float *x, float sub, float *y, size_t n)
{
    const __m512 vs = _mm512_set1_ps(sub);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 e0 = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vs));
        __m512 e1 = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vs));
        _mm512_storeu_ps(y + i, e0);
        _mm512_storeu_ps(y + i + 16, e1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
        _mm512_mask_storeu_ps(y + i, m, e);
        s1 = _mm512_mask_add_ps(s1, m, s1, e);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void mha_f32_scale__avx512(float *x, float s, size_t n)
{
    const __m512 vs = _mm512_set1_ps(s);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vs));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
    }
}

static void mha_f32_scale_add__avx512(float *x, float s, const float *add, size_t n)
{
    if (!add) {
        mha_f32_scale__avx512(x, s, n);
        return;
    }
    const __m512 vs = _mm512_set1_ps(s);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
        _mm512_mask_storeu_ps(x + i, m, _mm512_add_ps(t, _mm512_maskz_loadu_ps(m, add + i)));
    }
}

static void mha_f32_mask_u8__avx512(float *x, const uint8_t *keep, size_t n)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m128i k8 = _mm_maskz_loadu_epi8(m, keep + i);
        __mmask16 drop = _mm_mask_cmpeq_epi8_mask(m, k8, _mm_setzero_si128());
        _mm512_mask_storeu_ps(x + i, drop, ninf);
    }
}

static void mha_f32_gemm_8x32__avx512(size_t m, size_t n, size_t k, const float *a, size_t lda,
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
    const float *a6 = a + (6 < m ? 6 : m - 1) * lda;
    const float *a7 = a + (7 < m ? 7 : m - 1) * lda;
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
    __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
    __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
    __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
    __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
    __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
    __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps();
    __m512 c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
#define ROW(ap, x0, x1)                                                   \
    do {                                                                  \
        __m512 av = _mm512_set1_ps((ap)[p]);                              \
        x0 = _mm512_fmadd_ps(av, b0, x0), x1 = _mm512_fmadd_ps(av, b1, x1); \
    } while (0)
#define STEP(pp)                                                          \
    do {                                                                  \
        size_t p = (pp);                                                  \
        __m512 b0 = _mm512_loadu_ps(b + p * NR);                          \
        __m512 b1 = _mm512_loadu_ps(b + p * NR + 16);                     \
        ROW(a0, c00, c01);                                                \
        ROW(a1, c10, c11);                                                \
        ROW(a2, c20, c21);                                                \
        ROW(a3, c30, c31);                                                \
        ROW(a4, c40, c41);                                                \
        ROW(a5, c50, c51);                                                \
        ROW(a6, c60, c61);                                                \
        ROW(a7, c70, c71);                                                \
    } while (0)
    /* Unrolling by hand made gcc rotate accumulators and spill row pointers. */
    for (size_t q = 0; q < k; q++)
        STEP(q);
#undef STEP
#undef ROW

    __m512 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                         {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
    __mmask16 mk0 = tail_mask(n), mk1 = tail_mask(n > 16 ? n - 16 : 0);
    __m512 bv0 = _mm512_setzero_ps(), bv1 = _mm512_setzero_ps();
    if (bias) {
        bv0 = _mm512_maskz_loadu_ps(mk0, bias);
        bv1 = _mm512_maskz_loadu_ps(mk1, bias + 16);
    }
    for (size_t r = 0; r < m; r++) {
        float *cr = c + r * ldc;
        __m512 v0 = acc[r][0], v1 = acc[r][1];
        if (accumulate) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(mk0, cr));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(mk1, cr + 16));
        }
        if (bias) {
            v0 = _mm512_add_ps(v0, bv0);
            v1 = _mm512_add_ps(v1, bv1);
        }
        _mm512_mask_storeu_ps(cr, mk0, v0);
        _mm512_mask_storeu_ps(cr + 16, mk1, v1);
    }
}

/* A transpose: the generic loop built with this unit's flags is enough (weights are
 * packed once; a K block costs O(Lk*d) against the O(Lq*Lk*d) of the attention). */
static void mha_f32_pack_b_nk_32__avx512(size_t n, size_t k, const float *src, size_t ld,
                                         float *dst)
{
    mha_pack_b_nk_generic(NR, n, k, src, ld, dst);
}

static void mha_f32_pack_b_kn_32__avx512(size_t n, size_t k, const float *src, size_t ld,
                                         float *dst)
{
    for (size_t j0 = 0; j0 < n; j0 += NR, dst += k * NR) {
        size_t w = n - j0;
        __mmask16 m0 = tail_mask(w), m1 = tail_mask(w > 16 ? w - 16 : 0);
        for (size_t p = 0; p < k; p++) {
            const float *s = src + p * ld + j0;
            _mm512_storeu_ps(dst + p * NR, _mm512_maskz_loadu_ps(m0, s));
            _mm512_storeu_ps(dst + p * NR + 16, _mm512_maskz_loadu_ps(m1, s + 16));
        }
    }
}

const mha_kernels mha_kernels_avx512 = {
    .isa = MHA_ISA_AVX512,
    .name = "avx512",
    .gemm_mr = MR,
    .gemm_nr = NR,
    .f32_exp = mha_f32_exp__avx512,
    .f32_rowmax = mha_f32_rowmax__avx512,
    .f32_exp_sub_sum = mha_f32_exp_sub_sum__avx512,
    .f32_scale = mha_f32_scale__avx512,
    .f32_gemm = mha_f32_gemm_8x32__avx512,
    .f32_pack_b_nk = mha_f32_pack_b_nk_32__avx512,
    .f32_pack_b_kn = mha_f32_pack_b_kn_32__avx512,
    .f32_scale_add = mha_f32_scale_add__avx512,
    .f32_mask_u8 = mha_f32_mask_u8__avx512,
};
