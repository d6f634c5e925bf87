/* Reading K and V rows in place for decoding (engine/flash.c, engine/serve_attend.c):
 * software prefetch of rows ahead, and the copy of a shared block to a contiguous
 * buffer when its rows are strided. */
#include <string.h>

#include "internal.h"

/* Prefetches rows [0, m) of n floats at stride ld into L2: decoding reads K and
 * V rows in place, and with token-major caches ([B, L, G, d], rows G*d floats
 * apart, often 4 KiB) every row starts a new page, where the hardware
 * prefetchers stop. */
static void prefetch_rows(const float *rows, int64_t ld, int64_t m, int64_t n)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t i = 0; i < n; i += 16)
            __builtin_prefetch(rows + r * ld + i, 0, 1); /* 1: into L2, not L1 */
}

/* Share `part` of `parts` of the m rows at `rows`, prefetched. */
void mha_prefetch_share(const float *rows, int64_t ld, int64_t m, int64_t n, int64_t part,
                        int64_t parts)
{
    int64_t lo = m * part / parts, hi = m * (part + 1) / parts;
    prefetch_rows(rows + lo * ld, ld, hi - lo, n);
}

/* The m rows of n floats at src (stride ld) as every query row of a group will
 * read them: in place when contiguous or read once, else copied to buf (stride
 * n). Rows a multiple of 4 KiB apart all fall in the same few L1 sets, so a
 * block read in place by several rows would come from L2 every time. */
const float *mha_block_rows(const float *src, int64_t ld, int64_t m, int64_t n, bool shared,
                            float *buf, int64_t *ld_out)
{
    *ld_out = ld;
    if (!shared || ld == n)
        return src;
    for (int64_t r = 0; r < m; r++)
        memcpy(buf + r * n, src + r * ld, (size_t)n * sizeof(float));
    *ld_out = n;
    return buf;
}

