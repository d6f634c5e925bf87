/*
 * Flash-style attention. For one head and one block of query rows (Q scaled once
 * into a copy), the visible key range is walked in blocks: S = Q K^T on the GEMM
 * microkernel, masks, online softmax (running max m and sum l, O rescaled only
 * when m grows), O += P V on the microkernel, and O / l written once at the end.
 * The Lq x Lk score matrix never exists.
 *
 * K and V are packed for the microkernel in rounds: a round packs as many
 * (batch, kv head) groups as fit in KV_BUDGET bytes, then runs every task that
 * reads them, so the scratch stays bounded however long the sequence is.
 * Tasks: (batch, head, query block), a head's query blocks one after the other,
 * so that its packed K and V stay in L2 across them. (The forward's output
 * projection runs after the attention, over all rows. Fused into tasks of a few
 * query blocks with every head inside, each task streamed W_o and every head's K
 * and V from L3 again: on an Intel Xeon (Emerald Rapids) that took 1.03-1.08x the
 * time at L = 197 and 2048, and 0.96-1.00x at 8 sequences of 128.)
 * Decoding (Lq <= DECODE_ROWS) takes the direct path instead: no packing, K and V
 * read where they lie in key chunks merged by log-sum-exp, each task covering the
 * kv heads of a span so that a token-major cache is read in address order
 * (engine/decode_keys.c).
 *
 * Every row's arithmetic is fixed by the shape alone (block sizes do not depend
 * on the thread count), so results do not depend on the thread count.
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "internal.h"

#define KV_BUDGET ((int64_t)4 << 20)
/* Up to this many query rows (and MHA_DECODE_TASK_ROWS rows per kv head), rows
 * walk the keys on K and V where they lie: decoding, where packing K and V would
 * cost as much as the attention and the microkernel's mr rows would sit mostly
 * empty. */
#define DECODE_ROWS 4

typedef struct tiles {
    int64_t bq, bk;             /* query rows and keys per block */
    int64_t q_blocks;           /* tasks along the queries of a head: ceil(Lq / bq) */
    int64_t ldo;                /* row stride of the O block: d_v padded to nr */
    size_t k_floats;            /* packed K of one (batch, kv head) */
    size_t group_floats;        /* packed K + V of one (batch, kv head), aligned */
    size_t s_floats, o_floats, ml_floats, qs_floats; /* per-thread slices */
    size_t thread_floats;
    int64_t groups;             /* (batch, kv head) groups */
    int64_t groups_per_round;
    int64_t tasks_per_group;    /* query blocks times the heads of a group */
    bool direct;                /* Lq <= DECODE_ROWS: direct_task, no packing */
    int64_t chunks;             /* decoding: key chunks per batch */
    int64_t span;               /* decoding: kv heads per task at most */
    size_t state_floats;        /* decoding: (m, l, O) of one query row in one chunk */
    size_t direct_floats;       /* decoding: every row's state, in every chunk */
} tiles;

static size_t floats_aligned(int64_t n)
{
    return mha_round_up((size_t)n * sizeof(float)) / sizeof(float);
}

static int64_t round_to(int64_t n, int64_t m)
{
    return (n + m - 1) / m * m;
}

static tiles tiles_for(const mha_kernels *kern, const mha_shape *s)
{
    tiles t;
    const int64_t mr = (int64_t)kern->gemm_mr, nr = (int64_t)kern->gemm_nr;
    /* 64 query rows per block; fewer when the whole call has few rows, so that
     * short sequences still make enough tasks to share among cores. */
    int64_t rows = s->batch * s->len_q;
    t.bq = round_to(rows / 8 < 64 ? (rows / 8 > 0 ? rows / 8 : 1) : 64, mr);
    /* Keys per block: the score block gets an eighth of L2 (512 keys with 64 rows
     * and 1 MiB), within [128, 512]. Longer blocks mean fewer per-row softmax
     * passes per flop; measured 7% faster than 128 keys at L=2048, d=64. */
    int64_t bk = (int64_t)(mha_cache_l2_bytes() / 8 / (size_t)t.bq / sizeof(float));
    t.bk = round_to(bk < 128 ? 128 : bk > 512 ? 512 : bk, nr);
    t.q_blocks = (s->len_q + t.bq - 1) / t.bq;
    t.ldo = round_to(s->dv, nr);
    t.k_floats = (size_t)(round_to(s->len_k, nr) * s->dk);
    t.group_floats = floats_aligned((int64_t)t.k_floats + t.ldo * s->len_k);
    t.s_floats = floats_aligned(t.bq * t.bk);
    t.o_floats = floats_aligned(t.bq * t.ldo);
    t.ml_floats = floats_aligned(t.bq);
    t.qs_floats = floats_aligned(t.bq * s->dk); /* Q packed: bq is a multiple of mr */
    t.thread_floats = t.s_floats + t.o_floats + 2 * t.ml_floats + t.qs_floats;
    const int64_t per_group = s->heads / s->kv_heads;
    t.tasks_per_group = t.q_blocks * per_group;
    t.groups = s->batch * s->kv_heads;
    const int64_t group_bytes = (int64_t)(t.group_floats * sizeof(float));
    t.direct = s->len_q <= DECODE_ROWS && per_group * s->len_q <= MHA_DECODE_TASK_ROWS;
    int64_t dec_rows = s->len_q < DECODE_ROWS ? s->len_q : DECODE_ROWS; /* monotone in Lq */
    t.chunks = (s->len_k + MHA_DECODE_CHUNK - 1) / MHA_DECODE_CHUNK;
    t.span = mha_decode_span(s->kv_heads, per_group * dec_rows);
    t.state_floats = (size_t)(t.ldo + 2);
    t.direct_floats = (size_t)(s->batch * s->heads * t.chunks * dec_rows) * t.state_floats;
    /* Per thread, decoding scales a span's query rows and keeps a block of scores
     * per row; thread_floats covers both modes. */
    size_t dec_thread = mha_decode_scratch_floats(t.span, per_group * dec_rows, s->dk);
    if (dec_thread > t.thread_floats)
        t.thread_floats = dec_thread;
    t.groups_per_round = KV_BUDGET / group_bytes;
    if (t.groups_per_round < 1)
        t.groups_per_round = 1;
    if (t.groups_per_round > t.groups)
        t.groups_per_round = t.groups;
    return t;
}

/* Threads a run of t uses: no more than it has tasks (decoding: its key chunks;
 * otherwise a round's tasks, or a round's groups to pack). */
static int threads_used(const tiles *t, const mha_shape *s, int threads)
{
    if (t->direct)
        return mha_threads_for(threads, s->batch * t->chunks * ((s->kv_heads + t->span - 1) / t->span));
    int64_t groups = t->groups_per_round, tasks = t->groups_per_round * t->tasks_per_group;
    return mha_threads_for(threads, tasks > groups ? tasks : groups);
}

/* Bytes of packed K and V one round holds. Sized by the bound (every unit, and at
 * most the budget or one unit) rather than this shape's exact round, so that the
 * size is monotone in the shape. */
static int64_t kv_round_bytes(const tiles *t)
{
    int64_t group = (int64_t)(t->group_floats * sizeof(float));
    int64_t kv = group > KV_BUDGET ? group : KV_BUDGET, all = t->groups * group;
    return all < kv ? all : kv;
}

/* Bytes of decoding's per-row chunk states. */
static int64_t direct_state_bytes(const tiles *t)
{
    return (int64_t)(t->direct_floats * sizeof(float));
}

/* fixed + threads per-thread slices + alignment slack, into *bytes. */
static bool scratch_total(int64_t fixed, int threads, size_t thread_floats, size_t *bytes)
{
    int64_t per, total;
    if (!mha_mul(threads, (int64_t)(thread_floats * sizeof(float)), &per) ||
        !mha_add(fixed, per + MHA_ALIGN, &total) || total > MHA_MAX_BYTES)
        return false;
    *bytes = (size_t)total;
    return true;
}

/* Bounds the packed sizes before tiles_for multiplies: K and V may be broadcast
 * with zero strides, so the callers' extents do not bound them. */
static bool shape_fits(const mha_kernels *kern, const mha_shape *s)
{
    int64_t nr = (int64_t)kern->gemm_nr, n;
    return mha_mul3(s->kv_heads, s->len_k + nr, s->dk + s->dv + 2 * nr, &n) && n <= MHA_MAX_ELEMS &&
           mha_mul3(s->heads, s->dv, 64 + nr, &n) && n <= MHA_MAX_ELEMS &&
           mha_mul3(s->batch * DECODE_ROWS, s->heads * (s->dv + nr + 2),
                    (s->len_k + MHA_DECODE_CHUNK - 1) / MHA_DECODE_CHUNK + 1, &n) &&
           n <= MHA_MAX_ELEMS;
}

bool mha_attention_scratch_bytes(const mha_kernels *kern, const mha_shape *s, int threads, size_t *bytes)
{
    if (!shape_fits(kern, s))
        return false;
    const tiles t = tiles_for(kern, s);
    /* Decoding packs nothing: its scratch is the chunk states, not K and V. */
    int64_t fixed = t.direct ? direct_state_bytes(&t) : kv_round_bytes(&t);
    return scratch_total(fixed, threads_used(&t, s, threads), t.thread_floats, bytes);
}

/* The tiles stop depending on the query rows (B * Lq) from this many on: bq is 64
 * from 512 rows. */
#define ROWS_SATURATE 512

bool mha_attention_scratch_bound(const mha_kernels *kern, const mha_shape *s, int threads, size_t *bytes)
{
    if (!shape_fits(kern, s))
        return false;
    /* Per-thread slices depend on the query rows through the tile sizes, not
     * monotonically: take the largest over every smaller row count. */
    size_t per = 0;
    const int64_t rows = s->batch * s->len_q < ROWS_SATURATE ? s->batch * s->len_q : ROWS_SATURATE;
    for (int64_t r = 1; r <= rows; r++) {
        mha_shape rs = *s;
        rs.batch = 1;
        rs.len_q = r;
        size_t f = tiles_for(kern, &rs).thread_floats;
        per = f > per ? f : per;
    }
    /* A smaller call packs K and V (prefill), or decodes with at most
     * min(Lq, DECODE_ROWS) rows, as many as the group row limit allows. */
    const tiles t = tiles_for(kern, s);
    int64_t fixed = t.direct ? 0 : kv_round_bytes(&t);
    mha_shape ds = *s;
    const int64_t per_group = s->heads / s->kv_heads;
    ds.len_q = s->len_q < DECODE_ROWS ? s->len_q : DECODE_ROWS;
    if (ds.len_q * per_group > MHA_DECODE_TASK_ROWS)
        ds.len_q = MHA_DECODE_TASK_ROWS / per_group;
    if (ds.len_q > 0) {
        const tiles dt = tiles_for(kern, &ds);
        int64_t states = direct_state_bytes(&dt);
        fixed = states > fixed ? states : fixed;
    }
    return scratch_total(fixed, threads, per, bytes);
}

/* Row i may see keys j <= i + causal_offset; clamped to where it still matters, so
 * that any int64 offset is safe to add. */
static int64_t causal_offset(const mha_attn_problem *p)
{
    int64_t off = p->mask->causal == MHA_CAUSAL_EXPLICIT ? p->mask->causal_offset
                                                          : p->s.len_k - p->s.len_q;
    if (off > p->s.len_k)
        return p->s.len_k;
    return off < -p->s.len_q - 1 ? -p->s.len_q - 1 : off;
}

/* Last key (exclusive) that any row of [i0, i0 + mq) of batch b may see. */
static int64_t key_end(const mha_attn_problem *p, int64_t b, int64_t i0, int64_t mq)
{
    int64_t end = p->s.len_k;
    if (p->mask->key_lengths && p->mask->key_lengths[b] < end)
        end = p->mask->key_lengths[b];
    if (p->mask->causal != MHA_CAUSAL_NONE) {
        int64_t last = i0 + mq + causal_offset(p); /* row i0 + mq - 1 sees j <= that + offset */
        if (last < end)
            end = last;
    }
    return end < 0 ? 0 : end;
}

/* How many of keys [j0, j0 + n) rows [i, i + rows) may see at most: n, or fewer
 * under a causal mask. */
static int64_t group_keys(const mha_attn_problem *p, int64_t i, int64_t rows, int64_t j0, int64_t n)
{
    if (p->mask->causal == MHA_CAUSAL_NONE)
        return n;
    int64_t last = i + rows - 1 + causal_offset(p) + 1 - j0; /* first key hidden from row i + rows - 1 */
    return last < 0 ? 0 : last < n ? last : n;
}

/* Applies the masks to keys [j0, j0 + n) of row i of the (already scaled) score
 * block and returns how many of them come before the causal cut: the caller
 * gives the keys past it weight 0 directly. (Writing -inf there and taking its
 * exp cost as much as the visible part on the diagonal blocks, and exp's
 * underflow is slow on some CPUs.) */
static int64_t apply_masks(const mha_kernels *kern, const mha_attn_problem *p, int64_t b, int64_t h,
                           int64_t i, int64_t j0, float *srow, int64_t n)
{
    const mha_mask *m = p->mask;
    if (m->causal != MHA_CAUSAL_NONE) {
        int64_t first_masked = i + causal_offset(p) + 1 - j0; /* local index of the first hidden key */
        n = first_masked < 0 ? 0 : first_masked < n ? first_masked : n;
    }
    if (m->float_mask.data) /* scale 1: the softmax scale is in Q already */
        kern->f32_scale_add(srow, 1.0f,
                            (const float *)m->float_mask.data + b * m->float_mask.stride_b +
                                h * m->float_mask.stride_h + i * m->float_mask.stride_q + j0,
                            (size_t)n);
    if (m->bool_mask.data)
        kern->f32_mask_u8(srow,
                          (const uint8_t *)m->bool_mask.data + b * m->bool_mask.stride_b +
                              h * m->bool_mask.stride_h + i * m->bool_mask.stride_q + j0,
                          (size_t)n);
    return n;
}

static void pack_group(const mha_kernels *kern, const mha_attn_problem *p, const tiles *t,
                       int64_t group, float *dst)
{
    int64_t b = group / p->s.kv_heads, g = group % p->s.kv_heads;
    kern->f32_pack_b_nk((size_t)p->s.len_k, (size_t)p->s.dk,
                        p->k + b * p->k_stride[0] + g * p->k_stride[1], (size_t)p->k_stride[2], dst);
    kern->f32_pack_b_kn((size_t)p->s.dv, (size_t)p->s.len_k,
                        p->v + b * p->v_stride[0] + g * p->v_stride[1], (size_t)p->v_stride[2],
                        dst + t->k_floats);
}

/* Attention of head h over query rows [i0, i0 + mq) of batch b, reading K and V
 * packed at kp; writes O / l to out (row stride ld). */
static void attend_block(const mha_kernels *kern, const mha_attn_problem *p, const tiles *t,
                         const float *kp, float *scratch, int64_t b, int64_t h, int64_t i0,
                         int64_t mq, float *out, int64_t ld)
{
    const mha_shape *s = &p->s;
    const int64_t mr = (int64_t)kern->gemm_mr, nr = (int64_t)kern->gemm_nr, ldo = t->ldo;
    float *S = scratch, *O = S + t->s_floats, *mrow = O + t->o_floats, *lrow = mrow + t->ml_floats;
    memset(O, 0, (size_t)(mq * ldo) * sizeof(float));
    for (int64_t r = 0; r < mq; r++) {
        mrow[r] = -INFINITY;
        lrow[r] = 0.0f;
    }
    /* Q goes to the microkernel as packed micro-panels (the projections' mechanism;
     * caller rows H*d floats apart would otherwise share L1 sets), scaled once per
     * element. */
    float *qp = lrow + t->ml_floats;
    kern->f32_pack_a((size_t)mq, (size_t)s->dk,
                     p->q + b * p->q_stride[0] + h * p->q_stride[1] + i0 * p->q_stride[2],
                     (size_t)p->q_stride[2], qp);
    if (p->scale != 1.0f)
        kern->f32_scale(qp, p->scale, (size_t)(round_to(mq, mr) * s->dk));
    const float *vp = kp + t->k_floats;
    const int64_t kend = key_end(p, b, i0, mq);

    for (int64_t kb = 0; kb < kend; kb += t->bk) {
        const int64_t nk = kend - kb < t->bk ? kend - kb : t->bk;
        /* S = Q K^T over this key block, each row group only as far as its last
         * row sees (the causal diagonal: the rest is given weight 0 anyway). */
        for (int64_t c = 0; c < nk; c += nr) {
            const float *panel = kp + (size_t)((kb + c) * s->dk);
            int64_t n = nk - c < nr ? nk - c : nr;
            for (int64_t r = 0; r < mq; r += mr)
                if (c < group_keys(p, i0 + r, mr, kb, nk))
                    kern->f32_gemm_pa((size_t)(mq - r < mr ? mq - r : mr), (size_t)n, (size_t)s->dk,
                                      qp + r * s->dk, panel, S + r * t->bk + c, (size_t)t->bk, NULL, 0);
        }
        for (int64_t r = 0; r < mq; r++) {
            int64_t vis = apply_masks(kern, p, b, h, i0 + r, kb, S + r * t->bk, nk);
            mha_softmax_step(kern, S + r * t->bk, vis, nk, &mrow[r], &lrow[r], O + r * ldo, s->dv);
        }
        /* O += P V over this key block (P read in place: packing it cost more
         * than it saved, measured). */
        for (int64_t c = 0; c < s->dv; c += nr) {
            const float *panel = vp + (size_t)(c * s->len_k + kb * nr);
            int64_t n = s->dv - c < nr ? s->dv - c : nr;
            for (int64_t r = 0; r < mq; r += mr)
                kern->f32_gemm((size_t)(mq - r < mr ? mq - r : mr), (size_t)n,
                               (size_t)group_keys(p, i0 + r, mr, kb, nk), S + r * t->bk, (size_t)t->bk,
                               panel, O + r * ldo + c, (size_t)ldo, NULL, 1);
        }
    }
    for (int64_t r = 0; r < mq; r++)
        mha_finish_row(O + r * ldo, lrow[r], s->dv, out + r * ld);
}

/* Decoding: where the keys of batch b lie, and its masks. */
typedef struct direct_src {
    const mha_kernels *kern;
    const mha_attn_problem *p;
    int64_t b;
} direct_src;

static int64_t direct_rows(const void *src, int64_t g, int64_t j, int64_t n, const float **k,
                           const float **v, int64_t *ldk, int64_t *ldv)
{
    const direct_src *d = src;
    const mha_attn_problem *p = d->p;
    *ldk = p->k_stride[2];
    *ldv = p->v_stride[2];
    *k = p->k + d->b * p->k_stride[0] + g * p->k_stride[1] + j * *ldk;
    *v = p->v + d->b * p->v_stride[0] + g * p->v_stride[1] + j * *ldv;
    return n;
}

static int64_t direct_mask(const void *ctx, int64_t h, int64_t i, int64_t j0, float *s, int64_t n)
{
    const direct_src *d = ctx;
    return apply_masks(d->kern, d->p, d->b, h, i, j0, s, n);
}

/* Kv heads a decoding task reads: all a task may hold when a token's heads lie
 * closer together than its rows (token-major, one stream for all of them), else
 * one (head-major: each head's rows are a stream of their own, and heads a
 * multiple of 4 KiB apart read side by side would evict each other from L2). */
static int64_t direct_span(const mha_attn_problem *p, const tiles *t)
{
    bool near = p->k_stride[1] < p->k_stride[2] && p->v_stride[1] < p->v_stride[2];
    return near ? t->span : 1;
}

/* Decoding, one task: key chunk c of batch b for kv heads [g0, g0 + span), every
 * query row of their heads. Row (h, i) leaves its chunk state at
 * states + ((b*H + h)*Lq + i)*chunks + c. */
static void direct_task(const mha_kernels *kern, const mha_attn_problem *p, const tiles *t,
                        float *scratch, int64_t b, int64_t c, int64_t g0, int64_t span, float *states)
{
    const mha_shape *s = &p->s;
    const direct_src src = {kern, p, b};
    int64_t kend[DECODE_ROWS];
    for (int64_t i = 0; i < s->len_q; i++)
        kend[i] = key_end(p, b, i, 1);
    const mha_decode_job job = {
        .g0 = g0, .per_group = s->heads / s->kv_heads, .len_q = s->len_q, .dk = s->dk, .dv = s->dv,
        .q = p->q + b * p->q_stride[0], .q_head = p->q_stride[1], .q_row = p->q_stride[2],
        .scale = p->scale, .key_end = kend,
        .states = states + (size_t)(b * s->heads * s->len_q * t->chunks + c) * t->state_floats,
        .state_stride = t->chunks * (int64_t)t->state_floats,
        .rows = direct_rows, .src = &src, .mask = direct_mask, .mask_ctx = &src};
    const int64_t k0 = c * MHA_DECODE_CHUNK;
    mha_decode_keys(kern, &job, span, k0, k0 + MHA_DECODE_CHUNK < s->len_k ? k0 + MHA_DECODE_CHUNK : s->len_k,
                    scratch);
}

/* Merges a row's chunk states (m, l, O) in chunk order by the log-sum-exp rule into
 * dst: O = sum_c O_c e^(m_c - m) / sum_c l_c e^(m_c - m), m the largest m_c. */
static void merge_chunks(const tiles *t, const float *states, size_t stride, int64_t dv, float *dst)
{
    float m = -INFINITY;
    bool nan = false;
    for (int64_t c = 0; c < t->chunks; c++) {
        float mc = states[c * stride];
        nan |= isnan(mc);
        m = mc > m ? mc : m;
    }
    if (nan || m == -INFINITY) { /* NaN reached the row, or it may attend to nothing */
        for (int64_t d = 0; d < dv; d++)
            dst[d] = nan ? NAN : 0.0f;
        return;
    }
    float l = 0.0f;
    memset(dst, 0, (size_t)dv * sizeof(float));
    for (int64_t c = 0; c < t->chunks; c++) {
        const float *st = states + c * stride;
        float w = expf(st[0] - m); /* 0 for a chunk the row sees nothing of */
        l += st[1] * w;
        for (int64_t d = 0; d < dv; d++)
            dst[d] += st[2 + d] * w;
    }
    float inv = 1.0f / l;
    for (int64_t d = 0; d < dv; d++)
        dst[d] *= inv;
}

/* Task ti of the round whose first group is g0; kv holds that round's packed groups. */
static void run_task(const mha_kernels *kern, const mha_attn_problem *p, const tiles *t,
                     const float *kv, int64_t g0, int64_t ti, float *scratch)
{
    const mha_shape *s = &p->s;
    const int64_t per_group = s->heads / s->kv_heads;
    /* Last query blocks first: under a causal mask they are the longest. */
    const int64_t qb = t->q_blocks - 1 - ti % t->q_blocks;
    const int64_t i0 = qb * t->bq, mq = s->len_q - i0 < t->bq ? s->len_q - i0 : t->bq;
    const int64_t group = g0 + ti / t->tasks_per_group;
    const int64_t b = group / s->kv_heads, g = group % s->kv_heads;
    const int64_t h = g * per_group + ti % t->tasks_per_group / t->q_blocks;
    attend_block(kern, p, t, kv + (size_t)(group - g0) * t->group_floats, scratch, b, h, i0, mq,
                 p->out + b * p->out_stride[0] + h * p->out_stride[1] + i0 * p->out_stride[2], p->out_stride[2]);
}

/* Decoding: tasks over (batch, key chunk, span of kv heads), then each row's chunks merged. */
static void run_direct(const mha_kernels *kern, const mha_attn_problem *p, const tiles *t,
                       float *per_thread, float *states, int used)
{
    const mha_shape *s = &p->s;
    const int64_t span = direct_span(p, t), spans = (s->kv_heads + span - 1) / span;
    const int64_t tasks = s->batch * t->chunks * spans;
    /* states[((b*H + h)*Lq + i)*chunks + c]: a row's chunks side by side. */
#pragma omp parallel num_threads(used) if (used > 1)
    {
        float *mine = per_thread + (size_t)omp_get_thread_num() * t->thread_floats;
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; task++) { /* spans fastest: a chunk's run close in time */
            const int64_t g0 = task % spans * span;
            direct_task(kern, p, t, mine, task / (t->chunks * spans), task / spans % t->chunks, g0,
                        s->kv_heads - g0 < span ? s->kv_heads - g0 : span, states);
        }
#pragma omp for schedule(static)
        for (int64_t row = 0; row < s->batch * s->heads * s->len_q; row++) {
            int64_t b = row / (s->heads * s->len_q), h = row / s->len_q % s->heads, i = row % s->len_q;
            float *dst = p->out + b * p->out_stride[0] + h * p->out_stride[1] + i * p->out_stride[2];
            merge_chunks(t, states + (size_t)row * (size_t)t->chunks * t->state_floats,
                         t->state_floats, s->dv, dst);
        }
    }
}

void mha_attention_run(const mha_kernels *kern, const mha_attn_problem *p, void *scratch, int threads)
{
    const tiles t = tiles_for(kern, &p->s);
    float *base = (float *)(((uintptr_t)scratch + MHA_ALIGN - 1) & ~(uintptr_t)(MHA_ALIGN - 1));
    const int used = threads_used(&t, &p->s, threads); /* as mha_attention_scratch_bytes sized */
    if (t.direct) {
        float *states = base + (size_t)used * t.thread_floats;
        run_direct(kern, p, &t, base, states, used);
        return;
    }
    float *kv = base;
    float *per_thread = kv + (size_t)t.groups_per_round * t.group_floats;

#pragma omp parallel num_threads(used) if (used > 1)
    {
        float *mine = per_thread + (size_t)omp_get_thread_num() * t.thread_floats;
        for (int64_t g0 = 0; g0 < t.groups; g0 += t.groups_per_round) {
            const int64_t groups = t.groups - g0 < t.groups_per_round ? t.groups - g0 : t.groups_per_round;
            const int64_t tasks = groups * t.tasks_per_group;
#pragma omp for schedule(static)
            for (int64_t gi = 0; gi < groups; gi++)
                pack_group(kern, p, &t, g0 + gi, kv + (size_t)gi * t.group_floats);
#pragma omp for schedule(dynamic, 1)
            for (int64_t ti = 0; ti < tasks; ti++)
                run_task(kern, p, &t, kv, g0, ti, mine);
        }
    }
}
