/* AVX2 + FMA machine limits (compiled with -mavx2 -mfma). */
#if !defined(__AVX2__) || !defined(__FMA__)
#error "peak_avx2.c needs -mavx2 -mfma"
#endif
#include <immintrin.h>

#include "peak.h"

extern volatile float mhab_sink;
static volatile float mul_src = 0.99999f, add_src = 1e-6f;

/* 12 independent FMA chains (+ 2 constants: 14 of the 16 ymm registers, no
 * spills): more than latency x FMA pipes on current cores. */
double mhab_fma_avx2(long iters)
{
    const __m256 m = _mm256_set1_ps(mul_src), a = _mm256_set1_ps(add_src);
    __m256 c0 = _mm256_set1_ps(0.01f), c1 = _mm256_set1_ps(0.02f), c2 = _mm256_set1_ps(0.03f),
           c3 = _mm256_set1_ps(0.04f), c4 = _mm256_set1_ps(0.05f), c5 = _mm256_set1_ps(0.06f),
           c6 = _mm256_set1_ps(0.07f), c7 = _mm256_set1_ps(0.08f), c8 = _mm256_set1_ps(0.09f),
           c9 = _mm256_set1_ps(0.10f), c10 = _mm256_set1_ps(0.11f), c11 = _mm256_set1_ps(0.12f);
    for (long i = 0; i < iters; i++) {
        c0 = _mm256_fmadd_ps(c0, m, a);
        c1 = _mm256_fmadd_ps(c1, m, a);
        c2 = _mm256_fmadd_ps(c2, m, a);
        c3 = _mm256_fmadd_ps(c3, m, a);
        c4 = _mm256_fmadd_ps(c4, m, a);
        c5 = _mm256_fmadd_ps(c5, m, a);
        c6 = _mm256_fmadd_ps(c6, m, a);
        c7 = _mm256_fmadd_ps(c7, m, a);
        c8 = _mm256_fmadd_ps(c8, m, a);
        c9 = _mm256_fmadd_ps(c9, m, a);
        c10 = _mm256_fmadd_ps(c10, m, a);
        c11 = _mm256_fmadd_ps(c11, m, a);
    }
    __m256 s = _mm256_add_ps(
        _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                      _mm256_add_ps(c4, c5)),
        _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c6, c7), _mm256_add_ps(c8, c9)),
                      _mm256_add_ps(c10, c11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    mhab_sink = out[0] + out[7];
    return 2.0 * 8 * 12 * (double)iters;
}

float mhab_read_avx2(const float *x, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    for (size_t i = 0; i < n; i += 64) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(x + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(x + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(x + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(x + i + 24));
        s4 = _mm256_add_ps(s4, _mm256_load_ps(x + i + 32));
        s5 = _mm256_add_ps(s5, _mm256_load_ps(x + i + 40));
        s6 = _mm256_add_ps(s6, _mm256_load_ps(x + i + 48));
        s7 = _mm256_add_ps(s7, _mm256_load_ps(x + i + 56));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)),
                             _mm256_add_ps(_mm256_add_ps(s4, s5), _mm256_add_ps(s6, s7)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
