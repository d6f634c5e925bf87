/*
 * Attention of a ragged batch over its caches, item by item of the plan:
 *   prefill items: a block of rows walks its visible keys in blocks of SERVE_BK,
 *     each key block packed once (from contiguous rows, or gathered from cache
 *     blocks) for the group's heads; S = Q K^T and O += P V on the GEMM
 *     microkernel, online softmax in between (as engine/flash.c);
 *   prefill items run once per kv head, for all the query heads of that group;
 *   decode items: one key chunk, one task, its kv heads span by span, K and V
 *     read where they lie in address order for all the span's rows
 *     (engine/decode_keys.c);
 *     the chunk states are merged by log-sum-exp in chunk order at the end.
 * Every item's arithmetic is fixed by the plan, so results do not depend on the
 * thread count.
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "serve.h"

typedef struct ctx {
    const mha_kernels *kern;
    const mha_serve_plan *p;
    const mha_batch *b;
    const serve_cache *c;
    const float *q;
    int64_t qs0, qs1;
    float scale;
    float *out;
    int64_t os0, os1;
    float *lse;
    float *states;
    float *packed; /* the workspace's pack slice */
} ctx;

static int64_t round_to(int64_t n, int64_t m)
{
    return (n + m - 1) / m * m;
}

/* dst = o / l and the row's LSE m + ln l (zeros and -inf when it saw nothing). */
static void finish_row(const float *o, float m, float l, int64_t dv, float *dst, float *lse)
{
    if (lse)
        *lse = l == 0.0f ? -INFINITY : m + logf(l);
    mha_finish_row(o, l, dv, dst);
}

/* Row t, head h of Q, scaled into buf when the scale is not 1. */
static const float *q_row(const ctx *x, int64_t t, int64_t h, float *buf)
{
    const float *q = x->q + t * x->qs0 + h * x->qs1;
    if (x->scale == 1.0f)
        return q;
    memcpy(buf, q, (size_t)x->p->dims.dk * sizeof(float));
    x->kern->f32_scale(buf, x->scale, (size_t)x->p->dims.dk);
    return buf;
}

/* Where the keys of sequence s lie in the cache. */
typedef struct seq_src {
    const ctx *x;
    int64_t s;
} seq_src;

static int64_t seq_rows(const void *src, int64_t g, int64_t j, int64_t n, const float **k, const float **v,
                        int64_t *ldk, int64_t *ldv)
{
    const seq_src *q = src;
    return serve_kv_run(q->x->c, q->x->b, q->s, g, j, n, k, v, ldk, ldv);
}

/* A decode chunk for the rows of every head, span of kv heads by span. */
static void decode_task(const ctx *x, const serve_item *it, float *scratch)
{
    const mha_shape *d = &x->p->dims;
    const serve_merge *mg = plan_merges(x->p) + it->merge;
    const int64_t pg = d->heads / d->kv_heads, ql = it->rows, s = it->seq;
    const int64_t t0 = plan_q_start(x->p)[s], kl = plan_kv_len(x->p)[s];
    const int64_t span = mha_decode_span(d->kv_heads, pg * ql);
    int64_t kend[SERVE_DECODE_ROWS];
    for (int64_t i = 0; i < ql; i++)
        kend[i] = x->p->non_causal ? kl : kl - ql + i + 1;
    const seq_src src = {x, s};
    mha_decode_job job = {
        .per_group = pg, .len_q = ql, .dk = d->dk, .dv = d->dv,
        .q = x->q + t0 * x->qs0, .q_head = x->qs1, .q_row = x->qs0, .scale = x->scale, .key_end = kend,
        .states = x->states + (size_t)(mg->state0 + it->chunk) * x->p->state_floats,
        .state_stride = mg->chunks * (int64_t)x->p->state_floats, .rows = seq_rows, .src = &src};
    for (job.g0 = 0; job.g0 < d->kv_heads; job.g0 += span)
        mha_decode_keys(x->kern, &job, d->kv_heads - job.g0 < span ? d->kv_heads - job.g0 : span, it->key0,
                        it->key1, scratch);
}

/* Keys [kb, kb + nk) of (s, g) packed for the microkernel: K as key panels (kp),
 * V as d_v panels of nk rows (vp). Each run of keys inside one cache block goes
 * straight into the panels: V one d_v panel at a time (a run is a range of the
 * panel's rows), K when runs start on a key panel (block_size a multiple of
 * gemm_nr), else K is gathered into gat first. */
static void pack_keys(const ctx *x, int64_t s, int64_t g, int64_t kb, int64_t nk, float *kp,
                      float *vp, float *gat)
{
    const mha_kernels *kern = x->kern;
    const int64_t dk = x->p->dims.dk, dv = x->p->dims.dv, nr = (int64_t)kern->gemm_nr;
    const float *k, *v;
    int64_t ldk, ldv, n = serve_kv_run(x->c, x->b, s, g, kb, nk, &k, &v, &ldk, &ldv);
    if (n == nk) {
        kern->f32_pack_b_nk((size_t)nk, (size_t)dk, k, (size_t)ldk, kp);
        kern->f32_pack_b_kn((size_t)dv, (size_t)nk, v, (size_t)ldv, vp);
        return;
    }
    const bool k_direct = x->c->bs % nr == 0;
    for (int64_t j = 0; j < nk; j += n) {
        n = serve_kv_run(x->c, x->b, s, g, kb + j, nk - j, &k, &v, &ldk, &ldv);
        if (k_direct)
            kern->f32_pack_b_nk((size_t)n, (size_t)dk, k, (size_t)ldk, kp + j * dk);
        else
            for (int64_t r = 0; r < n; r++)
                memcpy(gat + (j + r) * dk, k + r * ldk, (size_t)dk * sizeof(float));
        for (int64_t c = 0; c < dv; c += nr)
            kern->f32_pack_b_kn((size_t)(dv - c < nr ? dv - c : nr), (size_t)n, v + c, (size_t)ldv,
                                vp + c * nk + j * nr);
    }
    if (!k_direct)
        kern->f32_pack_b_nk((size_t)nk, (size_t)dk, gat, (size_t)dk, kp);
}

/* The pack of sequence s, or NULL when its blocks pack their own keys. */
static const serve_pack *pack_of(const mha_serve_plan *p, int64_t s)
{
    const serve_pack *pk = plan_packs(p);
    for (int64_t i = 0; i < p->n_packs; i++)
        if (pk[i].seq == s)
            return pk + i;
    return NULL;
}

/* Key block kb / SERVE_BK of kv head g of a pack: K panels, then V panels. */
static float *packed_block(const ctx *x, const serve_pack *pk, int64_t g, int64_t kb)
{
    const int64_t blk = x->p->pack_k_floats + x->p->pack_v_floats;
    return x->packed + pk->off + (g * pk->blocks + kb / SERVE_BK) * blk;
}

/* Pack task `task` of the plan (kv head, key block of one pack). */
static void pack_task(const ctx *x, int64_t task, float *scratch)
{
    const serve_pack *pk = plan_packs(x->p);
    const int64_t G = x->p->dims.kv_heads;
    while (task >= G * pk->blocks)
        task -= G * pk++->blocks;
    const int64_t g = task / pk->blocks, kb = task % pk->blocks * SERVE_BK, kl = plan_kv_len(x->p)[pk->seq];
    float *kp = packed_block(x, pk, g, kb);
    pack_keys(x, pk->seq, g, kb, kl - kb < SERVE_BK ? kl - kb : SERVE_BK, kp, kp + x->p->pack_k_floats, scratch);
}

static void prefill_task(const ctx *x, const serve_item *it, int64_t g, float *scratch)
{
    const mha_kernels *kern = x->kern;
    const mha_shape *d = &x->p->dims;
    const int64_t mr = (int64_t)kern->gemm_mr, nr = (int64_t)kern->gemm_nr, ldo = round_to(d->dv, nr);
    const int64_t pg = d->heads / d->kv_heads, bq = x->p->bq, mq = it->rows, s = it->seq;
    const int64_t t0 = plan_q_start(x->p)[s] + it->row0, ql = plan_q_start(x->p)[s + 1] - plan_q_start(x->p)[s];
    const int64_t kl = plan_kv_len(x->p)[s], dmax = d->dk > d->dv ? d->dk : d->dv;
    float *kp = scratch, *vp = kp + round_to(SERVE_BK, nr) * d->dk, *gat = vp + SERVE_BK * ldo;
    float *S = gat + SERVE_BK * dmax, *O = S + bq * SERVE_BK, *m = O + pg * bq * ldo, *l = m + pg * bq;
    float *qs = l + pg * bq;
    const serve_pack *pk = pack_of(x->p, s);
    /* Q rows of head g*pg + hh copied (scaled) contiguous into qs: packed rows are
     * H*d_k floats apart, often a multiple of 4 KiB, and the microkernel's mr
     * rows read in place would fight over a few L1 sets. */
    const int64_t ldq = d->dk;
    for (int64_t hh = 0; hh < pg; hh++)
        for (int64_t r = 0; r < mq; r++) {
            float *dst = qs + (hh * bq + r) * d->dk;
            const float *src = q_row(x, t0 + r, g * pg + hh, dst);
            if (src != dst)
                memcpy(dst, src, (size_t)d->dk * sizeof(float));
        }
    memset(O, 0, (size_t)(pg * bq * ldo) * sizeof(float));
    for (int64_t r = 0; r < pg * bq; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    for (int64_t kb = 0; kb < it->key1; kb += SERVE_BK) {
        const int64_t nk = it->key1 - kb < SERVE_BK ? it->key1 - kb : SERVE_BK;
        /* V panels hold ldv rows: the block's keys when packed once (this item
         * may see fewer), else this item's. */
        int64_t ldv = nk;
        if (pk) {
            kp = packed_block(x, pk, g, kb);
            vp = kp + x->p->pack_k_floats;
            ldv = kl - kb < SERVE_BK ? kl - kb : SERVE_BK;
        } else {
            pack_keys(x, s, g, kb, nk, kp, vp, gat);
        }
        for (int64_t hh = 0; hh < pg; hh++) {
            float *Oh = O + hh * bq * ldo;
            const float *qh = qs + hh * bq * d->dk;
            for (int64_t c = 0; c < nk; c += nr) {
                int64_t n = nk - c < nr ? nk - c : nr;
                for (int64_t r = 0; r < mq; r += mr)
                    kern->f32_gemm((size_t)(mq - r < mr ? mq - r : mr), (size_t)n, (size_t)d->dk,
                                   qh + r * ldq, (size_t)ldq, kp + c * d->dk, S + r * SERVE_BK + c,
                                   SERVE_BK, NULL, 0);
            }
            for (int64_t r = 0; r < mq; r++) {
                float *srow = S + r * SERVE_BK;
                int64_t vis = x->p->non_causal ? nk : kl - ql + it->row0 + r + 1 - kb; /* causal cut */
                vis = vis < 0 ? 0 : vis > nk ? nk : vis;
                mha_softmax_step(kern, srow, vis, nk, &m[hh * bq + r], &l[hh * bq + r], Oh + r * ldo, d->dv);
            }
            for (int64_t c = 0; c < d->dv; c += nr) {
                int64_t n = d->dv - c < nr ? d->dv - c : nr;
                for (int64_t r = 0; r < mq; r += mr)
                    kern->f32_gemm((size_t)(mq - r < mr ? mq - r : mr), (size_t)n, (size_t)nk,
                                   S + r * SERVE_BK, SERVE_BK, vp + c * ldv, Oh + r * ldo + c,
                                   (size_t)ldo, NULL, 1);
            }
        }
    }
    for (int64_t hh = 0; hh < pg; hh++)
        for (int64_t r = 0; r < mq; r++) {
            int64_t h = g * pg + hh, t = t0 + r;
            finish_row(O + (hh * bq + r) * ldo, m[hh * bq + r], l[hh * bq + r], d->dv,
                       x->out + t * x->os0 + h * x->os1, x->lse ? x->lse + t * d->heads + h : NULL);
        }
}

/* Row i, head h of a decode: its chunk states merged in chunk order. */
static void merge_row(const ctx *x, const serve_merge *mg, int64_t h, int64_t i)
{
    const int64_t dv = x->p->dims.dv, ql = plan_q_start(x->p)[mg->seq + 1] - plan_q_start(x->p)[mg->seq];
    const int64_t t = plan_q_start(x->p)[mg->seq] + i;
    const size_t sf = x->p->state_floats;
    const float *st = x->states + (size_t)(mg->state0 + (h * ql + i) * mg->chunks) * sf;
    float *dst = x->out + t * x->os0 + h * x->os1, *lse = x->lse ? x->lse + t * x->p->dims.heads + h : NULL;
    float m = -INFINITY;
    bool nan = false;
    for (int64_t c = 0; c < mg->chunks; c++) {
        float mc = st[c * sf];
        nan |= isnan(mc);
        m = mc > m ? mc : m;
    }
    if (nan || m == -INFINITY) {
        for (int64_t e = 0; e < dv; e++)
            dst[e] = nan ? NAN : 0.0f;
        if (lse)
            *lse = nan ? NAN : -INFINITY;
        return;
    }
    float l = 0.0f;
    memset(dst, 0, (size_t)dv * sizeof(float));
    for (int64_t c = 0; c < mg->chunks; c++) {
        const float *sc = st + c * sf;
        float w = expf(sc[0] - m);
        l += sc[1] * w;
        for (int64_t e = 0; e < dv; e++)
            dst[e] += sc[2 + e] * w;
    }
    float inv = 1.0f / l;
    for (int64_t e = 0; e < dv; e++)
        dst[e] *= inv;
    if (lse)
        *lse = m + logf(l);
}

void serve_attend(const mha_kernels *kern, const mha_serve_plan *p, const mha_batch *b,
                  const serve_cache *c, const float *q, const int64_t qs[2], float scale,
                  float *out, const int64_t os[2], float *lse, char *ws, int run_threads)
{
    const ctx x = {kern, p, b, c, q, qs[0], qs[1], scale, out, os[0], os[1], lse,
                   (float *)(ws + p->ws_states), (float *)(ws + p->ws_pack)};
    float *per_thread = (float *)(ws + p->ws_threads);
    const int64_t G = p->dims.kv_heads, H = p->dims.heads;
    const serve_item *items = plan_items(p);
    /* Prefill items (first in the plan) run once per kv head, decode items once. */
    int64_t n_pre = 0;
    while (n_pre < p->n_items && items[n_pre].chunk < 0)
        n_pre++;
    const int64_t tasks = n_pre * G + p->n_items - n_pre;
    const serve_merge *merges = plan_merges(p);
    int64_t pack_tasks = 0;
    for (int64_t i = 0; i < p->n_packs; i++)
        pack_tasks += G * plan_packs(p)[i].blocks;
    const int threads = mha_threads_for(run_threads, tasks > p->n_merges * H ? tasks : p->n_merges * H);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *mine = per_thread + (size_t)omp_get_thread_num() * p->thread_floats;
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < pack_tasks; task++)
            pack_task(&x, task, mine);
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; task++) {
            if (task < n_pre * G)
                prefill_task(&x, items + task / G, task % G, mine);
            else
                decode_task(&x, items + task - n_pre * G + n_pre, mine);
        }
#pragma omp for schedule(static)
        for (int64_t mh = 0; mh < p->n_merges * H; mh++) {
            const serve_merge *mg = merges + mh / H;
            int64_t ql = plan_q_start(p)[mg->seq + 1] - plan_q_start(p)[mg->seq];
            for (int64_t i = 0; i < ql; i++)
                merge_row(&x, mg, mh % H, i);
        }
    }
}
