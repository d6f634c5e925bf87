/* Helpers of the in-process A/B programs (ab_attention.c, ab_forward.c). */
#ifndef MHA_AB_COMMON_H
#define MHA_AB_COMMON_H

#include <stdlib.h>
#include <time.h>

#define AB_MAX_ROUNDS 100
#define AB_SIDE_SECONDS 0.15 /* each side's calls per round */

static inline double ab_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline int ab_by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* n floats in [-1, 1), the same for the same state. */
static inline float *ab_random_floats(size_t n, unsigned *state)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; x && i < n; i++) {
        *state = *state * 1103515245u + 12345u;
        x[i] = (float)((*state >> 9) & 1023) / 512.0f - 1.0f;
    }
    return x;
}

/* The per-round ratios t[1][r] / t[0][r], sorted into ratio[0..rounds). */
static inline void ab_ratios(double t[2][AB_MAX_ROUNDS], int rounds, double *ratio)
{
    for (int r = 0; r < rounds; r++)
        ratio[r] = t[1][r] / t[0][r];
    qsort(ratio, (size_t)rounds, sizeof *ratio, ab_by_value);
}

#endif
