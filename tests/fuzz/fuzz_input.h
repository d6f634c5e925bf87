/* Shared by the libFuzzer targets: reading choices from the input bytes, and a
 * deterministic generator for the data they seed. */
#ifndef MHA_FUZZ_INPUT_H
#define MHA_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "../rng.h" /* rng_next, rng_float, rng_permutation */

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


#endif
