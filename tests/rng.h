/* A small deterministic generator (xorshift64) and the permutations built from
 * it, shared by the libFuzzer targets and the bench (C and C++): the same
 * shuffle of cache rows and block pools wherever one is needed. */
#ifndef MHA_TEST_RNG_H
#define MHA_TEST_RNG_H

#include <stdint.h>

/* xorshift64; *s must not be 0. */
static inline uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Uniform in [-1, 1). */
static inline float rng_float(uint64_t *s)
{
    return (float)((double)(rng_next(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* x[0..n) = a random permutation of 0..n-1 (Fisher-Yates). */
static inline void rng_permutation(int32_t *x, int64_t n, uint64_t *s)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (int32_t)i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next(s) % (uint64_t)(i + 1));
        int32_t t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

#endif
