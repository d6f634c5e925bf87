/*
 * Decoding, one task (engine/flash.c's direct path, engine/serve_attend.c's decode
 * items): a range of keys of one sequence for a span of kv heads and every query
 * row of their heads, K and V read where they lie (packing them would cost as much
 * as the attention).
 *
 * The keys go in blocks of DECODE_BLOCK, each read for all the span's heads in
 * turn: a token-major cache ([B, L, G, d], or a paged block [G, bs, d]) holds a
 * token's heads side by side, so tasks of one kv head each would read every row
 * 512 B at a time, 4 KiB apart, from DRAM pages that the other heads' tasks open
 * again later. A head's query rows take the block at once (kernels.h's
 * f32_*_rows_nx, each K and V row loaded once for all of them: about 2x the
 * in-cache rate of a row at a time on an Intel Xeon, and a strided block need not
 * stay in L1, where its rows fall into a few sets). The block AHEAD_BYTES on is
 * prefetched into L2 in address order, in shares between the kernel calls: memory
 * stays busy while the rows read the current block from L1 or L2, and the hardware
 * prefetchers, which stop at page boundaries and need to see a stream first, are
 * not relied on (without it the decode ran at half the speed on AMD Zen 4), except
 * for token-major blocks on Intel cores (see mha_decode_keys). A
 * block may lie in several runs (paged caches: a run per cache block), each read
 * in place. Chunks of 1024 keys beat 256 and 512 by 5-20% (fewer task starts,
 * each a prefetch pipeline to fill).
 */
#include <math.h>
#include <string.h>

#include "internal.h"

/* Keys per block: few enough that a head's K and V blocks stay in L2 between
 * their prefetch and their use, and a fixed size, so that every row's arithmetic
 * is the same whatever the span, the layout or the thread count. */
#define DECODE_BLOCK 32
/* Runs a block may lie in: blocks start at multiples of 32 keys from a chunk's
 * start (a multiple of MHA_DECODE_CHUNK), and cache blocks hold a multiple of 16. */
#define MAX_RUNS (DECODE_BLOCK / 16)
/* Bytes of K the prefetches run ahead of the block being read, at least one block:
 * enough to cover memory latency, not so many that lines fetched early are
 * evicted before their turn. */
#define AHEAD_BYTES (32 << 10)
/* Pieces of a block's keys per kernel call, with a prefetch share before each:
 * spread out, the prefetches do not stall on a full miss queue. */
#define PIECES 4

static size_t aligned(int64_t n)
{
    return mha_round_up((size_t)n * sizeof(float)) / sizeof(float);
}

int64_t mha_decode_span(int64_t kv_heads, int64_t rows_per_head)
{
    int64_t span = MHA_DECODE_TASK_ROWS / rows_per_head;
    span = span < MHA_DECODE_SPAN ? span : MHA_DECODE_SPAN;
    span = span < kv_heads ? span : kv_heads;
    return span > 0 ? span : 1;
}

size_t mha_decode_scratch_floats(int64_t span, int64_t rows_per_head, int64_t dk)
{
    const int64_t rows = span * rows_per_head;
    return aligned(rows * DECODE_BLOCK) + aligned(rows * dk);
}

/* Keys [kb, kb + nb) of every head of the span, as runs: run u holds keys
 * [kb + at[u], kb + at[u + 1]) of head g at k[u][g] / v[u][g], rows ldk / ldv apart.
 * strided_prefetch: rows ld > d apart (token-major) are prefetched too. */
typedef struct block_runs {
    int64_t runs, at[MAX_RUNS + 1], ldk, ldv;
    const float *k[MAX_RUNS][MHA_DECODE_SPAN], *v[MAX_RUNS][MHA_DECODE_SPAN];
    bool strided_prefetch;
} block_runs;

static void runs_of(const mha_decode_job *j, int64_t span, int64_t kb, int64_t nb, block_runs *br)
{
    br->runs = 0;
    br->at[0] = 0;
    for (int64_t r = 0; r < nb;) {
        int64_t n = 0;
        for (int64_t g = 0; g < span; g++)
            n = j->rows(j->src, j->g0 + g, kb + r, nb - r, &br->k[br->runs][g], &br->v[br->runs][g], &br->ldk,
                        &br->ldv);
        r += n;
        br->at[++br->runs] = r;
    }
}

/* Share `part` of `parts` of the K (values false) or V lines of a block's runs,
 * prefetched into L2 in address order: heads outer when each head's run is
 * contiguous (a paged block), tokens outer when a token's heads are side by side.
 * Inlined on purpose: GCC finds a function of prefetches alone free of side effects
 * and drops its calls. */
static inline __attribute__((always_inline)) void prefetch_share(const block_runs *br, int64_t span, bool values,
                                                                 int64_t d, int64_t part, int64_t parts)
{
    const int64_t ld = values ? br->ldv : br->ldk, all = span * br->at[br->runs];
    if (ld != d && !br->strided_prefetch)
        return;
    const int64_t lo = all * part / parts, hi = all * (part + 1) / parts;
    for (int64_t q = lo, u = 0; q < hi; q++) {
        int64_t t = q / span, g = q % span; /* q-th row of the block in address order */
        if (ld == d) {
            g = q / br->at[br->runs];
            t = q % br->at[br->runs];
        }
        while (t >= br->at[u + 1])
            u++;
        while (t < br->at[u])
            u--;
        const float *row = (values ? br->v[u][g] : br->k[u][g]) + (t - br->at[u]) * ld;
        for (int64_t e = 0; e < d; e += 16)
            __builtin_prefetch(row + e, 0, 1); /* 1: into L2, not L1 */
    }
}

/* Rows [r0, r0 + n) of the span: row g * rows_per_head + hl * lq + i is query i of
 * head hl of kv head g's group; its state, state_stride floats, follows the
 * previous row's. lone: the head has one row only (H = G, one query), which the
 * single-row kernels take (their y in registers is wider than the nx kernels'
 * one-row tile); a head's rows all go one way, so their bits never depend on the
 * split. */
typedef struct head_rows {
    int64_t r0, n;
    bool lone;
} head_rows;

/* kern->f32_dot_rows_nx of rows `hr` against keys [a, b) of the block, run by run. */
static void dot_keys(const mha_kernels *kern, const block_runs *br, int64_t g, head_rows hr, int64_t a,
                     int64_t b, const float *qs, int64_t dk, float *S)
{
    for (int64_t u = 0; u < br->runs && br->at[u] < b; u++) {
        const int64_t lo = a > br->at[u] ? a : br->at[u], hi = b < br->at[u + 1] ? b : br->at[u + 1];
        if (lo >= hi)
            continue;
        const float *k = br->k[u][g] + (lo - br->at[u]) * br->ldk;
        float *out = S + hr.r0 * DECODE_BLOCK + lo;
        if (hr.lone)
            kern->f32_dot_rows(qs + hr.r0 * dk, k, (size_t)br->ldk, (size_t)(hi - lo), (size_t)dk, out);
        else
            kern->f32_dot_rows_nx(qs + hr.r0 * dk, (size_t)dk, (size_t)hr.n, k, (size_t)br->ldk, (size_t)(hi - lo),
                                  (size_t)dk, out, DECODE_BLOCK);
    }
}

/* kern->f32_axpy_rows_nx: the states of rows `hr` += their weights S times values
 * [a, b) of the block, run by run. */
static void axpy_keys(const mha_kernels *kern, const block_runs *br, int64_t g, head_rows hr, int64_t a,
                      int64_t b, const float *S, float *states, int64_t state_stride, int64_t dv)
{
    for (int64_t u = 0; u < br->runs && br->at[u] < b; u++) {
        const int64_t lo = a > br->at[u] ? a : br->at[u], hi = b < br->at[u + 1] ? b : br->at[u + 1];
        if (lo >= hi)
            continue;
        const float *v = br->v[u][g] + (lo - br->at[u]) * br->ldv, *w = S + hr.r0 * DECODE_BLOCK + lo;
        float *y = states + hr.r0 * state_stride + 2;
        if (hr.lone)
            kern->f32_axpy_rows(w, v, (size_t)br->ldv, (size_t)(hi - lo), (size_t)dv, y);
        else
            kern->f32_axpy_rows_nx(w, DECODE_BLOCK, (size_t)hr.n, v, (size_t)br->ldv, (size_t)(hi - lo), (size_t)dv, y,
                                   (size_t)state_stride);
    }
}

void mha_decode_keys(const mha_kernels *kern, const mha_decode_job *j, int64_t span, int64_t k0,
                     int64_t k1, float *scratch)
{
    const int64_t lq = j->len_q, rows_per_head = j->per_group * lq, rows = span * rows_per_head;
    const int64_t dk = j->dk, dv = j->dv, h0 = j->g0 * j->per_group, bk = DECODE_BLOCK;
    float *S = scratch, *qs = S + aligned(rows * bk);
    /* Row r is (h0 + r / lq, r % lq): the rows of one kv head are consecutive, and
     * so are their states. */
    float *states = j->states + h0 * lq * j->state_stride;
    int64_t kmax = 0, kmin = INT64_MAX;
    for (int64_t i = 0; i < lq; i++) {
        kmax = j->key_end[i] > kmax ? j->key_end[i] : kmax;
        kmin = j->key_end[i] < kmin ? j->key_end[i] : kmin;
    }
    for (int64_t r = 0; r < rows; r++) {
        const int64_t h = h0 + r / lq, i = r % lq;
        memcpy(qs + r * dk, j->q + h * j->q_head + i * j->q_row, (size_t)dk * sizeof(float));
        float *st = states + r * j->state_stride;
        st[0] = -INFINITY;
        st[1] = 0.0f;
        memset(st + 2, 0, (size_t)dv * sizeof(float));
    }
    if (j->scale != 1.0f) /* once per Q element rather than once per score */
        kern->f32_scale(qs, j->scale, (size_t)(rows * dk));
    const int64_t end = k1 < kmax ? k1 : kmax; /* keys no row sees are never read */
    const int64_t block_bytes = span * bk * dk * (int64_t)sizeof(float);
    const int64_t ahead = (AHEAD_BYTES + block_bytes - 1) / block_bytes;
    block_runs cur, next;
    /* Token-major blocks on Intel cores are left to the L2 streamer: a token's heads
     * fill its 4 KiB page, and the first head's row read sends the streamer down
     * the rest, while software prefetches hold the L1 fill buffers that the loads
     * need (0.70-0.85x the time without them on a Sapphire Rapids class Xeon; AMD
     * Zen 4 ran the same decode at half the speed before they were added).
     * Head-major blocks (a head's rows contiguous) are prefetched on every core. */
    next.strided_prefetch = !mha_cpu_intel(); /* only `next` is ever prefetched */
    /* The task's first blocks, before any arithmetic waits on them. */
    for (int64_t kb = k0; kb < end && kb < k0 + ahead * bk; kb += bk) {
        runs_of(j, span, kb, end - kb < bk ? end - kb : bk, &next);
        prefetch_share(&next, span, false, dk, 0, 1);
        prefetch_share(&next, span, true, dv, 0, 1);
    }
    for (int64_t kb = k0; kb < end; kb += bk) {
        const int64_t nb = end - kb < bk ? end - kb : bk, kn = kb + ahead * bk;
        runs_of(j, span, kb, nb, &cur);
        next.runs = 0;
        next.at[0] = 0;
        if (kn < end)
            runs_of(j, span, kn, end - kn < bk ? end - kn : bk, &next);
        /* Keys [0, shared) of the block are seen by every row: a head's rows take
         * them together, each K and V row read once for all of them (read row by
         * row, a token-major block, which falls into a few L1 sets, came from L2
         * again for every row). A row's keys past them (queries of one sequence
         * ending at different keys) go row by row. */
        const int64_t shared = kmin - kb < 0 ? 0 : kmin - kb < nb ? kmin - kb : nb;
        const int64_t units = span * PIECES;
        for (int64_t g = 0, unit = 0; g < span; g++) {
            const int64_t r0 = g * rows_per_head;
            for (int64_t p = 0; p < PIECES; p++, unit++) {
                prefetch_share(&next, span, false, dk, unit, units);
                dot_keys(kern, &cur, g, (head_rows){r0, rows_per_head, rows_per_head == 1}, shared * p / PIECES,
                         shared * (p + 1) / PIECES, qs, dk, S);
            }
            for (int64_t r = r0; r < r0 + rows_per_head && shared < nb; r++) {
                const int64_t ke = j->key_end[r % lq] - kb;
                dot_keys(kern, &cur, g, (head_rows){r, 1, rows_per_head == 1}, shared, ke < nb ? ke : nb, qs, dk, S);
            }
        }
        for (int64_t g = 0, unit = 0; g < span; g++) {
            const int64_t r0 = g * rows_per_head;
            for (int64_t r = r0; r < r0 + rows_per_head; r++) {
                const int64_t h = h0 + r / lq, i = r % lq;
                const int64_t nk = j->key_end[i] - kb < nb ? j->key_end[i] - kb : nb;
                if (nk <= 0)
                    continue;
                float *st = states + r * j->state_stride, *srow = S + r * bk;
                const int64_t vis = j->mask ? j->mask(j->mask_ctx, h, i, kb, srow, nk) : nk;
                mha_softmax_step(kern, srow, vis, nk, &st[0], &st[1], st + 2, dv);
            }
            for (int64_t p = 0; p < PIECES; p++, unit++) {
                prefetch_share(&next, span, true, dv, unit, units);
                axpy_keys(kern, &cur, g, (head_rows){r0, rows_per_head, rows_per_head == 1}, shared * p / PIECES,
                          shared * (p + 1) / PIECES, S, states, j->state_stride, dv);
            }
            for (int64_t r = r0; r < r0 + rows_per_head && shared < nb; r++) {
                const int64_t ke = j->key_end[r % lq] - kb;
                axpy_keys(kern, &cur, g, (head_rows){r, 1, rows_per_head == 1}, shared, ke < nb ? ke : nb, S, states,
                          j->state_stride, dv);
            }
        }
    }
}
