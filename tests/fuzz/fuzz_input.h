/* Shared by the libFuzzer targets: reading choices from the input bytes, and a
 * deterministic generator for the data they seed. */
#ifndef MHA_FUZZ_INPUT_H
#define MHA_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

typedef struct bytes {
    const uint8_t *p;
    size_t n;
} bytes;

/* The next byte modulo range (range 0: the byte itself); 0 once the input ends. */
static inline unsigned take(bytes *b, unsigned range)
{
    unsigned v = 0;
    if (b->n) {
        v = b->p[0];
        b->p++;
        b->n--;
    }
    return range ? v % range : v;
}

/* xorshift64 */
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

#endif
