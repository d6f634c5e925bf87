/*
 * Machine limits measured by the bench at start-up: an FMA-bound loop per ISA
 * and a read-bandwidth loop. Each ISA's loop lives in its own translation unit
 * compiled with that ISA's flags (peak_avx2.c, peak_avx512.c, peak_neon.c); the
 * baseline one (plain C, compiled with the project's normal flags plus -O3) and
 * the OpenMP drivers live in peak.c.
 */
#ifndef MHA_BENCH_PEAK_H
#define MHA_BENCH_PEAK_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One thread's FMA-bound loop: `iters` rounds over independent accumulators.
 * Returns the floating-point operations it did (an FMA counts 2). */
typedef double (*mhab_fma_fn)(long iters);
/* Sum of x[0..n), n a multiple of 128: one streaming read. */
typedef float (*mhab_read_fn)(const float *x, size_t n);

double mhab_fma_scalar(long iters);
float mhab_read_scalar(const float *x, size_t n);
#if defined(MHAB_HAVE_AVX2)
double mhab_fma_avx2(long iters);
float mhab_read_avx2(const float *x, size_t n);
#endif
#if defined(MHAB_HAVE_AVX512)
double mhab_fma_avx512(long iters);
float mhab_read_avx512(const float *x, size_t n);
#endif
#if defined(MHAB_HAVE_NEON)
double mhab_fma_neon(long iters);
float mhab_read_neon(const float *x, size_t n);
#endif

/* 1 if this CPU can run the loops of an ISA ("avx2", "avx512", "neon"; "scalar" is always 1). */
int mhab_cpu_has(const char *isa);

/* GFLOP/s of fn run by `threads` threads at once (each runs it for about `seconds`),
 * best of `reps` runs: the sum over threads of flops / that thread's CPU time, which
 * other processes on a shared machine do not lower. *wall (if not NULL) gets the
 * best wall-clock figure, which they do. Equal on an idle machine. */
double mhab_measure_fma(mhab_fma_fn fn, int threads, double seconds, int reps, double *wall);

/* A buffer of n floats (n a multiple of 128 * threads), first touched by `threads`
 * threads the way the read loop later splits it. NULL on failure; free with free(). */
float *mhab_alloc_read_buffer(size_t n, int threads);
/* GB/s of reading buf (n floats) split evenly over `threads`; best of `reps`;
 * per-thread CPU time based, *wall as for mhab_measure_fma. */
double mhab_measure_read(mhab_read_fn fn, const float *buf, size_t n, int threads, int reps, double *wall);

#ifdef __cplusplus
}
#endif

#endif /* MHA_BENCH_PEAK_H */
