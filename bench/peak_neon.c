/* NEON machine limits (AArch64: Advanced SIMD is baseline). */
#if !defined(__aarch64__)
#error "peak_neon.c is for AArch64"
#endif
#include <arm_neon.h>

#include "peak.h"

extern volatile float mhab_sink;
static volatile float mul_src = 0.99999f, add_src = 1e-6f;

#define NACC 16
double mhab_fma_neon(long iters)
{
    const float32x4_t m = vdupq_n_f32(mul_src), a = vdupq_n_f32(add_src);
    float32x4_t c[NACC];
    for (int j = 0; j < NACC; j++)
        c[j] = vdupq_n_f32(0.01f * (float)(j + 1));
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int j = 0; j < NACC; j++)
            c[j] = vfmaq_f32(a, c[j], m);
    }
    float32x4_t s = c[0];
    for (int j = 1; j < NACC; j++)
        s = vaddq_f32(s, c[j]);
    mhab_sink = vaddvq_f32(s);
    return 2.0 * 4 * NACC * (double)iters;
}

float mhab_read_neon(const float *x, size_t n)
{
    float32x4_t s[8];
    for (int j = 0; j < 8; j++)
        s[j] = vdupq_n_f32(0.0f);
    for (size_t i = 0; i < n; i += 32) {
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            s[j] = vaddq_f32(s[j], vld1q_f32(x + i + 4 * (size_t)j));
    }
    float32x4_t t = s[0];
    for (int j = 1; j < 8; j++)
        t = vaddq_f32(t, s[j]);
    return vaddvq_f32(t);
}
