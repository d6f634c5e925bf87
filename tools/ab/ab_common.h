/* Helpers of the in-process A/B programs (ab_attention.c, ab_forward.c). */
#ifndef MHA_AB_COMMON_H
#define MHA_AB_COMMON_H

#include <math.h>
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

/* Times call(0, ctx) (build A) and call(1, ctx) (build B) alternately: in each of
 * `rounds` rounds, each side repeats its call for AB_SIDE_SECONDS. Fills best[2]
 * (each side's fastest round, seconds per call) and ratio[0..rounds), the sorted
 * per-round time ratios B / A. Returns the first status that is not 0 (the calls
 * stop there), else 0. */
static inline int ab_alternate(int rounds, int (*call)(int which, void *ctx), void *ctx, double best[2],
                               double ratio[AB_MAX_ROUNDS])
{
    double t[2];
    best[0] = best[1] = 1e30;
    for (int r = 0; r < rounds; r++) {
        for (int which = 0; which < 2; which++) {
            int calls = 0, s;
            const double t0 = ab_now();
            do {
                if ((s = call(which, ctx)) != 0)
                    return s;
                calls++;
            } while (ab_now() - t0 < AB_SIDE_SECONDS);
            t[which] = (ab_now() - t0) / calls;
            best[which] = t[which] < best[which] ? t[which] : best[which];
        }
        ratio[r] = t[1] / t[0];
    }
    qsort(ratio, (size_t)rounds, sizeof *ratio, ab_by_value);
    return 0;
}

/* The largest |a[i] - b[i]| over n floats. */
static inline double ab_max_diff(const float *a, const float *b, size_t n)
{
    double diff = 0.0;
    for (size_t i = 0; i < n; i++)
        diff = fmax(diff, fabs((double)a[i] - (double)b[i]));
    return diff;
}

/* The exit status: 1 when AB_EXPECT_SAME=1 is set and the outputs differ (the
 * test that runs one build against itself), else 0. */
static inline int ab_status(double diff)
{
    const char *same = getenv("AB_EXPECT_SAME");
    return same && same[0] == '1' && diff != 0.0;
}

#endif
