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

/* exp of 16 lanes, the algorithm of common.h, on x already clamped: returns the
 * polynomial p with *n, so that exp(x) = p * 2^n. */
static inline __m512 exp16_poly(__m512 x, __m512 *n)
{
    /* round(x log2e) by adding and removing 1.5 * 2^23 (exact, round to nearest
     * even, as vrndscaleps gives for |x log2e| < 2^22): two single-uop adds on
     * either FMA port instead of vrndscaleps's two uops on port 0, where vscalefps
     * also runs. */
    const __m512 magic = _mm512_set1_ps(0x1.8p23f);
    *n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(MHA_EXP_LOG2E)), magic), magic);
    __m512 r = _mm512_fnmadd_ps(*n, _mm512_set1_ps(MHA_EXP_C1), x);
    r = _mm512_fnmadd_ps(*n, _mm512_set1_ps(MHA_EXP_C2), r);
    __m512 p = _mm512_set1_ps(MHA_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MHA_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MHA_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MHA_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MHA_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MHA_EXP_P5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
}

/* exp of 16 lanes. Measured max error over every float in [-104, 0]: 0.889 ulp
 * (tests/test_kernels.c sweep, worst at x = -38.45). */
static inline __m512 exp16(__m512 x)
{
    /* max/min return their second operand when one is NaN: NaN passes through. */
    x = _mm512_max_ps(_mm512_set1_ps(MHA_EXP_LO), x);
    x = _mm512_min_ps(_mm512_set1_ps(MHA_EXP_HI), x);
    __m512 n, p = exp16_poly(x, &n);
    /* p * 2^n in one rounding: vscalefps handles overflow to inf and gradual
     * underflow itself, so the two-multiply split of common.h is not needed. */
    return _mm512_scalef_ps(p, n);
}

/* exp16 with the softmax's flush of common.h: results below 2^-126 are +0. The
 * lanes below MHA_EXP_FLUSH (-inf included) are zeroed by the final vscalefps's
 * mask, so they need no lower clamp (their garbage never leaves the register and,
 * masked, raises nothing); NaN is not-less-than and stays. The kept lanes get
 * exp16's bits: two instructions fewer per 16 scores than clamp + zeroing. */
static inline __m512 exp16_flush(__m512 d)
{
    const __mmask16 keep = _mm512_cmp_ps_mask(d, _mm512_set1_ps(MHA_EXP_FLUSH), _CMP_NLT_UQ);
    __m512 n, p = exp16_poly(_mm512_min_ps(_mm512_set1_ps(MHA_EXP_HI), d), &n);
    return _mm512_maskz_scalef_ps(keep, p, n);
}

/* y[i] = f(x[i]) 16 lanes at a time, the tail masked (zeros in the unused lanes).
 * Called with a constant f, which the compiler inlines. */
static inline void map16(const float *x, float *y, size_t n, __m512 (*f)(__m512))
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, f(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

static void mha_f32_exp__avx512(const float *x, float *y, size_t n)
{
    map16(x, y, n, exp16);
}

/* tanh of 16 lanes, the algorithm of common.h (both branches, blended by mask). */
static inline __m512 tanh16(__m512 x)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512 a = _mm512_andnot_ps(sign, x);
    const __m512 xs = _mm512_max_ps(a, _mm512_set1_ps(MHA_TANH_SMALL));
    const __m512 z = _mm512_mul_ps(xs, xs);
    __m512 q = _mm512_set1_ps(MHA_TANH_Q0);
    q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(MHA_TANH_Q1));
    q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(MHA_TANH_Q2));
    q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(MHA_TANH_Q3));
    q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(MHA_TANH_Q4));
    const __m512 poly = _mm512_fmadd_ps(_mm512_mul_ps(xs, z), q, xs);
    /* max/min return their second operand when one is NaN: NaN reaches exp16. */
    __m512 xe = _mm512_max_ps(_mm512_set1_ps(MHA_TANH_POLY), a);
    xe = _mm512_min_ps(_mm512_set1_ps(MHA_TANH_SAT), xe);
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 e = exp16(_mm512_add_ps(xe, xe));
    const __m512 t = _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one));
    const __m512 big = _mm512_sub_ps(one, t);
    const __mmask16 in_poly = _mm512_cmp_ps_mask(a, _mm512_set1_ps(MHA_TANH_POLY), _CMP_LT_OQ);
    const __mmask16 tiny = _mm512_cmp_ps_mask(a, _mm512_set1_ps(MHA_TANH_SMALL), _CMP_LT_OQ);
    __m512 y = _mm512_mask_blend_ps(in_poly, big, poly);
    y = _mm512_mask_blend_ps(tiny, y, a);
    return _mm512_or_ps(y, _mm512_and_ps(x, sign));
}

static void mha_f32_tanh__avx512(const float *x, float *y, size_t n)
{
    map16(x, y, n, tanh16);
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
        __m512 e0 = exp16_flush(_mm512_sub_ps(_mm512_loadu_ps(x + i), vs));
        __m512 e1 = exp16_flush(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vs));
        _mm512_storeu_ps(y + i, e0);
        _mm512_storeu_ps(y + i + 16, e1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 e = exp16_flush(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
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

/* Floats of B the GEMM tile prefetches ahead of its reads (16 k-steps, 2 KiB):
 * the projection driver streams each W slice from L2 once per call, faster than
 * the hardware prefetchers bring it (measured +10% at 197x2304x768 and at
 * 2048x3072x1024, 1 thread); prefetches past the panel's end do not fault. */
#define B_AHEAD (16 * NR)

/* The 8x32 tile on A[r][p] = a[r*rs + p*cs]: unpacked (rs = lda, cs = 1) or one
 * packed micro-panel (rs = 1, cs = MR). Rows r >= avail read row avail-1 (valid
 * memory); rows past m are never stored. Inlined into both entries so that the
 * packed one gets constant offsets from one pointer. */
static inline __attribute__((always_inline)) void
gemm_8x32(size_t m, size_t n, size_t k, const float *a, size_t rs, size_t cs, size_t avail,
          const float *b, float *c, size_t ldc, const float *bias, int accumulate)
{
    if (m == 0 || n == 0)
        return;
    /* C rows are far apart (and far away when a caller blocks k): start loading
     * them now (for the stores too) so that they are in L1 when the k loop ends. */
    for (size_t r = 0; r < m; r++) {
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + r * ldc + 16), _MM_HINT_T0);
    }
    const float *a0 = a;
    const float *a1 = a + (1 < avail ? 1 : avail - 1) * rs;
    const float *a2 = a + (2 < avail ? 2 : avail - 1) * rs;
    const float *a3 = a + (3 < avail ? 3 : avail - 1) * rs;
    const float *a4 = a + (4 < avail ? 4 : avail - 1) * rs;
    const float *a5 = a + (5 < avail ? 5 : avail - 1) * rs;
    const float *a6 = a + (6 < avail ? 6 : avail - 1) * rs;
    const float *a7 = a + (7 < avail ? 7 : avail - 1) * rs;
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
        __m512 av = _mm512_set1_ps((ap)[p * cs]);                         \
        x0 = _mm512_fmadd_ps(av, b0, x0), x1 = _mm512_fmadd_ps(av, b1, x1); \
    } while (0)
#define STEP(pp)                                                          \
    do {                                                                  \
        size_t p = (pp);                                                  \
        _mm_prefetch((const char *)(b + p * NR + B_AHEAD), _MM_HINT_T0);      \
        _mm_prefetch((const char *)(b + p * NR + B_AHEAD + 16), _MM_HINT_T0); \
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

static void mha_f32_gemm_8x32__avx512(size_t m, size_t n, size_t k, const float *a, size_t lda,
                                      const float *b, float *c, size_t ldc, const float *bias,
                                      int accumulate)
{
    gemm_8x32(m, n, k, a, lda, 1, m, b, c, ldc, bias, accumulate);
}

static void mha_f32_gemm_pa_8x32__avx512(size_t m, size_t n, size_t k, const float *a,
                                         const float *b, float *c, size_t ldc, const float *bias,
                                         int accumulate)
{
    gemm_8x32(m, n, k, a, 1, MR, MR, b, c, ldc, bias, accumulate);
}

/* A transpose: the generic loop built with this unit's flags is enough (weights are
 * packed once; a K block costs O(Lk*d) against the O(Lq*Lk*d) of the attention). */
/* In-register transpose of a 16 x 16 block: afterwards r[j] holds what was column
 * j (unpack pairs of rows, then 2x2, then 128-bit lanes across 4 and 8 rows). */
static inline void transpose_16x16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 16; i += 8)
        for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
            t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xDD);
        }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD);
    }
}

/* Panels of 32 keys, each half (16 keys) transposed 16 columns at a time in
 * registers: 4x the generic loop's scattered single-float stores. */
static void mha_f32_pack_b_nk_32__avx512(size_t n, size_t k, const float *src, size_t ld,
                                         float *dst)
{
    for (size_t j0 = 0; j0 < n; j0 += NR, dst += k * NR)
        for (size_t jh = 0; jh < NR; jh += 16) {
            size_t rows = n - j0 > jh ? (n - j0 - jh < 16 ? n - j0 - jh : 16) : 0;
            const float *s = src + (j0 + jh) * ld;
            size_t p0 = 0;
            for (; p0 + 16 <= k; p0 += 16) {
                __m512 r[16];
                for (size_t i = 0; i < 16; i++)
                    r[i] = i < rows ? _mm512_loadu_ps(s + i * ld + p0) : _mm512_setzero_ps();
                transpose_16x16(r);
                for (size_t i = 0; i < 16; i++)
                    _mm512_storeu_ps(dst + (p0 + i) * NR + jh, r[i]);
            }
            for (size_t p = p0; p < k; p++)
                for (size_t i = 0; i < 16; i++)
                    dst[p * NR + jh + i] = i < rows ? s[i * ld + p] : 0.0f;
        }
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

/* Micro-panels two at a time: 16 rows x 16 columns transposed in registers give
 * 16 k-steps of 16 rows, whose halves are the k-steps of the two panels. Rows past
 * m load as zeros, which is the padding the contract asks for. */
static void mha_f32_pack_a_8__avx512(size_t m, size_t k, const float *src, size_t ld, float *dst)
{
    for (size_t i0 = 0; i0 < m; i0 += 2 * MR, dst += 2 * k * MR) {
        const size_t h = m - i0 < 2 * MR ? m - i0 : 2 * MR;
        const float *s = src + i0 * ld;
        float *d0 = dst, *d1 = dst + k * MR;
        for (size_t p0 = 0; p0 < k; p0 += 16) {
            const size_t w = k - p0 < 16 ? k - p0 : 16;
            const __mmask16 mk = tail_mask(w);
            __m512 r[16];
            for (size_t i = 0; i < 16; i++)
                r[i] = i < h ? _mm512_maskz_loadu_ps(mk, s + i * ld + p0) : _mm512_setzero_ps();
            transpose_16x16(r);
            for (size_t j = 0; j < w; j++) {
                _mm256_storeu_ps(d0 + (p0 + j) * MR, _mm512_castps512_ps256(r[j]));
                if (h > MR)
                    _mm256_storeu_ps(d1 + (p0 + j) * MR, _mm512_extractf32x8_ps(r[j], 1));
            }
        }
    }
}

/* ------------------------------------------------------------ decoding */

/* Mask of lanes [16j, 16j + 16) of a row of n floats. */
static inline __mmask16 chunk_mask(size_t n, size_t j)
{
    return tail_mask(n > 16 * j ? n - 16 * j : 0);
}

/* The 8 sums of a0..a7 as 8 floats (a transpose-and-add: 15 shuffles and 7 adds for
 * the 8 rows, against 8 x 8 for separate reductions). */
static inline __m256 hsum8x16(__m512 a0, __m512 a1, __m512 a2, __m512 a3, __m512 a4, __m512 a5,
                              __m512 a6, __m512 a7)
{
    /* 256-bit halves: t01 = [a0 lo + a0 hi (8) | a1 lo + a1 hi (8)]. */
    __m512 t01 = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44), _mm512_shuffle_f32x4(a0, a1, 0xee));
    __m512 t23 = _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, 0x44), _mm512_shuffle_f32x4(a2, a3, 0xee));
    __m512 t45 = _mm512_add_ps(_mm512_shuffle_f32x4(a4, a5, 0x44), _mm512_shuffle_f32x4(a4, a5, 0xee));
    __m512 t67 = _mm512_add_ps(_mm512_shuffle_f32x4(a6, a7, 0x44), _mm512_shuffle_f32x4(a6, a7, 0xee));
    /* 128-bit quarters: u0 = [a0 (4) | a1 (4) | a2 (4) | a3 (4)]. */
    __m512 u0 = _mm512_add_ps(_mm512_shuffle_f32x4(t01, t23, 0x88), _mm512_shuffle_f32x4(t01, t23, 0xdd));
    __m512 u1 = _mm512_add_ps(_mm512_shuffle_f32x4(t45, t67, 0x88), _mm512_shuffle_f32x4(t45, t67, 0xdd));
    /* In each quarter q: [u0 q0 + u0 q2, u1 q0 + u1 q2, u0 q1 + u0 q3, u1 q1 + u1 q3]. */
    __m512 v = _mm512_add_ps(_mm512_unpacklo_ps(u0, u1), _mm512_unpackhi_ps(u0, u1));
    /* Lane 4q = sum of row q, lane 4q + 1 = sum of row 4 + q. */
    v = _mm512_add_ps(v, _mm512_permute_ps(v, 0x4e));
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_castps512_ps256(_mm512_permutexvar_ps(idx, v));
}

/* out[0..cnt) for rows p, p + ld, ..., cnt <= 8; rows past cnt read row cnt-1 (valid
 * memory, in L1) and are not stored. */
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
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps();
    __m512 a3 = _mm512_setzero_ps(), a4 = _mm512_setzero_ps(), a5 = _mm512_setzero_ps();
    __m512 a6 = _mm512_setzero_ps(), a7 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 xv = _mm512_loadu_ps(x + i);
        a0 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(p0 + i), a0);
        a1 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(p1 + i), a1);
        a2 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(p2 + i), a2);
        a3 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(p3 + i), a3);
        a4 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(p4 + i), a4);
        a5 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(p5 + i), a5);
        a6 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(p6 + i), a6);
        a7 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(p7 + i), a7);
    }
    if (i < n) {
        /* Masked-off lanes load 0 (and never fault): 0 * 0 adds nothing. */
        __mmask16 k = tail_mask(n - i);
        __m512 xv = _mm512_maskz_loadu_ps(k, x + i);
        a0 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(k, p0 + i), a0);
        a1 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(k, p1 + i), a1);
        a2 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(k, p2 + i), a2);
        a3 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(k, p3 + i), a3);
        a4 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(k, p4 + i), a4);
        a5 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(k, p5 + i), a5);
        a6 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(k, p6 + i), a6);
        a7 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(k, p7 + i), a7);
    }
    __m256 s = hsum8x16(a0, a1, a2, a3, a4, a5, a6, a7);
    if (cnt == 8)
        _mm256_storeu_ps(out, s);
    else
        _mm256_mask_storeu_ps(out, (__mmask8)((1u << cnt) - 1u), s);
}

static inline float dot_row_1(const float *x, const float *p, size_t n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(p + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(p + i + 16), a1);
    }
    for (; i < n; i += 16) {
        __mmask16 k = tail_mask(n - i);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, p + i), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* 8 rows per step, one zmm accumulator each over n (8 independent FMA chains: 2 pipes
 * x 4 cycles), x loaded once per 8 rows; m % 8 >= 4 rows go through the same step with
 * clamped row pointers, fewer one at a time. */
static void mha_f32_dot_rows_8__avx512(const float *x, const float *rows, size_t ld, size_t m,
                                       size_t n, float *out)
{
    mha_dot_rows_by_8(x, rows, ld, m, n, out, dot_rows_8, dot_row_1);
}

/* y[0..nn) += sum_r w[r] rows[r][0..nn), 64 < nn <= 128: y in 8 zmm (8 independent
 * FMA chains), 2 rows per iteration. */
static inline void axpy_rows_128(const float *w, const float *rows, size_t ld, size_t m,
                                 size_t nn, float *y)
{
    const __mmask16 k4 = chunk_mask(nn, 4), k5 = chunk_mask(nn, 5);
    const __mmask16 k6 = chunk_mask(nn, 6), k7 = chunk_mask(nn, 7);
    __m512 y0 = _mm512_loadu_ps(y), y1 = _mm512_loadu_ps(y + 16);
    __m512 y2 = _mm512_loadu_ps(y + 32), y3 = _mm512_loadu_ps(y + 48);
    __m512 y4 = _mm512_maskz_loadu_ps(k4, y + 64), y5 = _mm512_maskz_loadu_ps(k5, y + 80);
    __m512 y6 = _mm512_maskz_loadu_ps(k6, y + 96), y7 = _mm512_maskz_loadu_ps(k7, y + 112);
#define ROW128(rr)                                                                         \
    do {                                                                                   \
        const float *p = rows + (rr) * ld;                                                 \
        __m512 wv = _mm512_set1_ps(w[rr]);                                                 \
        y0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p), y0);                                  \
        y1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p + 16), y1);                             \
        y2 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p + 32), y2);                             \
        y3 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p + 48), y3);                             \
        y4 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k4, p + 64), y4);                   \
        y5 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k5, p + 80), y5);                   \
        y6 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k6, p + 96), y6);                   \
        y7 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k7, p + 112), y7);                  \
    } while (0)
    size_t r = 0;
    for (; r + 2 <= m; r += 2) {
        ROW128(r);
        ROW128(r + 1);
    }
    if (r < m)
        ROW128(r);
#undef ROW128
    _mm512_storeu_ps(y, y0);
    _mm512_storeu_ps(y + 16, y1);
    _mm512_storeu_ps(y + 32, y2);
    _mm512_storeu_ps(y + 48, y3);
    _mm512_mask_storeu_ps(y + 64, k4, y4);
    _mm512_mask_storeu_ps(y + 80, k5, y5);
    _mm512_mask_storeu_ps(y + 96, k6, y6);
    _mm512_mask_storeu_ps(y + 112, k7, y7);
}

/* 32 < nn <= 64: y in 4 zmm, even rows into one set of accumulators and odd rows
 * into a second (8 chains), added at the end. */
static inline void axpy_rows_64(const float *w, const float *rows, size_t ld, size_t m,
                                size_t nn, float *y)
{
    const __mmask16 k2 = chunk_mask(nn, 2), k3 = chunk_mask(nn, 3);
    __m512 y0 = _mm512_loadu_ps(y), y1 = _mm512_loadu_ps(y + 16);
    __m512 y2 = _mm512_maskz_loadu_ps(k2, y + 32), y3 = _mm512_maskz_loadu_ps(k3, y + 48);
    __m512 z0 = _mm512_setzero_ps(), z1 = z0, z2 = z0, z3 = z0;
#define ROW64(rr, a0, a1, a2, a3)                                                          \
    do {                                                                                   \
        const float *p = rows + (rr) * ld;                                                 \
        __m512 wv = _mm512_set1_ps(w[rr]);                                                 \
        a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p), a0);                                  \
        a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p + 16), a1);                             \
        a2 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k2, p + 32), a2);                   \
        a3 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k3, p + 48), a3);                   \
    } while (0)
    size_t r = 0;
    for (; r + 2 <= m; r += 2) {
        ROW64(r, y0, y1, y2, y3);
        ROW64(r + 1, z0, z1, z2, z3);
    }
    if (r < m)
        ROW64(r, y0, y1, y2, y3);
#undef ROW64
    _mm512_storeu_ps(y, _mm512_add_ps(y0, z0));
    _mm512_storeu_ps(y + 16, _mm512_add_ps(y1, z1));
    _mm512_mask_storeu_ps(y + 32, k2, _mm512_add_ps(y2, z2));
    _mm512_mask_storeu_ps(y + 48, k3, _mm512_add_ps(y3, z3));
}

/* nn <= 32: y in 2 zmm, rows dealt round-robin to 4 sets of accumulators. */
static inline void axpy_rows_32(const float *w, const float *rows, size_t ld, size_t m,
                                size_t nn, float *y)
{
    const __mmask16 k0 = chunk_mask(nn, 0), k1 = chunk_mask(nn, 1);
    __m512 a0 = _mm512_maskz_loadu_ps(k0, y), a1 = _mm512_maskz_loadu_ps(k1, y + 16);
    __m512 b0 = _mm512_setzero_ps(), b1 = b0, c0 = b0, c1 = b0, d0 = b0, d1 = b0;
#define ROW32(rr, s0, s1)                                                                  \
    do {                                                                                   \
        const float *p = rows + (rr) * ld;                                                 \
        __m512 wv = _mm512_set1_ps(w[rr]);                                                 \
        s0 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k0, p), s0);                        \
        s1 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k1, p + 16), s1);                   \
    } while (0)
    size_t r = 0;
    for (; r + 4 <= m; r += 4) {
        ROW32(r, a0, a1);
        ROW32(r + 1, b0, b1);
        ROW32(r + 2, c0, c1);
        ROW32(r + 3, d0, d1);
    }
    for (; r < m; r++)
        ROW32(r, a0, a1);
#undef ROW32
    a0 = _mm512_add_ps(_mm512_add_ps(a0, b0), _mm512_add_ps(c0, d0));
    a1 = _mm512_add_ps(_mm512_add_ps(a1, b1), _mm512_add_ps(c1, d1));
    _mm512_mask_storeu_ps(y, k0, a0);
    _mm512_mask_storeu_ps(y + 16, k1, a1);
}

/* y is held in registers over all m rows, 128 floats at a time. */
static inline void axpy_rows_cols(const float *w, const float *rows, size_t ld, size_t m,
                                  size_t n, float *y)
{
    for (size_t i = 0; i < n; i += 128) {
        size_t nn = n - i < 128 ? n - i : 128;
        if (nn > 64)
            axpy_rows_128(w, rows + i, ld, m, nn, y + i);
        else if (nn > 32)
            axpy_rows_64(w, rows + i, ld, m, nn, y + i);
        else
            axpy_rows_32(w, rows + i, ld, m, nn, y + i);
    }
}

/* n > 128 takes several passes over the rows: they go in blocks of ~16 KiB, so that
 * the passes after the first read L1. */
static void mha_f32_axpy_rows_2__avx512(const float *w, const float *rows, size_t ld, size_t m,
                                        size_t n, float *y)
{
    mha_axpy_rows_blocked(w, rows, ld, m, n, y, 128, axpy_rows_cols);
}

/* Decoding with nx query rows per kv head, in tiles of R query rows x C keys: one
 * zmm accumulator per (row, key) over n, x and each key row loaded once per tile
 * (4 x 4: 8 loads for 16 FMAs, against 9 for 8 a row at a time), summed by
 * hsum8x16. Every result is dot_rows_8's chain and sum whatever the tile (hsum8x16
 * treats its 8 inputs alike). Rows past nr and keys past nc re-read the last valid
 * one (memory in L1) and are not stored. R * C is 16 or 8. */
static inline __attribute__((always_inline)) void dot_tile(const float *x, size_t ldx, size_t nr,
                                                           const float *rows, size_t ld, size_t nc,
                                                           size_t n, float *out, size_t ldo, const int R,
                                                           const int C)
{
    const float *xp[4], *kp[8];
    __m512 acc[4][8];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        xp[r] = x + ((size_t)r < nr ? (size_t)r : nr - 1) * ldx;
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
        kp[c] = rows + ((size_t)c < nc ? (size_t)c : nc - 1) * ld;
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        /* The tail's masked-off lanes load 0 (and never fault): 0 * 0 adds nothing. */
        const __mmask16 k = tail_mask(n - i);
        __m512 xv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            xv[r] = _mm512_maskz_loadu_ps(k, xp[r] + i);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const __m512 kv = _mm512_maskz_loadu_ps(k, kp[c] + i);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r][c] = _mm512_fmadd_ps(xv[r], kv, acc[r][c]);
        }
    }
    const __mmask8 keep = (__mmask8)((1u << nc) - 1u);
    if (C == 4) { /* R == 4: rows 0-1 in the first sum, 2-3 in the second */
        const __m256 s0 = hsum8x16(acc[0][0], acc[0][1], acc[0][2], acc[0][3], acc[1][0], acc[1][1],
                                   acc[1][2], acc[1][3]);
        const __m256 s1 = hsum8x16(acc[2][0], acc[2][1], acc[2][2], acc[2][3], acc[3][0], acc[3][1],
                                   acc[3][2], acc[3][3]);
        const __m128 q[4] = {_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1),
                             _mm256_castps256_ps128(s1), _mm256_extractf128_ps(s1, 1)};
        for (size_t r = 0; r < nr; r++)
            _mm_mask_storeu_ps(out + r * ldo, keep, q[r]);
        return;
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
        if ((size_t)r < nr)
            _mm256_mask_storeu_ps(out + (size_t)r * ldo, keep,
                                  hsum8x16(acc[r][0], acc[r][1], acc[r][2], acc[r][3], acc[r][4],
                                           acc[r][5], acc[r][6], acc[r][7]));
}

/* Query rows in fours (4 x 4 tiles), a last 2 (2 x 8) or 1 (1 x 8); 3 left take a
 * 4-row tile. */
static void mha_f32_dot_rows_nx__avx512(const float *x, size_t ldx, size_t nx, const float *rows,
                                        size_t ld, size_t m, size_t n, float *out, size_t ldo)
{
    for (size_t r = 0; r < nx;) {
        const size_t left = nx - r, nr = left < 4 ? left : 4;
        const float *xr = x + r * ldx;
        float *o = out + r * ldo;
        if (nr >= 3)
            for (size_t j = 0; j < m; j += 4)
                dot_tile(xr, ldx, nr, rows + j * ld, ld, m - j < 4 ? m - j : 4, n, o + j, ldo, 4, 4);
        else if (nr == 2)
            for (size_t j = 0; j < m; j += 8)
                dot_tile(xr, ldx, 2, rows + j * ld, ld, m - j < 8 ? m - j : 8, n, o + j, ldo, 2, 8);
        else
            for (size_t j = 0; j < m; j += 8)
                dot_tile(xr, ldx, 1, rows + j * ld, ld, m - j < 8 ? m - j : 8, n, o + j, ldo, 1, 8);
        r += nr;
    }
}

/* y rows r < nr of a tile of R rows += sum_j w[r][j] rows[j][0..nn), nn <= 16 V:
 * V zmm per row, each row of `rows` loaded once for the R (4 x 4: 4 loads and 4
 * broadcasts for 16 FMAs), one FMA chain per element over j in order (axpy_rows_128's
 * chain), so every result is the same whatever the tile. Rows past nr repeat the
 * last valid one and are not stored. */
static inline __attribute__((always_inline)) void axpy_tile(const float *w, size_t ldw, size_t nr,
                                                            const float *rows, size_t ld, size_t m,
                                                            size_t nn, float *y, size_t ldy, const int R,
                                                            const int V)
{
    const float *wp[4];
    float *yp[4];
    __mmask16 km[8];
    __m512 acc[4][8];
#pragma GCC unroll 8
    for (int v = 0; v < V; v++)
        km[v] = chunk_mask(nn, (size_t)v);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const size_t rr = (size_t)r < nr ? (size_t)r : nr - 1;
        wp[r] = w + rr * ldw;
        yp[r] = y + rr * ldy;
#pragma GCC unroll 8
        for (int v = 0; v < V; v++)
            acc[r][v] = _mm512_maskz_loadu_ps(km[v], yp[r] + 16 * v);
    }
    for (size_t j = 0; j < m; j++) {
        const float *p = rows + j * ld;
        __m512 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            wv[r] = _mm512_set1_ps(wp[r][j]);
#pragma GCC unroll 8
        for (int v = 0; v < V; v++) {
            const __m512 pv = _mm512_maskz_loadu_ps(km[v], p + 16 * v);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r][v] = _mm512_fmadd_ps(wv[r], pv, acc[r][v]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        if ((size_t)r < nr)
#pragma GCC unroll 8
            for (int v = 0; v < V; v++)
                _mm512_mask_storeu_ps(yp[r] + 16 * v, km[v], acc[r][v]);
}

/* Query rows in fours (64 columns a pass), a last 2 or 1 (128 columns a pass); 3
 * left take a 4-row tile. */
static void mha_f32_axpy_rows_nx__avx512(const float *w, size_t ldw, size_t nx, const float *rows,
                                         size_t ld, size_t m, size_t n, float *y, size_t ldy)
{
    for (size_t r = 0; r < nx;) {
        const size_t left = nx - r, nr = left < 4 ? left : 4;
        const float *wr = w + r * ldw;
        float *yr = y + r * ldy;
        if (nr >= 3)
            for (size_t i = 0; i < n; i += 64)
                axpy_tile(wr, ldw, nr, rows + i, ld, m, n - i < 64 ? n - i : 64, yr + i, ldy, 4, 4);
        else if (nr == 2)
            for (size_t i = 0; i < n; i += 128)
                axpy_tile(wr, ldw, 2, rows + i, ld, m, n - i < 128 ? n - i : 128, yr + i, ldy, 2, 8);
        else
            for (size_t i = 0; i < n; i += 128)
                axpy_tile(wr, ldw, 1, rows + i, ld, m, n - i < 128 ? n - i : 128, yr + i, ldy, 1, 8);
        r += nr;
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
    .f32_dot_rows = mha_f32_dot_rows_8__avx512,
    .f32_axpy_rows = mha_f32_axpy_rows_2__avx512,
    .f32_tanh = mha_f32_tanh__avx512,
    .f32_gemm_pa = mha_f32_gemm_pa_8x32__avx512,
    .f32_pack_a = mha_f32_pack_a_8__avx512,
    .f32_dot_rows_nx = mha_f32_dot_rows_nx__avx512,
    .f32_axpy_rows_nx = mha_f32_axpy_rows_nx__avx512,
};
