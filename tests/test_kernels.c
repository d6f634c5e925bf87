/*
 * Every kernel of every table this host can run (scalar, avx2, avx512, neon),
 * against float64 references written here. Each test is a loop test over the ISA
 * enum; a table this build or CPU lacks is skipped inside the test.
 *
 * exp: special values, the underflow/overflow edges, and the max ulp error over
 * [-104, 0] (the range softmax feeds it). Measured max error over all 1.12e9 floats
 * of [-104, 0] natively: avx2 and avx512 0.889 ulp (x = -38.45), scalar 1.188 ulp
 * (x = -59.95, no FMA); neon on a strided sample under qemu: see the test output.
 * The bound asserted is EXP_MAX_ULP.
 *
 * tanh: special values (+-0, +-inf, NaN, denormals and tiny x give x, saturation to
 * +-1), every length to 300 unaligned and in place, and the max ulp error over a
 * strided sample of [-10, 10] with tanh(-x) == -tanh(x) to the bit. Measured over
 * every finite float (MHA_TEST_TANH_SWEEP_ALL=1, tens of minutes on a busy host):
 * avx2 and avx512 1.371 ulp (|x| = 0.63022), scalar 1.343 ulp (|x| = 0.63255);
 * every SIMD table within 2 ulp of scalar. The bounds asserted are TANH_MAX_ULP
 * and TANH_MAX_APART.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h" /* mha_gemm_run: the projection driver on each table */
#include "common.h" /* MHA_EXP_FLUSH */
#include "kernels.h"
#include "testutil.h"

#define EXP_MAX_ULP 2.0
#define TANH_MAX_ULP 2.0
#define TANH_MAX_APART 2u /* ulp between any ISA's tanh and the scalar one */

/* Check's ck_assert_* talks to the parent process on every call (even passing
 * ones), too slow inside element loops: those use this instead. */
#define FAIL_IF(cond, ...)             \
    do {                               \
        if (cond)                      \
            ck_abort_msg(__VA_ARGS__); \
    } while (0)

static const mha_kernels *table(int i)
{
    return mha_kernels_for((mha_isa)i);
}

/* Aligned allocation plus one float, so kernels see misaligned pointers. */
static float *unaligned(size_t n)
{
    float *p = malloc((n + 17) * sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p + 1;
}

static void release(float *p)
{
    free(p - 1);
}

/* -------------------------------------------------------------------- exp */

/* exp in float64: libm's exp, or a short Taylor series near 0 (faster, and exact
 * to far below a float ulp there). */
static double exp_ref(float x)
{
    double d = x;
    if (fabs(d) < 0x1p-8)
        return 1.0 + d * (1.0 + d * (0.5 + d * (1.0 / 6.0 + d * (1.0 / 24.0))));
    return exp(d);
}

/* Error of got against the exact value ref, in units of the float ulp at ref
 * (2^-149 in the denormal range); +inf counts as 2^128. Inf when NaN-ness
 * disagrees or a finite result stands for an overflow. */
static double ulp_err(float got, double ref)
{
    if (isnan(ref) || isnan(got))
        return isnan(ref) && isnan(got) ? 0.0 : INFINITY;
    double gd = got;
    if (isinf(got)) {
        if (got > 0 && ref >= 0x1p128)
            return 0.0;
        gd = got > 0 ? 0x1p128 : -0x1p128;
    } else if (fabs(ref) >= 0x1p128) {
        return INFINITY;
    }
    /* The float ulp from ref's binary exponent (read from its bits: fast and exact). */
    double a = fabs(ref);
    uint64_t bits;
    memcpy(&bits, &a, sizeof bits);
    int e = (int)(bits >> 52) - 1023; /* a in [2^e, 2^(e+1)) */
    int ue = e < -126 ? -149 : e - 23;
    uint64_t ub = (uint64_t)(ue + 1023) << 52;
    double ulp;
    memcpy(&ulp, &ub, sizeof ulp);
    return fabs(gd - ref) / ulp;
}

static float bits_to_float(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static uint32_t float_to_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

START_TEST(test_exp_special)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    const float in[] = {-INFINITY, INFINITY, NAN, -NAN, 0.0f, -0.0f, 88.8f, 89.0f, 89.5f,
                        100.0f, 1e30f, FLT_MAX, -FLT_MAX, -1e30f, -110.0f, -104.0f,
                        -103.98f, -150.0f};
    const size_t n = sizeof in / sizeof in[0];
    float *x = unaligned(n), *y = unaligned(n);
    memcpy(x, in, sizeof in);
    k->f32_exp(x, y, n);
    FAIL_IF(!(y[0] == 0.0f && !signbit(y[0])), "%s: exp(-inf) = %g", k->name, y[0]);
    FAIL_IF(!(isinf(y[1]) && y[1] > 0), "%s: exp(+inf) = %g", k->name, y[1]);
    FAIL_IF(!(isnan(y[2]) && isnan(y[3])), "%s: exp(NaN) = %g, %g", k->name, y[2], y[3]);
    FAIL_IF(!(y[4] == 1.0f && y[5] == 1.0f), "%s: exp(+-0) = %g, %g", k->name, y[4], y[5]);
    for (size_t i = 6; i < 12; i++)
        FAIL_IF(!(isinf(y[i]) && y[i] > 0), "%s: exp(%g) = %g, expected +inf", k->name,
                      in[i], y[i]);
    for (size_t i = 12; i < n; i++)
        FAIL_IF(!(y[i] == 0.0f), "%s: exp(%g) = %g, expected 0", k->name, in[i], y[i]);
    /* In place gives the same results. */
    k->f32_exp(x, x, n);
    for (size_t i = 0; i < n; i++)
        FAIL_IF(!(isnan(y[i]) ? isnan(x[i]) : x[i] == y[i]), "%s: in place, x = %g", k->name,
                      in[i]);
    release(x);
    release(y);
}
END_TEST

/* Dense steps through the edges: overflow around ln(FLT_MAX) = 88.7228, normal ->
 * denormal around -87.34, denormal -> 0 around -103.97, and a random spread over the
 * whole finite range. */
START_TEST(test_exp_edges)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    const size_t n = 4096;
    float *x = unaligned(n), *y = unaligned(n);
    const float ranges[][2] = {{88.0f, 89.0f}, {-88.5f, -86.5f}, {-104.5f, -102.5f},
                               {-1.0f, 1.0f}};
    double worst = 0.0;
    float worst_x = 0.0f;
    for (size_t r = 0; r < 5; r++) {
        if (r < 4) {
            for (size_t i = 0; i < n; i++)
                x[i] = ranges[r][0] + (ranges[r][1] - ranges[r][0]) * (float)i / (float)(n - 1);
        } else {
            test_rng g = test_rng_seed(7);
            test_fill(&g, x, n, -110.0f, 95.0f);
        }
        k->f32_exp(x, y, n);
        for (size_t i = 0; i < n; i++) {
            double e = ulp_err(y[i], exp_ref(x[i]));
            if (e > worst) {
                worst = e;
                worst_x = x[i];
            }
        }
    }
    /* Just below ln(FLT_MAX) the result is finite, and correct to the bound. */
    x[0] = 88.72283f;
    k->f32_exp(x, y, 1);
    FAIL_IF(!(isfinite(y[0])), "%s: exp(88.72283) overflowed", k->name);
    FAIL_IF(!(worst <= EXP_MAX_ULP), "%s: exp error %.3f ulp at x = %.9g", k->name, worst,
                  (double)worst_x);
    release(x);
    release(y);
}
END_TEST

/* Max ulp error over the floats of [-104, 0] taken every `stride` bit patterns. */
static double exp_sweep(const mha_kernels *k, uint32_t stride, float *worst_x)
{
    enum { CHUNK = 4096 };
    float *x = unaligned(CHUNK), *y = unaligned(CHUNK);
    const uint32_t first = float_to_bits(-0.0f), last = float_to_bits(-104.0f);
    double worst = 0.0;
    uint64_t b = first;
    while (b <= last) {
        size_t cnt = 0;
        for (; cnt < CHUNK && b <= last; cnt++, b += stride)
            x[cnt] = bits_to_float((uint32_t)b);
        k->f32_exp(x, y, cnt);
        if (fabsf(x[cnt - 1]) < 0x1p-25f) {
            /* Most of the floats: exp(x) = 1 + x to far below an ulp, and the ulp of a
             * result just under 1 is 2^-24 (slightly pessimistic for x = -0). */
            for (size_t i = 0; i < cnt; i++) {
                double e = fabs((double)y[i] - (1.0 + (double)x[i])) * 0x1p24;
                if (e > worst) {
                    worst = e;
                    *worst_x = x[i];
                }
            }
            continue;
        }
        for (size_t i = 0; i < cnt; i++) {
            double e = ulp_err(y[i], exp_ref(x[i]));
            if (e > worst) {
                worst = e;
                *worst_x = x[i];
            }
        }
    }
    release(x);
    release(y);
    return worst;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/*
 * The active table gets the full sweep (every float of [-104, 0], ~1.12e9 values)
 * when MHA_TEST_QUICK is unset and a timed sample predicts it takes less than a few
 * seconds (so never under emulation); other tables, and slow hosts, get a strided
 * sample (a prime stride, ~1.1M values).
 */
START_TEST(test_exp_sweep)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    const uint32_t stride = 1021;
    float wx = 0.0f;
    double t0 = now_seconds();
    double worst = exp_sweep(k, stride, &wx);
    double t_sample = now_seconds() - t0;
    const char *what = "strided sample";
    if (getenv("MHA_TEST_EXP_SWEEP_ALL") ||
        (k == mha_kernels_active() && !test_quick() && t_sample * stride < 3.0)) {
        float wx_full = 0.0f;
        double w = exp_sweep(k, 1, &wx_full);
        if (w > worst) {
            worst = w;
            wx = wx_full;
        }
        what = "every float";
    }
    printf("exp %s: max error %.3f ulp over [-104, 0] (%s, worst x = %.9g; %.2f s)\n", k->name,
           worst, what, (double)wx, now_seconds() - t0);
    FAIL_IF(!(worst <= EXP_MAX_ULP), "%s: exp error %.3f ulp at x = %.9g", k->name, worst,
                  (double)wx);
}
END_TEST

/* ------------------------------------------------------------------- tanh */

/* Inputs where tanh is exact or saturates, and the denormal / tiny range. */
START_TEST(test_tanh_special)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    const float in[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 9.5f, -9.5f, 9.02f,
                        20.0f, -88.0f, 1e30f, FLT_MAX, -FLT_MAX, 0x1p-149f, -0x1p-149f,
                        0x1.fffffcp-127f, FLT_MIN, -1e-20f, 3e-5f, 0x1.fffffep-13f, -0x1p-12f};
    const size_t n = sizeof in / sizeof in[0];
    float *x = unaligned(n), *y = unaligned(n);
    memcpy(x, in, sizeof in);
    k->f32_tanh(x, y, n);
    FAIL_IF(!(y[0] == 0.0f && !signbit(y[0])), "%s: tanh(0) = %g", k->name, y[0]);
    FAIL_IF(!(y[1] == 0.0f && signbit(y[1])), "%s: tanh(-0) = %g", k->name, y[1]);
    FAIL_IF(!(y[2] == 1.0f && y[3] == -1.0f), "%s: tanh(+-inf) = %g, %g", k->name, y[2], y[3]);
    FAIL_IF(!(isnan(y[4]) && isnan(y[5])), "%s: tanh(NaN) = %g, %g", k->name, y[4], y[5]);
    /* Beyond 9.01 the float nearest to tanh is +-1. */
    for (size_t i = 6; i < 14; i++)
        FAIL_IF(!(y[i] == copysignf(1.0f, in[i])), "%s: tanh(%g) = %.9g, expected +-1",
                k->name, (double)in[i], (double)y[i]);
    /* Below 2^-12, tanh(x) rounds to x: denormals and tiny values come back as is. */
    for (size_t i = 14; i < 20; i++)
        FAIL_IF(!(y[i] == in[i]), "%s: tanh(%a) = %a, expected x", k->name, (double)in[i],
                (double)y[i]);
    for (size_t i = 20; i < n; i++)
        FAIL_IF(!(ulp_err(y[i], tanh((double)in[i])) <= 0.5), "%s: tanh(%a) = %a", k->name,
                (double)in[i], (double)y[i]);
    /* In place gives the same results. */
    k->f32_tanh(x, x, n);
    for (size_t i = 0; i < n; i++)
        FAIL_IF(!(isnan(y[i]) ? isnan(x[i]) : float_to_bits(x[i]) == float_to_bits(y[i])),
                "%s: tanh in place, x = %g", k->name, (double)in[i]);
    release(x);
    release(y);
}
END_TEST

/* Every length up to 300 (vector tails of every size), unaligned pointers, values
 * around both branch points (0.625, 9.5), nothing written past n, in place. */
START_TEST(test_tanh_sizes)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    test_rng g = test_rng_seed(13);
    float *x = unaligned(300), *y = unaligned(300), *x2 = unaligned(300);
    for (size_t n = 1; n <= 300; n++) {
        test_fill(&g, x, n, -12.0f, 12.0f);
        for (size_t i = 1; i < n; i += 4)
            x[i] = (i & 8 ? -1.0f : 1.0f) * (0.6f + 0.05f * (float)(i % 7) / 7.0f);
        for (size_t i = 2; i < n; i += 9)
            x[i] *= 1e-3f;
        memset(y, 0xff, (n + 8) * sizeof(float)); /* NaN sentinel past n too */
        k->f32_tanh(x, y, n);
        for (size_t i = 0; i < n; i++) {
            double e = ulp_err(y[i], tanh((double)x[i]));
            FAIL_IF(!(e <= TANH_MAX_ULP), "%s: tanh n=%zu: %.2f ulp at x = %.9g", k->name, n,
                    e, (double)x[i]);
        }
        for (size_t i = n; i < n + 8; i++)
            FAIL_IF(!(isnan(y[i])), "%s: tanh n=%zu wrote past the end", k->name, n);
        memcpy(x2, x, n * sizeof(float));
        k->f32_tanh(x2, x2, n);
        FAIL_IF(!(memcmp(x2, y, n * sizeof(float)) == 0), "%s: tanh in place n=%zu", k->name,
                n);
    }
    /* A NaN among finite values changes only its own element. */
    for (size_t i = 0; i < 37; i++)
        x[i] = (float)i * 0.25f - 4.0f;
    x[20] = NAN;
    k->f32_tanh(x, y, 37);
    FAIL_IF(!(isnan(y[20]) && !isnan(y[19]) && !isnan(y[21])), "%s: tanh NaN lane", k->name);
    release(x);
    release(y);
    release(x2);
}
END_TEST

/* Max ulp error over the floats of [0, hi] taken every `stride` bit patterns, and
 * tanh(-x) == -tanh(x) to the bit on the same floats. *apart: the largest distance
 * (in ulp: bit patterns, the results being >= 0) from the scalar table's results. */
static double tanh_sweep(const mha_kernels *k, uint32_t stride, float hi, float *worst_x,
                         uint32_t *apart)
{
    enum { CHUNK = 4096 };
    const mha_kernels *sc = mha_kernels_for(MHA_ISA_SCALAR);
    float *x = unaligned(CHUNK), *y = unaligned(CHUNK), *yn = unaligned(CHUNK);
    const uint32_t last = float_to_bits(hi);
    double worst = 0.0;
    uint64_t b = 0;
    while (b <= last) {
        size_t cnt = 0;
        for (; cnt < CHUNK && b <= last; cnt++, b += stride)
            x[cnt] = bits_to_float((uint32_t)b);
        k->f32_tanh(x, y, cnt);
        sc->f32_tanh(x, yn, cnt);
        for (size_t i = 0; i < cnt; i++) {
            uint32_t by = float_to_bits(y[i]), bs = float_to_bits(yn[i]);
            uint32_t d = by > bs ? by - bs : bs - by;
            *apart = d > *apart ? d : *apart;
        }
        for (size_t i = 0; i < cnt; i++) {
            /* Below 2^-12 tanh(x) = x - x^3/3 rounds to x (test_tanh_special): skip the
             * slow libm call for the ~0.9e9 floats there. */
            double e = x[i] < 0x1p-12f ? (y[i] == x[i] ? 0.0 : INFINITY)
                                       : ulp_err(y[i], tanh((double)x[i]));
            if (e > worst) {
                worst = e;
                *worst_x = x[i];
            }
            x[i] = -x[i];
        }
        k->f32_tanh(x, yn, cnt);
        for (size_t i = 0; i < cnt; i++)
            if (float_to_bits(yn[i]) != (float_to_bits(y[i]) ^ 0x80000000u)) {
                worst = INFINITY;
                *worst_x = x[i];
            }
    }
    release(x);
    release(y);
    release(yn);
    return worst;
}

/*
 * As the exp sweep: a strided sample of [0, 10] (a prime stride, ~1.07M values,
 * beyond 9.5 every result is 1) on every table; the active table gets every float
 * of [0, 10] when a timed sample predicts less than a few seconds. With
 * MHA_TEST_TANH_SWEEP_ALL set, every float of [0, FLT_MAX] and its negation, on
 * every table (the measurement quoted in simd/kernels.h; tens of seconds).
 */
START_TEST(test_tanh_sweep)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    const uint32_t stride = 1021;
    float wx = 0.0f;
    uint32_t apart = 0;
    double t0 = now_seconds();
    double worst = tanh_sweep(k, stride, 10.0f, &wx, &apart);
    double t_sample = now_seconds() - t0;
    const char *what = "strided sample of [0, 10]";
    const int all = getenv("MHA_TEST_TANH_SWEEP_ALL") != NULL;
    if (all || (k == mha_kernels_active() && !test_quick() && t_sample * stride < 3.0)) {
        float wx_full = 0.0f;
        double w = tanh_sweep(k, 1, all ? FLT_MAX : 10.0f, &wx_full, &apart);
        if (w > worst) {
            worst = w;
            wx = wx_full;
        }
        what = all ? "every float" : "every float of [-10, 10]";
    }
    printf("tanh %s: max error %.3f ulp (%s, worst |x| = %.9g), within %u ulp of scalar; "
           "%.2f s\n",
           k->name, worst, what, (double)wx, (unsigned)apart, now_seconds() - t0);
    FAIL_IF(!(worst <= TANH_MAX_ULP), "%s: tanh error %.3f ulp at x = %.9g", k->name, worst,
            (double)wx);
    FAIL_IF(!(apart <= TANH_MAX_APART), "%s: tanh %u ulp away from scalar", k->name,
            (unsigned)apart);
}
END_TEST

/* ------------------------------------------------------------ row kernels */

START_TEST(test_rowmax)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    test_rng g = test_rng_seed(11);
    float *x = unaligned(300);
    for (size_t n = 1; n <= 300; n++) {
        test_fill(&g, x, n, -50.0f, 50.0f);
        /* Some -inf (masked keys) and the max at every kind of position. */
        for (size_t i = 0; i < n; i += 3)
            x[i] = -INFINITY;
        size_t at = (n * 7 / 3) % n;
        x[at] = 60.0f + (float)n;
        float ref = -INFINITY;
        for (size_t i = 0; i < n; i++)
            ref = x[i] > ref ? x[i] : ref;
        FAIL_IF(!(k->f32_rowmax(x, n) == ref), "%s: rowmax n=%zu", k->name, n);
        x[at] = -INFINITY;
        x[n - 1] = 1000.0f;
        FAIL_IF(!(k->f32_rowmax(x, n) == 1000.0f), "%s: rowmax last n=%zu", k->name, n);
        for (size_t i = 0; i < n; i++)
            x[i] = -INFINITY;
        FAIL_IF(!(k->f32_rowmax(x, n) == -INFINITY), "%s: rowmax all -inf n=%zu", k->name, n);
        for (size_t i = 0; i < n; i++)
            x[i] = -1e30f - (float)i;
        FAIL_IF(!(k->f32_rowmax(x, n) == -1e30f), "%s: rowmax negatives n=%zu", k->name, n);
        /* A NaN anywhere (among -inf, or among finite values) gives NaN. */
        size_t nan_at[3] = {0, n / 2, n - 1};
        for (size_t t = 0; t < 3; t++) {
            for (size_t i = 0; i < n; i++)
                x[i] = (t == 1) ? (float)i : -INFINITY;
            x[nan_at[t]] = NAN;
            FAIL_IF(!isnan(k->f32_rowmax(x, n)), "%s: rowmax hid a NaN at %zu, n=%zu", k->name,
                    nan_at[t], n);
        }
        for (size_t i = 0; i < n; i++)
            x[i] = NAN;
        FAIL_IF(!isnan(k->f32_rowmax(x, n)), "%s: rowmax of NaNs n=%zu", k->name, n);
    }
    release(x);
}
END_TEST

START_TEST(test_exp_sub_sum)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    test_rng g = test_rng_seed(12);
    float *x = unaligned(300), *y = unaligned(300), *x2 = unaligned(300);
    for (size_t n = 1; n <= 300; n++) {
        test_fill(&g, x, n, -30.0f, 5.0f);
        for (size_t i = 1; i < n; i += 5)
            x[i] = -INFINITY;
        float sub = test_rng_uniform(&g, -2.0f, 6.0f);
        memset(y, 0xff, (n + 8) * sizeof(float)); /* NaN sentinel past n too */
        float sum = k->f32_exp_sub_sum(x, sub, y, n);
        double ref_sum = 0.0, worst = 0.0;
        for (size_t i = 0; i < n; i++) {
            double r = exp_ref(x[i] - sub);
            ref_sum += r;
            double e = ulp_err(y[i], r);
            worst = e > worst ? e : worst;
        }
        FAIL_IF(!(worst <= EXP_MAX_ULP), "%s: exp_sub_sum n=%zu: %.2f ulp", k->name, n, worst);
        FAIL_IF(!(fabs(sum - ref_sum) <= 1e-5 * ref_sum + 1e-30),
                      "%s: exp_sub_sum n=%zu: sum %.9g vs %.9g", k->name, n, sum, ref_sum);
        for (size_t i = n; i < n + 8; i++)
            FAIL_IF(!(isnan(y[i])), "%s: exp_sub_sum n=%zu wrote past the end", k->name, n);
        /* In place gives the same bits. */
        memcpy(x2, x, n * sizeof(float));
        float sum2 = k->f32_exp_sub_sum(x2, sub, x2, n);
        FAIL_IF(!(sum2 == sum && memcmp(x2, y, n * sizeof(float)) == 0),
                      "%s: exp_sub_sum in place n=%zu", k->name, n);
    }
    /* A NaN is never hidden. */
    for (size_t i = 0; i < 37; i++)
        x[i] = (float)i * -0.5f;
    x[20] = NAN;
    FAIL_IF(!(isnan(k->f32_exp_sub_sum(x, 0.0f, y, 37)) && isnan(y[20])),
                  "%s: exp_sub_sum hid a NaN", k->name);
    release(x);
    release(y);
    release(x2);
}
END_TEST

/* The flush of results below 2^-126 (simd/common.h): every table, every length to 70
 * (each ISA's blocks and tails), x - sub dense around MHA_EXP_FLUSH and spread over
 * [-130, 5] with -inf, huge negatives and NaN mixed in. Zeroed lanes are +0, every
 * other lane is normal and has f32_exp's bits for x - sub, the sum matches float64. */
START_TEST(test_exp_sub_sum_flush)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    /* The threshold is the least float whose exact exp is >= 2^-126. */
    const float t = MHA_EXP_FLUSH;
    FAIL_IF(!(exp((double)t) >= 0x1p-126 && exp((double)nextafterf(t, -INFINITY)) < 0x1p-126),
            "MHA_EXP_FLUSH = %.9g is not the 2^-126 threshold", (double)t);
    test_rng g = test_rng_seed(31);
    const size_t cap = 70;
    float *x = unaligned(cap), *y = unaligned(cap), *d = unaligned(cap), *e = unaligned(cap);
    const float subs[] = {0.0f, 1.75f, -3.25f, 40.0f};
    for (size_t n = 1; n <= cap; n++) {
        for (size_t si = 0; si < sizeof subs / sizeof subs[0]; si++) {
            const float sub = subs[si];
            /* Half the lanes step by one ulp from 35 ulps below the threshold, the
             * rest spread wide; specials at fixed places. */
            float a = t;
            for (int j = 0; j < 35; j++)
                a = nextafterf(a, -INFINITY);
            for (size_t i = 0; i < n; i++) {
                if (i % 2 == 0) {
                    x[i] = a + sub;
                    a = nextafterf(a, INFINITY);
                } else {
                    x[i] = test_rng_uniform(&g, -130.0f, 5.0f) + sub;
                }
            }
            if (n > 3)
                x[3] = -INFINITY;
            if (n > 5)
                x[5] = -FLT_MAX;
            if (n > 7)
                x[7] = -1e30f;
            for (size_t i = 0; i < n; i++)
                d[i] = x[i] - sub;
            k->f32_exp(d, e, n);
            memset(y, 0xff, cap * sizeof(float));
            const float sum = k->f32_exp_sub_sum(x, sub, y, n);
            double ref_sum = 0.0;
            for (size_t i = 0; i < n; i++) {
                ref_sum += exp_ref(d[i]);
                if (d[i] < t) {
                    FAIL_IF(!(float_to_bits(y[i]) == 0u),
                            "%s: exp_sub_sum(%.9g - %g) = %a, expected +0", k->name,
                            (double)x[i], (double)sub, (double)y[i]);
                } else {
                    FAIL_IF(!(y[i] >= FLT_MIN && float_to_bits(y[i]) == float_to_bits(e[i])),
                            "%s: exp_sub_sum(%.9g - %g) = %a, f32_exp gives %a", k->name,
                            (double)x[i], (double)sub, (double)y[i], (double)e[i]);
                }
            }
            for (size_t i = n; i < cap; i++)
                FAIL_IF(!(isnan(y[i])), "%s: exp_sub_sum n=%zu wrote past the end", k->name, n);
            /* Each flushed term is below 2^-126: the sum moves by far less than 1e-6. */
            FAIL_IF(!(fabs(sum - ref_sum) <= 1e-6 * ref_sum + n * 0x1p-126),
                    "%s: exp_sub_sum flush n=%zu: sum %a vs %a", k->name, n, (double)sum, ref_sum);
        }
        /* NaN in x or in sub propagates, wherever it sits. */
        for (size_t i = 0; i < n; i++)
            x[i] = -100.0f;
        x[n - 1] = NAN;
        FAIL_IF(!(isnan(k->f32_exp_sub_sum(x, 0.0f, y, n)) && isnan(y[n - 1])),
                "%s: exp_sub_sum n=%zu hid a NaN among flushed lanes", k->name, n);
        x[n - 1] = -100.0f;
        const float s = k->f32_exp_sub_sum(x, NAN, y, n);
        FAIL_IF(!(isnan(s) && isnan(y[0]) && isnan(y[n - 1])),
                "%s: exp_sub_sum n=%zu hid a NaN sub", k->name, n);
    }
    release(x);
    release(y);
    release(d);
    release(e);
}
END_TEST

START_TEST(test_scale_and_masks)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    test_rng g = test_rng_seed(13);
    float *x = unaligned(310), *ref = unaligned(310), *add = unaligned(310);
    uint8_t *keep = malloc(320);
    ck_assert_ptr_nonnull(keep);
    for (size_t n = 0; n <= 300; n++) {
        float s = test_rng_uniform(&g, -3.0f, 3.0f);
        /* scale: exact (one rounding). Sentinel past n. */
        test_fill(&g, x, n + 8, -10.0f, 10.0f);
        memcpy(ref, x, (n + 8) * sizeof(float));
        for (size_t i = 0; i < n; i++)
            ref[i] = x[i] * s;
        k->f32_scale(x, s, n);
        FAIL_IF(!(memcmp(x, ref, (n + 8) * sizeof(float)) == 0), "%s: scale n=%zu", k->name, n);

        /* scale_add, with and without the additive row (which may hold -inf). */
        test_fill(&g, x, n + 8, -10.0f, 10.0f);
        test_fill(&g, add, n + 8, -4.0f, 4.0f);
        for (size_t i = 2; i < n; i += 7)
            add[i] = -INFINITY;
        memcpy(ref, x, (n + 8) * sizeof(float));
        for (size_t i = 0; i < n; i++) {
            float t = x[i] * s;
            ref[i] = t + add[i];
        }
        k->f32_scale_add(x, s, add, n);
        FAIL_IF(!(memcmp(x, ref, (n + 8) * sizeof(float)) == 0), "%s: scale_add n=%zu",
                      k->name, n);
        memcpy(ref, x, (n + 8) * sizeof(float));
        for (size_t i = 0; i < n; i++)
            ref[i] = x[i] * s;
        k->f32_scale_add(x, s, NULL, n);
        FAIL_IF(!(memcmp(x, ref, (n + 8) * sizeof(float)) == 0), "%s: scale_add NULL n=%zu",
                      k->name, n);

        /* mask_u8: any nonzero byte keeps (not only 1). Unaligned byte pointer too. */
        uint8_t *kp = keep + 1;
        for (size_t i = 0; i < n + 8; i++) {
            uint32_t v = (uint32_t)test_rng_uniform(&g, 0.0f, 4.0f);
            kp[i] = (uint8_t)(v == 0 ? 0 : v == 1 ? 1 : v == 2 ? 255 : 0x80);
        }
        test_fill(&g, x, n + 8, -10.0f, 10.0f);
        memcpy(ref, x, (n + 8) * sizeof(float));
        for (size_t i = 0; i < n; i++)
            ref[i] = kp[i] ? x[i] : -INFINITY;
        k->f32_mask_u8(x, kp, n);
        FAIL_IF(!(memcmp(x, ref, (n + 8) * sizeof(float)) == 0), "%s: mask_u8 n=%zu", k->name,
                      n);
    }
    free(keep);
    release(x);
    release(ref);
    release(add);
}
END_TEST

/* ------------------------------------------------------------- GEMM, pack */

START_TEST(test_table)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    ck_assert_int_eq(k->isa, _i);
    ck_assert_str_eq(k->name, mha_isa_name((mha_isa)_i));
    ck_assert(k->gemm_mr >= 1 && k->gemm_nr >= 1);
    ck_assert(k->f32_exp && k->f32_rowmax && k->f32_exp_sub_sum && k->f32_scale && k->f32_gemm &&
              k->f32_pack_b_nk && k->f32_pack_b_kn && k->f32_scale_add && k->f32_mask_u8 && k->f32_dot_rows &&
              k->f32_axpy_rows && k->f32_tanh && k->f32_dot_rows_nx && k->f32_axpy_rows_nx &&
              k->f32_gemm_pa && k->f32_pack_a);
    ck_assert_ptr_eq(mha_kernels_active(), mha_kernels_for(mha_active_isa()));
    ck_assert_ptr_nonnull(mha_kernels_for(MHA_ISA_SCALAR));
}
END_TEST

START_TEST(test_gemm)
{
    const mha_kernels *kt = table(_i);
    if (!kt)
        return;
    const size_t mr = kt->gemm_mr, nr = kt->gemm_nr;
    static const size_t ks[] = {0, 1, 2, 3, 7, 16, 17, 64, 129, 257};
    const size_t kmax = 257;
    test_rng g = test_rng_seed(14);
    const size_t lda = kmax + 3, ldc = nr + 5;
    float *a = unaligned(mr * lda), *b = unaligned(kmax * nr), *bias = unaligned(nr);
    float *ap = unaligned(mr * kmax);
    float *c = unaligned(mr * ldc), *c0 = unaligned(mr * ldc);
    test_fill(&g, a, mr * lda, -1.0f, 1.0f);
    test_fill(&g, bias, nr, -1.0f, 1.0f);
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        const size_t k = ks[ki];
        for (size_t n = 1; n <= nr; n++) {
            /* A packed panel: zero past n, as the packers write it. */
            for (size_t p = 0; p < k; p++)
                for (size_t j = 0; j < nr; j++)
                    b[p * nr + j] = j < n ? test_rng_uniform(&g, -1.0f, 1.0f) : 0.0f;
            for (size_t m = 1; m <= mr; m++)
                for (int mode = 0; mode < 8; mode++) {
                    /* mode & 4: the packed-A entry on A's first m rows, the panel's
                     * rows past m filled with garbage (read, never stored). */
                    const int acc = mode & 1, packed = mode & 4;
                    const float *bs = (mode & 2) ? bias : NULL;
                    test_fill(&g, c0, mr * ldc, -1.0f, 1.0f);
                    memcpy(c, c0, mr * ldc * sizeof(float));
                    if (packed) {
                        for (size_t p = 0; p < k; p++)
                            for (size_t r = 0; r < mr; r++)
                                ap[p * mr + r] = r < m ? a[r * lda + p] : 1e30f;
                        kt->f32_gemm_pa(m, n, k, ap, b, c, ldc, bs, acc);
                    } else {
                        kt->f32_gemm(m, n, k, a, lda, b, c, ldc, bs, acc);
                    }
                    for (size_t r = 0; r < mr; r++)
                        for (size_t j = 0; j < ldc; j++) {
                            float got = c[r * ldc + j];
                            if (r >= m || j >= n) {
                                FAIL_IF(!(got == c0[r * ldc + j]),
                                              "%s: gemm%s m=%zu n=%zu k=%zu touched C[%zu][%zu]",
                                              kt->name, packed ? "_pa" : "", m, n, k, r, j);
                                continue;
                            }
                            double ref = 0.0, mag = 0.0;
                            for (size_t p = 0; p < k; p++) {
                                double t = (double)a[r * lda + p] * b[p * nr + j];
                                ref += t;
                                mag += fabs(t);
                            }
                            if (acc) {
                                ref += c0[r * ldc + j];
                                mag += fabs(c0[r * ldc + j]);
                            }
                            if (bs) {
                                ref += bs[j];
                                mag += fabs(bs[j]);
                            }
                            double tol = (double)(k + 3) * 0x1p-23 * mag + 1e-30;
                            FAIL_IF(!(fabs(got - ref) <= tol),
                                          "%s: gemm%s m=%zu n=%zu k=%zu acc=%d bias=%d C[%zu][%zu] "
                                          "= %.9g, expected %.9g",
                                          kt->name, packed ? "_pa" : "", m, n, k, acc, bs != NULL, r,
                                          j, got, ref);
                        }
                }
        }
    }
    release(ap);
    release(a);
    release(b);
    release(bias);
    release(c);
    release(c0);
}
END_TEST

START_TEST(test_pack)
{
    const mha_kernels *kt = table(_i);
    if (!kt)
        return;
    const size_t nr = kt->gemm_nr;
    static const size_t ks[] = {0, 1, 5, 17, 64};
    test_rng g = test_rng_seed(15);
    const size_t nmax = 3 * nr + 3, kmax = 64, ld = 70 + nr * 3;
    float *src = unaligned(ld * (nmax > kmax ? nmax : kmax));
    const size_t cap = ((nmax + nr - 1) / nr) * kmax * nr + 16;
    float *dst = unaligned(cap), *ref = unaligned(cap);
    test_fill(&g, src, ld * (nmax > kmax ? nmax : kmax), -5.0f, 5.0f);
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        const size_t k = ks[ki];
        for (size_t n = 1; n <= nmax; n++) {
            const size_t panels = (n + nr - 1) / nr, total = panels * k * nr;
            for (int kind = 0; kind < 2; kind++) {
                for (size_t i = 0; i < cap; i++)
                    dst[i] = ref[i] = NAN;
                for (size_t q = 0; q < panels; q++)
                    for (size_t p = 0; p < k; p++)
                        for (size_t jj = 0; jj < nr; jj++) {
                            size_t j = q * nr + jj;
                            float v = 0.0f;
                            if (j < n)
                                v = kind == 0 ? src[j * ld + p] : src[p * ld + j];
                            ref[q * k * nr + p * nr + jj] = v;
                        }
                if (kind == 0)
                    kt->f32_pack_b_nk(n, k, src, ld, dst);
                else
                    kt->f32_pack_b_kn(n, k, src, ld, dst);
                for (size_t i = 0; i < total; i++)
                    FAIL_IF(!(dst[i] == ref[i]), "%s: pack_b_%s n=%zu k=%zu: element %zu",
                                  kt->name, kind == 0 ? "nk" : "kn", n, k, i);
                for (size_t i = total; i < cap; i++)
                    FAIL_IF(!(isnan(dst[i])), "%s: pack_b_%s n=%zu k=%zu wrote past %zu",
                                  kt->name, kind == 0 ? "nk" : "kn", n, k, total);
            }
        }
    }
    release(src);
    release(dst);
    release(ref);
}
END_TEST

/* The packers and the microkernel together: C = A W^T for a W [n, k] of several
 * panels, as the projections use them. */
START_TEST(test_pack_gemm)
{
    const mha_kernels *kt = table(_i);
    if (!kt)
        return;
    const size_t mr = kt->gemm_mr, nr = kt->gemm_nr, m = 2 * mr + 1, n = 2 * nr + 3, k = 37;
    test_rng g = test_rng_seed(16);
    float *a = test_random(&g, m * k, -1.0f, 1.0f), *w = test_random(&g, n * k, -1.0f, 1.0f);
    size_t panels = (n + nr - 1) / nr;
    float *bp = unaligned(panels * k * nr), *c = unaligned(m * n), *ref = unaligned(m * n);
    kt->f32_pack_b_nk(n, k, w, k, bp);
    for (size_t r0 = 0; r0 < m; r0 += mr)
        for (size_t q = 0; q < panels; q++) {
            size_t mm = m - r0 < mr ? m - r0 : mr, nn = n - q * nr < nr ? n - q * nr : nr;
            kt->f32_gemm(mm, nn, k, a + r0 * k, k, bp + q * k * nr, c + r0 * n + q * nr, n, NULL,
                         0);
        }
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0.0;
            for (size_t p = 0; p < k; p++)
                s += (double)a[i * k + p] * w[j * k + p];
            ref[i * n + j] = (float)s;
        }
    ck_assert_close(c, ref, m * n, 1e-5, "pack_b_nk + gemm");
    free(a);
    free(w);
    release(bp);
    release(c);
    release(ref);
}
END_TEST

/* Packing A: every micro-panel holds its mr rows k-major, rows past m zero, and
 * nothing is written past ceil(m / mr) * k * mr floats. */
START_TEST(test_pack_a)
{
    const mha_kernels *kt = table(_i);
    if (!kt)
        return;
    const size_t mr = kt->gemm_mr;
    static const size_t ks[] = {1, 5, 17, 64};
    const size_t mmax = 3 * mr + 1, kmax = 64, ld = 1024 + 3, guard = 16;
    test_rng g = test_rng_seed(17);
    float *src = test_random(&g, mmax * ld, -1.0f, 1.0f);
    float *dst = unaligned(mmax * kmax + mr * kmax + guard);
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
        for (size_t m = 1; m <= mmax; m++) {
            const size_t k = ks[ki], panels = (m + mr - 1) / mr, total = panels * k * mr;
            for (size_t i = 0; i < total + guard; i++)
                dst[i] = -7.0f;
            kt->f32_pack_a(m, k, src, ld, dst);
            for (size_t i = 0; i < panels; i++)
                for (size_t p = 0; p < k; p++)
                    for (size_t r = 0; r < mr; r++) {
                        size_t row = i * mr + r;
                        float want = row < m ? src[row * ld + p] : 0.0f;
                        FAIL_IF(!(dst[i * k * mr + p * mr + r] == want),
                                "%s: pack_a m=%zu k=%zu panel %zu A[%zu][%zu]", kt->name, m, k, i, r, p);
                    }
            for (size_t i = total; i < total + guard; i++)
                FAIL_IF(!(dst[i] == -7.0f), "%s: pack_a m=%zu k=%zu wrote past the end", kt->name, m, k);
        }
    free(src);
    release(dst);
}
END_TEST

/* The projection driver on one table, C[m, n] = A W^T + bias over k, A rows lda
 * apart; job 1 takes the last 9 rows of A at stride 1024 (4 KiB). float64
 * agreement, and the same bits on 1 and 2 threads (block sizes never depend on the
 * thread count). */
static void check_gemm_driver(const mha_kernels *kt, int64_t m, int64_t n, int64_t k, int64_t lda,
                              uint64_t seed)
{
    const int64_t ldc = n + 3, nr = (int64_t)kt->gemm_nr;
    test_rng g = test_rng_seed(seed);
    float *a = test_random(&g, (size_t)(m * lda + 1024), -1.0f, 1.0f);
    float *w = test_random(&g, (size_t)(n * k), -1.0f, 1.0f), *bias = test_random(&g, (size_t)n, -1.0f, 1.0f);
    const int64_t panels = (n + nr - 1) / nr;
    float *bp = unaligned((size_t)(panels * k * nr));
    kt->f32_pack_b_nk((size_t)n, (size_t)k, w, (size_t)k, bp);
    mha_packed pw = {bp, bias, n, k};
    float *c1 = unaligned((size_t)(m * ldc)), *c2 = unaligned((size_t)(m * ldc));
    float *pack = unaligned(2 * mha_gemm_pack_floats(kt, m, k));
    for (int threads = 1; threads <= 2; threads++) {
        float *c = threads == 1 ? c1 : c2;
        mha_gemm_job jobs[2] = {{a, lda, &pw, c, ldc, m - 9}, {a + 1024, 1024, &pw, c + (m - 9) * ldc, ldc, 9}};
        mha_gemm_run(kt, jobs, 2, threads, pack);
    }
    for (int64_t i = 0; i < m; i++) {
        const float *ar = i < m - 9 ? a + i * lda : a + 1024 + (i - (m - 9)) * 1024;
        for (int64_t j = 0; j < n; j++) {
            double ref = bias[j], mag = fabs(bias[j]);
            for (int64_t p = 0; p < k; p++) {
                ref += (double)ar[p] * w[j * k + p];
                mag += fabs((double)ar[p] * w[j * k + p]);
            }
            float got = c1[i * ldc + j];
            FAIL_IF(!(fabs(got - ref) <= (double)(k + 3) * 0x1p-23 * mag),
                    "%s: driver %lldx%lldx%lld C[%lld][%lld] = %.9g, expected %.9g", kt->name,
                    (long long)m, (long long)n, (long long)k, (long long)i, (long long)j, got, ref);
            FAIL_IF(!(memcmp(&got, &c2[i * ldc + j], sizeof got) == 0),
                    "%s: driver %lldx%lldx%lld C[%lld][%lld] differs between 1 and 2 threads",
                    kt->name, (long long)m, (long long)n, (long long)k, (long long)i, (long long)j);
        }
    }
    free(a);
    free(w);
    free(bias);
    release(bp);
    release(c1);
    release(c2);
    release(pack);
}

/* Several row blocks and k blocks (one column block); then few rows against a W
 * wider than a column block (the kc-slices of a block's panels fill a quarter of
 * L2: at most 512 columns at k = 600 with 2 MiB), so the kernel walks several
 * column blocks, the last one ragged, and a last panel narrower than nr. */
START_TEST(test_gemm_driver)
{
    const mha_kernels *kt = table(_i);
    if (!kt)
        return;
    check_gemm_driver(kt, 530, 70, 1100, 1024 + 1100, 18);
    check_gemm_driver(kt, 40, 1100, 600, 600, 19);
}
END_TEST

/* ------------------------------------------------------- decoding kernels */

/* Shapes of the decoding kernels: m rows (keys) of n (the head dim), every tail of
 * every tile (rows by 4 and 8, n by 4, 8 and 16, y in registers up to 128), rows
 * strided (ld = n, n + 3) or all the same memory (ld = 0). */
static const size_t dec_ms[] = {0, 1, 2, 3, 5, 8, 9, 31, 100};
static const size_t dec_ns[] = {1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 80, 96, 127,
                                128, 129, 256};
#define DEC_MMAX 100
#define DEC_NMAX 256
#define DEC_COUNT(a) (sizeof(a) / sizeof((a)[0]))
/* Sentinel past the outputs: a kernel writing there is caught. */
#define DEC_PAD 8

START_TEST(test_dot_rows)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    test_rng g = test_rng_seed(17);
    const size_t cap = DEC_MMAX * (DEC_NMAX + 3);
    float *rows = unaligned(cap), *x = unaligned(DEC_NMAX), *out = unaligned(DEC_MMAX + DEC_PAD);
    test_fill(&g, rows, cap, -2.0f, 2.0f);
    for (size_t ni = 0; ni < DEC_COUNT(dec_ns); ni++) {
        const size_t n = dec_ns[ni];
        test_fill(&g, x, n, -2.0f, 2.0f);
        const size_t lds[3] = {n, n + 3, 0};
        for (size_t li = 0; li < 3; li++) {
            const size_t ld = lds[li];
            for (size_t mi = 0; mi < DEC_COUNT(dec_ms); mi++) {
                const size_t m = dec_ms[mi];
                for (size_t r = 0; r < m + DEC_PAD; r++)
                    out[r] = NAN;
                k->f32_dot_rows(x, rows, ld, m, n, out);
                for (size_t r = 0; r < m; r++) {
                    const float *row = rows + r * ld;
                    double ref = 0.0, mag = 0.0;
                    for (size_t i = 0; i < n; i++) {
                        double t = (double)x[i] * row[i];
                        ref += t;
                        mag += fabs(t);
                    }
                    /* float32 accumulation: a rounding per term at most (2 ulp x n). */
                    double tol = (double)(n + 2) * 0x1p-23 * mag + 1e-30;
                    FAIL_IF(!(fabs(out[r] - ref) <= tol),
                            "%s: dot_rows m=%zu n=%zu ld=%zu: out[%zu] = %.9g, expected %.9g",
                            k->name, m, n, ld, r, out[r], ref);
                }
                for (size_t r = m; r < m + DEC_PAD; r++)
                    FAIL_IF(!isnan(out[r]), "%s: dot_rows m=%zu n=%zu ld=%zu wrote out[%zu]",
                            k->name, m, n, ld, r);
            }
        }
    }
    /* A NaN in a row reaches its score only. */
    const size_t n = 37, m = 11;
    rows[5 * n + 36] = NAN;
    k->f32_dot_rows(x, rows, n, m, n, out);
    for (size_t r = 0; r < m; r++)
        FAIL_IF(!(r == 5 ? isnan(out[r]) : isfinite(out[r])), "%s: dot_rows NaN row 5: out[%zu] = %g",
                k->name, r, out[r]);
    release(rows);
    release(x);
    release(out);
}
END_TEST

START_TEST(test_axpy_rows)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    test_rng g = test_rng_seed(18);
    const size_t cap = DEC_MMAX * (DEC_NMAX + 3);
    float *rows = unaligned(cap), *w = unaligned(DEC_MMAX);
    float *y = unaligned(DEC_NMAX + DEC_PAD), *y0 = unaligned(DEC_NMAX);
    test_fill(&g, rows, cap, -2.0f, 2.0f);
    for (size_t ni = 0; ni < DEC_COUNT(dec_ns); ni++) {
        const size_t n = dec_ns[ni];
        const size_t lds[3] = {n, n + 3, 0};
        for (size_t li = 0; li < 3; li++) {
            const size_t ld = lds[li];
            for (size_t mi = 0; mi < DEC_COUNT(dec_ms); mi++) {
                const size_t m = dec_ms[mi];
                /* Softmax-like weights (some exactly 0) and a nonzero y to add to. */
                test_fill(&g, w, m, 0.0f, 1.0f);
                for (size_t r = 1; r < m; r += 4)
                    w[r] = 0.0f;
                test_fill(&g, y0, n, -3.0f, 3.0f);
                memcpy(y, y0, n * sizeof(float));
                for (size_t i = n; i < n + DEC_PAD; i++)
                    y[i] = NAN;
                k->f32_axpy_rows(w, rows, ld, m, n, y);
                for (size_t i = 0; i < n; i++) {
                    double ref = y0[i], mag = fabs(y0[i]);
                    for (size_t r = 0; r < m; r++) {
                        double t = (double)w[r] * rows[r * ld + i];
                        ref += t;
                        mag += fabs(t);
                    }
                    double tol = (double)(m + 2) * 0x1p-23 * mag + 1e-30;
                    FAIL_IF(!(fabs(y[i] - ref) <= tol),
                            "%s: axpy_rows m=%zu n=%zu ld=%zu: y[%zu] = %.9g, expected %.9g",
                            k->name, m, n, ld, i, y[i], ref);
                }
                for (size_t i = n; i < n + DEC_PAD; i++)
                    FAIL_IF(!isnan(y[i]), "%s: axpy_rows m=%zu n=%zu ld=%zu wrote y[%zu]",
                            k->name, m, n, ld, i);
                if (m == 0)
                    continue;
                /* A NaN in a row of weight 0 still reaches y (0 * NaN = NaN), in its
                 * column only: first or last row, last column. */
                const size_t nr = (m * 7) % 2 ? m - 1 : 0;
                const size_t at = nr * ld + n - 1;
                const float keep_v = rows[at], keep_w = w[nr];
                rows[at] = NAN;
                w[nr] = 0.0f;
                memcpy(y, y0, n * sizeof(float));
                k->f32_axpy_rows(w, rows, ld, m, n, y);
                FAIL_IF(!isnan(y[n - 1]), "%s: axpy_rows m=%zu n=%zu ld=%zu: NaN in row %zu "
                        "with w = 0 hidden", k->name, m, n, ld, nr);
                for (size_t i = 0; i + 1 < n; i++)
                    FAIL_IF(!isfinite(y[i]), "%s: axpy_rows m=%zu n=%zu ld=%zu: NaN spread to "
                            "y[%zu]", k->name, m, n, ld, i);
                rows[at] = keep_v;
                w[nr] = keep_w;
            }
        }
    }
    release(rows);
    release(w);
    release(y);
    release(y0);
}
END_TEST

/* Several query rows at once: every row count of the tiles (4s, a last 3, 2 or 1),
 * rows of x and of the output strided; each result within float32 accumulation of
 * the float64 sum, nothing written between or past the output rows, and each row's
 * bits those of a call with that row alone (the grouping does not change them). */
static const size_t nx_counts[] = {1, 2, 3, 4, 5, 6, 7, 9};
static const size_t nx_ns[] = {1, 15, 16, 17, 63, 64, 65, 100, 128, 129, 200};
#define NX_MAX 9

START_TEST(test_dot_rows_nx)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    test_rng g = test_rng_seed(19);
    const size_t cap = DEC_MMAX * (DEC_NMAX + 3), ldx = DEC_NMAX + 1, ldo = DEC_MMAX + DEC_PAD;
    float *rows = unaligned(cap), *x = unaligned(NX_MAX * ldx);
    float *out = unaligned(NX_MAX * ldo), *one = unaligned(ldo);
    test_fill(&g, rows, cap, -2.0f, 2.0f);
    for (size_t ni = 0; ni < DEC_COUNT(nx_ns); ni++) {
        const size_t n = nx_ns[ni];
        test_fill(&g, x, NX_MAX * ldx, -2.0f, 2.0f);
        const size_t lds[3] = {n, n + 3, 0};
        for (size_t li = 0; li < 3; li++)
            for (size_t mi = 0; mi < DEC_COUNT(dec_ms); mi++)
                for (size_t ci = 0; ci < DEC_COUNT(nx_counts); ci++) {
                    const size_t ld = lds[li], m = dec_ms[mi], nx = nx_counts[ci];
                    for (size_t i = 0; i < NX_MAX * ldo; i++)
                        out[i] = NAN;
                    k->f32_dot_rows_nx(x, ldx, nx, rows, ld, m, n, out, ldo);
                    for (size_t r = 0; r < nx; r++) {
                        for (size_t j = 0; j < ldo; j++)
                            one[j] = NAN;
                        k->f32_dot_rows_nx(x + r * ldx, ldx, 1, rows, ld, m, n, one, ldo);
                        for (size_t j = 0; j < m; j++) {
                            const float *row = rows + j * ld, *xr = x + r * ldx;
                            double ref = 0.0, mag = 0.0;
                            for (size_t i = 0; i < n; i++) {
                                ref += (double)xr[i] * row[i];
                                mag += fabs((double)xr[i] * row[i]);
                            }
                            const double tol = (double)(n + 2) * 0x1p-23 * mag + 1e-30;
                            const float got = out[r * ldo + j];
                            FAIL_IF(!(fabs(got - ref) <= tol),
                                    "%s: dot_rows_nx nx=%zu m=%zu n=%zu ld=%zu: out[%zu][%zu] = %.9g, expected %.9g",
                                    k->name, nx, m, n, ld, r, j, got, ref);
                            FAIL_IF(memcmp(&got, &one[j], sizeof got) != 0,
                                    "%s: dot_rows_nx nx=%zu m=%zu n=%zu: row %zu key %zu is %.9g, alone %.9g",
                                    k->name, nx, m, n, r, j, got, one[j]);
                        }
                    }
                    for (size_t i = 0; i < NX_MAX * ldo; i++)
                        FAIL_IF(!((i / ldo < nx && i % ldo < m) || isnan(out[i])),
                                "%s: dot_rows_nx nx=%zu m=%zu n=%zu wrote out[%zu][%zu]", k->name, nx, m, n,
                                i / ldo, i % ldo);
                }
    }
    release(rows);
    release(x);
    release(out);
    release(one);
}
END_TEST

START_TEST(test_axpy_rows_nx)
{
    const mha_kernels *k = table(_i);
    if (!k)
        return;
    test_rng g = test_rng_seed(20);
    const size_t cap = DEC_MMAX * (DEC_NMAX + 3), ldw = DEC_MMAX + 1, ldy = DEC_NMAX + DEC_PAD;
    float *rows = unaligned(cap), *w = unaligned(NX_MAX * ldw);
    float *y = unaligned(NX_MAX * ldy), *y0 = unaligned(NX_MAX * ldy), *one = unaligned(ldy);
    test_fill(&g, rows, cap, -2.0f, 2.0f);
    for (size_t ni = 0; ni < DEC_COUNT(nx_ns); ni++) {
        const size_t n = nx_ns[ni];
        const size_t lds[3] = {n, n + 3, 0};
        for (size_t li = 0; li < 3; li++)
            for (size_t mi = 0; mi < DEC_COUNT(dec_ms); mi++)
                for (size_t ci = 0; ci < DEC_COUNT(nx_counts); ci++) {
                    const size_t ld = lds[li], m = dec_ms[mi], nx = nx_counts[ci];
                    test_fill(&g, w, NX_MAX * ldw, 0.0f, 1.0f);
                    for (size_t j = 1; j < NX_MAX * ldw; j += 4)
                        w[j] = 0.0f;
                    for (size_t i = 0; i < NX_MAX * ldy; i++)
                        y0[i] = i % ldy < n ? test_rng_uniform(&g, -3.0f, 3.0f) : NAN;
                    memcpy(y, y0, NX_MAX * ldy * sizeof(float));
                    k->f32_axpy_rows_nx(w, ldw, nx, rows, ld, m, n, y, ldy);
                    for (size_t r = 0; r < nx; r++) {
                        memcpy(one, y0 + r * ldy, ldy * sizeof(float));
                        k->f32_axpy_rows_nx(w + r * ldw, ldw, 1, rows, ld, m, n, one, ldy);
                        for (size_t i = 0; i < n; i++) {
                            double ref = y0[r * ldy + i], mag = fabs(ref);
                            for (size_t j = 0; j < m; j++) {
                                ref += (double)w[r * ldw + j] * rows[j * ld + i];
                                mag += fabs((double)w[r * ldw + j] * rows[j * ld + i]);
                            }
                            const double tol = (double)(m + 2) * 0x1p-23 * mag + 1e-30;
                            const float got = y[r * ldy + i];
                            FAIL_IF(!(fabs(got - ref) <= tol),
                                    "%s: axpy_rows_nx nx=%zu m=%zu n=%zu ld=%zu: y[%zu][%zu] = %.9g, expected %.9g",
                                    k->name, nx, m, n, ld, r, i, got, ref);
                            FAIL_IF(memcmp(&got, &one[i], sizeof got) != 0,
                                    "%s: axpy_rows_nx nx=%zu m=%zu n=%zu: y[%zu][%zu] is %.9g, alone %.9g",
                                    k->name, nx, m, n, r, i, got, one[i]);
                        }
                    }
                    for (size_t i = 0; i < NX_MAX * ldy; i++)
                        FAIL_IF(!((i / ldy < nx && i % ldy < n) ? !isnan(y[i]) : memcmp(&y[i], &y0[i], sizeof y[i]) == 0),
                                "%s: axpy_rows_nx nx=%zu m=%zu n=%zu: y[%zu][%zu] wrong or written", k->name, nx,
                                m, n, i / ldy, i % ldy);
                }
    }
    /* A NaN in a key row of weight 0 reaches every query row, in its column only. */
    const size_t n = 70, m = 9, nx = 5;
    for (size_t r = 0; r < nx; r++)
        w[r * ldw + 6] = 0.0f;
    rows[6 * n + 69] = NAN;
    for (size_t i = 0; i < nx * ldy; i++)
        y[i] = 1.0f;
    k->f32_axpy_rows_nx(w, ldw, nx, rows, n, m, n, y, ldy);
    for (size_t r = 0; r < nx; r++)
        for (size_t i = 0; i < n; i++)
            FAIL_IF(!(i == n - 1 ? isnan(y[r * ldy + i]) : isfinite(y[r * ldy + i])),
                    "%s: axpy_rows_nx NaN in key row 6 (w = 0): y[%zu][%zu] = %g", k->name, r, i, y[r * ldy + i]);
    release(rows);
    release(w);
    release(y);
    release(y0);
    release(one);
}
END_TEST

Suite *suite_kernels(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("tables");
    /* The full exp sweep takes a few seconds, more on a loaded machine: above Check's
     * 4 s default when CK_DEFAULT_TIMEOUT is not set. */
    tcase_set_timeout(tc, 300);
    const int lo = MHA_ISA_SCALAR, hi = MHA_ISA_NEON + 1;
    tcase_add_loop_test(tc, test_table, lo, hi);
    tcase_add_loop_test(tc, test_exp_special, lo, hi);
    tcase_add_loop_test(tc, test_exp_edges, lo, hi);
    tcase_add_loop_test(tc, test_exp_sweep, lo, hi);
    tcase_add_loop_test(tc, test_tanh_special, lo, hi);
    tcase_add_loop_test(tc, test_tanh_sizes, lo, hi);
    tcase_add_loop_test(tc, test_tanh_sweep, lo, hi);
    tcase_add_loop_test(tc, test_rowmax, lo, hi);
    tcase_add_loop_test(tc, test_exp_sub_sum, lo, hi);
    tcase_add_loop_test(tc, test_exp_sub_sum_flush, lo, hi);
    tcase_add_loop_test(tc, test_scale_and_masks, lo, hi);
    tcase_add_loop_test(tc, test_gemm, lo, hi);
    tcase_add_loop_test(tc, test_pack, lo, hi);
    tcase_add_loop_test(tc, test_pack_gemm, lo, hi);
    tcase_add_loop_test(tc, test_pack_a, lo, hi);
    tcase_add_loop_test(tc, test_gemm_driver, lo, hi);
    tcase_add_loop_test(tc, test_dot_rows, lo, hi);
    tcase_add_loop_test(tc, test_axpy_rows, lo, hi);
    tcase_add_loop_test(tc, test_dot_rows_nx, lo, hi);
    tcase_add_loop_test(tc, test_axpy_rows_nx, lo, hi);
    suite_add_tcase(s, tc);
    return s;
}
