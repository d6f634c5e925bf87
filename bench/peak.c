/* Machine-limit drivers (OpenMP) and the baseline-ISA loops. */
#include "peak.h"

#include <omp.h>
#include <time.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Sinks the optimizer cannot see through. */
volatile float mhab_sink;
static volatile float mhab_mul_src = 0.99999f, mhab_add_src = 1e-6f;

/* Baseline ISA: plain C, 48 independent multiply-add chains. On x86-64 the
 * compiler auto-vectorizes them into SSE mulps/addps (no FMA in the baseline),
 * which is the ceiling of the library's scalar table compiled the same way. */
#define SCALAR_ACC 48
double mhab_fma_scalar(long iters)
{
    float acc[SCALAR_ACC];
    const float m = mhab_mul_src, a = mhab_add_src;
    for (int j = 0; j < SCALAR_ACC; j++)
        acc[j] = (float)j * 1e-3f;
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < SCALAR_ACC; j++)
            acc[j] = acc[j] * m + a;
    float s = 0.0f;
    for (int j = 0; j < SCALAR_ACC; j++)
        s += acc[j];
    mhab_sink = s;
    return 2.0 * SCALAR_ACC * (double)iters;
}

float mhab_read_scalar(const float *x, size_t n)
{
    float acc[16] = {0};
    for (size_t i = 0; i < n; i += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += x[i + (size_t)j];
    float s = 0.0f;
    for (int j = 0; j < 16; j++)
        s += acc[j];
    return s;
}

int mhab_cpu_has(const char *isa)
{
    if (strcmp(isa, "scalar") == 0)
        return 1;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (strcmp(isa, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(isa, "avx512") == 0)
        return __builtin_cpu_supports("avx512f");
#endif
#if defined(__aarch64__)
    if (strcmp(isa, "neon") == 0)
        return 1; /* Advanced SIMD is baseline on AArch64 */
#endif
    return 0;
}

static double thread_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Wall-clock GFLOP/s; *cpu_rate gets the sum over threads of flops / thread CPU time. */
static double run_fma(mhab_fma_fn fn, int threads, long iters, double *cpu_rate)
{
    double t0 = 0.0, t1 = 0.0, flops = 0.0, rate = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : flops, rate)
    {
#pragma omp barrier
        if (omp_get_thread_num() == 0)
            t0 = omp_get_wtime();
        double c0 = thread_cpu_seconds();
        double f = fn(iters);
        double c = thread_cpu_seconds() - c0;
        flops += f;
        rate += c > 0 ? f / c * 1e-9 : 0.0;
#pragma omp barrier
        if (omp_get_thread_num() == 0)
            t1 = omp_get_wtime();
    }
    *cpu_rate = rate;
    return t1 > t0 ? flops / (t1 - t0) * 1e-9 : 0.0;
}

double mhab_measure_fma(mhab_fma_fn fn, int threads, double seconds, int reps, double *wall)
{
    /* Calibrate on one thread until a run takes at least 2 ms. */
    long iters = 1 << 12;
    for (;;) {
        double t0 = omp_get_wtime();
        fn(iters);
        double t = omp_get_wtime() - t0;
        if (t >= 2e-3 || iters > (1L << 40)) {
            iters = (long)((double)iters * seconds / (t > 1e-9 ? t : 1e-9)) + 1;
            break;
        }
        iters *= 4;
    }
    double best = 0.0, best_wall = 0.0;
    for (int r = 0; r < reps; r++) {
        double cpu = 0.0, g = run_fma(fn, threads, iters, &cpu);
        if (g > best_wall)
            best_wall = g;
        if (cpu > best)
            best = cpu;
    }
    if (wall)
        *wall = best_wall;
    return best;
}

float *mhab_alloc_read_buffer(size_t n, int threads)
{
    float *buf = aligned_alloc(64, n * sizeof(float));
    if (!buf)
        return NULL;
    size_t chunk = n / (size_t)threads;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int t = 0; t < threads; t++) {
        float *p = buf + (size_t)t * chunk;
        size_t len = t == threads - 1 ? n - (size_t)t * chunk : chunk;
        for (size_t i = 0; i < len; i++)
            p[i] = (float)(i & 1023) * 1e-6f;
    }
    return buf;
}

double mhab_measure_read(mhab_read_fn fn, const float *buf, size_t n, int threads, int reps, double *wall)
{
    size_t chunk = (n / (size_t)threads) & ~(size_t)127;
    const double bytes = (double)chunk * sizeof(float);
    double best = 0.0, best_wall = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = 0.0, t1 = 0.0, rate = 0.0;
        float s = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : s, rate)
        {
            int t = omp_get_thread_num();
#pragma omp barrier
            if (t == 0)
                t0 = omp_get_wtime();
            double c0 = thread_cpu_seconds();
            s += fn(buf + (size_t)t * chunk, chunk);
            double c = thread_cpu_seconds() - c0;
            rate += c > 0 ? bytes / c * 1e-9 : 0.0;
#pragma omp barrier
            if (t == 0)
                t1 = omp_get_wtime();
        }
        mhab_sink = s;
        double g = bytes * (double)threads / (t1 - t0) * 1e-9;
        if (g > best_wall)
            best_wall = g;
        if (rate > best)
            best = rate;
    }
    if (wall)
        *wall = best_wall;
    return best;
}
