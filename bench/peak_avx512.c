/* AVX-512 machine limits (compiled with -mavx512f). */
#if !defined(__AVX512F__)
#error "peak_avx512.c needs -mavx512f"
#endif
#include <immintrin.h>

#include "peak.h"

extern volatile float mhab_sink;
static volatile float mul_src = 0.99999f, add_src = 1e-6f;

/* 16 independent FMA chains on zmm registers. */
double mhab_fma_avx512(long iters)
{
    const __m512 m = _mm512_set1_ps(mul_src), a = _mm512_set1_ps(add_src);
    __m512 c0 = _mm512_set1_ps(0.01f), c1 = _mm512_set1_ps(0.02f), c2 = _mm512_set1_ps(0.03f),
           c3 = _mm512_set1_ps(0.04f), c4 = _mm512_set1_ps(0.05f), c5 = _mm512_set1_ps(0.06f),
           c6 = _mm512_set1_ps(0.07f), c7 = _mm512_set1_ps(0.08f), c8 = _mm512_set1_ps(0.09f),
           c9 = _mm512_set1_ps(0.10f), c10 = _mm512_set1_ps(0.11f), c11 = _mm512_set1_ps(0.12f),
           c12 = _mm512_set1_ps(0.13f), c13 = _mm512_set1_ps(0.14f), c14 = _mm512_set1_ps(0.15f),
           c15 = _mm512_set1_ps(0.16f);
    for (long i = 0; i < iters; i++) {
        c0 = _mm512_fmadd_ps(c0, m, a);
        c1 = _mm512_fmadd_ps(c1, m, a);
        c2 = _mm512_fmadd_ps(c2, m, a);
        c3 = _mm512_fmadd_ps(c3, m, a);
        c4 = _mm512_fmadd_ps(c4, m, a);
        c5 = _mm512_fmadd_ps(c5, m, a);
        c6 = _mm512_fmadd_ps(c6, m, a);
        c7 = _mm512_fmadd_ps(c7, m, a);
        c8 = _mm512_fmadd_ps(c8, m, a);
        c9 = _mm512_fmadd_ps(c9, m, a);
        c10 = _mm512_fmadd_ps(c10, m, a);
        c11 = _mm512_fmadd_ps(c11, m, a);
        c12 = _mm512_fmadd_ps(c12, m, a);
        c13 = _mm512_fmadd_ps(c13, m, a);
        c14 = _mm512_fmadd_ps(c14, m, a);
        c15 = _mm512_fmadd_ps(c15, m, a);
    }
    __m512 s = _mm512_add_ps(
        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                      _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7))),
        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
                      _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
    mhab_sink = _mm512_reduce_add_ps(s);
    return 2.0 * 16 * 16 * (double)iters;
}

float mhab_read_avx512(const float *x, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    for (size_t i = 0; i < n; i += 128) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(x + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(x + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(x + i + 48));
        s4 = _mm512_add_ps(s4, _mm512_load_ps(x + i + 64));
        s5 = _mm512_add_ps(s5, _mm512_load_ps(x + i + 80));
        s6 = _mm512_add_ps(s6, _mm512_load_ps(x + i + 96));
        s7 = _mm512_add_ps(s7, _mm512_load_ps(x + i + 112));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)),
                             _mm512_add_ps(_mm512_add_ps(s4, s5), _mm512_add_ps(s6, s7)));
    return _mm512_reduce_add_ps(s);
}
