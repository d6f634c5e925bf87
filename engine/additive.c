/*
 * Additive (Bahdanau) attention, fused. W_q q + (b_q + b_k) and W_k k are projected
 * once on the packed GEMM (QP [B*Lq, h], KP [B*Lk, h] in the workspace). The query
 * rows are then taken in rounds, each round in two parallel phases:
 *   1. scores: tasks of TASK_ROWS query rows x one key chunk. For a row and a tile
 *      of nk keys, X[j] = QP_i + KP_j over a chunk of hc hidden units (one L1-sized
 *      buffer), tanh over the whole tile in one f32_tanh call, then w_v . X[j] for
 *      every key of the tile (f32_dot_rows), summed over the chunks of h. Keys a
 *      row cannot see (lengths, causal) are never scored.
 *   2. per row: float and boolean masks, softmax over the visible keys, the weights
 *      written if asked, out = weights . V (V rows read in place).
 * So the [B, Lq, Lk, h] tensor never exists: the score rows of one round and one
 * tile per thread do. Tiles, chunks and rounds are fixed by the shape, never by the
 * thread count, so every output is computed by the same operations whatever
 * num_threads is.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "additive_internal.h"

#define TILE_FLOATS 8192       /* X of one thread: 32 KiB, the L1 of current cores */
#define CHUNK_MAX 1024         /* hidden units per chunk of X */
#define TILE_KEYS_MAX 64       /* keys per tile (dot_rows output) */
#define TASK_KEYS 256          /* keys per task (about, a multiple of the tile) */
#define TASK_ROWS 4            /* query rows per task */
#define ROUND_FLOATS (1 << 18) /* score rows of one round: 1 MiB (or one row) */

struct mha_additive_model {
    mha_additive_config cfg; /* resolved */
    const mha_kernels *kern;
    mha_packed q; /* W_q, bias b_q + b_k (only the sum enters the tanh) */
    mha_packed k; /* W_k, no bias */
    float *w_v;   /* [h] */
};

void mha_additive_model_destroy(mha_additive_model *model)
{
    if (!model)
        return;
    mha_packed_free(&model->q);
    mha_packed_free(&model->k);
    free(model->w_v);
    free(model);
}

mha_status mha_additive_model_create(const mha_additive_config *config,
                                     const mha_additive_weights *weights,
                                     mha_additive_model **model)
{
    if (!config || !weights || !model)
        return MHA_ERR_NULL_POINTER;
    mha_additive_config c;
    mha_status st = mha_additive_config_resolve(config, &c);
    if (st == MHA_OK)
        st = mha_additive_weights_check(weights);
    if (st != MHA_OK)
        return st;
    const int64_t h = c.hidden_dim;
    mha_additive_model *m = calloc(1, sizeof *m);
    float *bias = weights->q_bias || weights->k_bias ? malloc((size_t)h * sizeof *bias) : NULL;
    if (!m || ((weights->q_bias || weights->k_bias) && !bias)) {
        free(m);
        free(bias);
        return MHA_ERR_NO_MEMORY;
    }
    for (int64_t i = 0; bias && i < h; i++)
        bias[i] = (weights->q_bias ? weights->q_bias[i] : 0.0f) +
                  (weights->k_bias ? weights->k_bias[i] : 0.0f);
    m->cfg = c;
    m->kern = mha_kernels_active();
    st = mha_pack_weight(m->kern, weights->q_weight, c.query_dim, bias, h, c.query_dim, 1.0f, &m->q);
    if (st == MHA_OK)
        st = mha_pack_weight(m->kern, weights->k_weight, c.key_dim, NULL, h, c.key_dim, 1.0f, &m->k);
    if (st == MHA_OK && !(m->w_v = malloc((size_t)h * sizeof(float))))
        st = MHA_ERR_NO_MEMORY;
    free(bias);
    if (st != MHA_OK) {
        mha_additive_model_destroy(m);
        return st;
    }
    memcpy(m->w_v, weights->v_weight, (size_t)h * sizeof(float));
    *model = m;
    return MHA_OK;
}

/* ------------------------------------------------------------------- plan */

typedef struct plan {
    int64_t h, hc, nk, kc;  /* hidden units, per chunk; keys per tile, per task */
    int64_t rows, lq, lk;   /* B*Lq query rows */
    int64_t round_rows;     /* query rows per round */
    size_t qp, kp, s, thr;  /* byte offsets of the slices */
    size_t pack;            /* byte offset of the projections' A-packing buffers */
    size_t thread_floats;   /* X and one tile of partial scores */
    size_t total;           /* bytes, with the base alignment */
} plan;

static mha_status plan_for(const mha_additive_model *m, int64_t batch, int64_t lq, int64_t lk,
                           int threads, plan *p)
{
    const int64_t h = m->cfg.hidden_dim;
    int64_t rows, nqp, nkp, ns;
    if (!mha_mul(batch, lq, &rows) || !mha_mul(rows, h, &nqp) || !mha_mul3(batch, lk, h, &nkp) ||
        nqp > MHA_MAX_ELEMS || nkp > MHA_MAX_ELEMS)
        return MHA_ERR_OVERFLOW;
    p->h = h;
    p->hc = h < CHUNK_MAX ? h : CHUNK_MAX;
    p->nk = TILE_FLOATS / p->hc > TILE_KEYS_MAX ? TILE_KEYS_MAX : TILE_FLOATS / p->hc;
    p->kc = p->nk * (TASK_KEYS / p->nk > 0 ? TASK_KEYS / p->nk : 1);
    p->rows = rows, p->lq = lq, p->lk = lk;
    p->round_rows = ROUND_FLOATS / lk > 1 ? ROUND_FLOATS / lk : 1;
    if (p->round_rows > rows)
        p->round_rows = rows;
    /* Sized by the bound min(rows*Lk, max(Lk, ROUND_FLOATS)) rather than this
     * shape's round, which keeps the size monotone in the shape. */
    ns = lk > ROUND_FLOATS ? lk : ROUND_FLOATS;
    if (rows <= ns / lk)
        ns = rows * lk;
    p->thread_floats = TILE_FLOATS + TILE_KEYS_MAX;
    p->qp = 0;
    p->kp = p->qp + mha_round_up((size_t)nqp * sizeof(float));
    p->s = p->kp + mha_round_up((size_t)nkp * sizeof(float));
    p->thr = p->s + mha_round_up((size_t)ns * sizeof(float));
    size_t pack = mha_gemm_pack_floats(m->kern, rows, m->cfg.query_dim), pk;
    if ((pk = mha_gemm_pack_floats(m->kern, batch * lk, m->cfg.key_dim)) > pack)
        pack = pk;
    p->pack = p->thr + (size_t)threads * p->thread_floats * sizeof(float);
    p->total = p->pack + (size_t)threads * pack * sizeof(float) + MHA_ALIGN;
    return MHA_OK;
}

mha_status mha_additive_workspace_size(const mha_additive_model *model, int64_t batch,
                                       int64_t len_q, int64_t len_k, int num_threads,
                                       size_t *bytes)
{
    if (!model || !bytes)
        return MHA_ERR_NULL_POINTER;
    if (batch <= 0 || len_q <= 0 || len_k <= 0)
        return MHA_ERR_BAD_SIZE;
    if (!mha_threads_valid(num_threads))
        return MHA_ERR_THREADS;
    plan p;
    mha_status st = plan_for(model, batch, len_q, len_k, mha_threads(num_threads), &p);
    if (st == MHA_OK)
        *bytes = p.total;
    return st;
}

/* ----------------------------------------------------------------- scores */

/* Keys [0, end) that query row i of batch b may see by the lengths and causal masks. */
static int64_t visible_end(const mha_additive_args *a, int64_t b, int64_t i)
{
    int64_t end = a->len_k;
    if (a->mask.key_lengths && a->mask.key_lengths[b] < end)
        end = a->mask.key_lengths[b];
    if (a->row_key_lengths && a->row_key_lengths[b * a->len_q + i] < end)
        end = a->row_key_lengths[b * a->len_q + i];
    if (a->mask.causal != MHA_CAUSAL_NONE) {
        int64_t off = a->mask.causal == MHA_CAUSAL_EXPLICIT ? a->mask.causal_offset
                                                             : a->len_k - a->len_q;
        /* Row i sees j <= i + off; clamped first so that any int64 offset is safe. */
        off = off > a->len_k ? a->len_k : off < -a->len_q - 1 ? -a->len_q - 1 : off;
        if (i + off + 1 < end)
            end = i + off + 1;
    }
    return end < 0 ? 0 : end;
}

/* s[j] = w_v . tanh(qp + kp_j) for the n (<= nk) keys of one tile, kp rows h apart. */
static void score_tile(const mha_kernels *kern, const plan *p, const float *w_v, const float *qp,
                       const float *kp, int64_t n, float *x, float *part, float *s)
{
    for (int64_t c0 = 0; c0 < p->h; c0 += p->hc) {
        const int64_t w = p->h - c0 < p->hc ? p->h - c0 : p->hc;
        for (int64_t j = 0; j < n; j++) {
            memcpy(x + j * w, kp + j * p->h + c0, (size_t)w * sizeof(float));
            kern->f32_scale_add(x + j * w, 1.0f, qp + c0, (size_t)w);
        }
        kern->f32_tanh(x, x, (size_t)(n * w));
        float *dst = c0 == 0 ? s : part;
        kern->f32_dot_rows(w_v + c0, x, (size_t)w, (size_t)n, (size_t)w, dst);
        for (int64_t j = 0; c0 > 0 && j < n; j++)
            s[j] += part[j];
    }
}

/* Phase 1, one task: rows [r0, r1) (of all B*Lq) x keys [k0, k1), into the round's
 * score rows S (row r at S + (r - first) * Lk). */
static void score_task(const mha_additive_model *m, const mha_additive_args *a, const plan *p,
                       const float *qp, const float *kp, int64_t first, int64_t r0, int64_t r1,
                       int64_t k0, int64_t k1, float *S, float *scratch)
{
    float *x = scratch, *part = scratch + TILE_FLOATS;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t b = r / p->lq, i = r % p->lq;
        const int64_t seen = visible_end(a, b, i), end = seen < k1 ? seen : k1;
        float *srow = S + (r - first) * p->lk;
        for (int64_t j = k0; j < end; j += p->nk)
            score_tile(m->kern, p, m->w_v, qp + r * p->h, kp + (b * p->lk + j) * p->h,
                       end - j < p->nk ? end - j : p->nk, x, part, srow + j);
    }
}

/* Phase 2, one row: masks, softmax over the visible keys, weights, out = P V. */
static void finish_row(const mha_kernels *kern, const mha_additive_args *a, int64_t r, float *srow)
{
    const int64_t b = r / a->len_q, i = r % a->len_q, lk = a->len_k, dv = a->value_dim;
    const int64_t end = visible_end(a, b, i);
    const mha_mask *mk = &a->mask;
    float *out = a->out + r * dv, *wrow = a->weights ? a->weights + r * lk : NULL;
    if (end > 0 && mk->float_mask.data)
        kern->f32_scale_add(srow, 1.0f,
                            (const float *)mk->float_mask.data + b * mk->float_mask.stride_b +
                                i * mk->float_mask.stride_q,
                            (size_t)end);
    if (end > 0 && mk->bool_mask.data)
        kern->f32_mask_u8(srow,
                          (const uint8_t *)mk->bool_mask.data + b * mk->bool_mask.stride_b +
                              i * mk->bool_mask.stride_q,
                          (size_t)end);
    const float mx = end > 0 ? kern->f32_rowmax(srow, (size_t)end) : -INFINITY;
    memset(out, 0, (size_t)dv * sizeof(float));
    if (wrow)
        memset(wrow, 0, (size_t)lk * sizeof(float));
    if (mx == -INFINITY) /* the row sees no key: zeros */
        return;
    const float sum = kern->f32_exp_sub_sum(srow, mx, srow, (size_t)end);
    kern->f32_scale(srow, 1.0f / sum, (size_t)end);
    if (wrow)
        memcpy(wrow, srow, (size_t)end * sizeof(float));
    kern->f32_axpy_rows(srow, a->value + b * lk * dv, (size_t)dv, (size_t)end, (size_t)dv, out);
}

/* ---------------------------------------------------------------- forward */

static bool workspace_aliases(const mha_additive_config *c, const mha_additive_args *a,
                              const void *ws, size_t bytes)
{
    const mha_shape s = mha_additive_shape(a);
    const size_t rows = (size_t)(a->batch * a->len_q), keys = (size_t)(a->batch * a->len_k);
    return mha_ranges_overlap(ws, bytes, a->query, rows * (size_t)c->query_dim * sizeof(float)) ||
           mha_ranges_overlap(ws, bytes, a->key, keys * (size_t)c->key_dim * sizeof(float)) ||
           mha_ranges_overlap(ws, bytes, a->value, keys * (size_t)a->value_dim * sizeof(float)) ||
           mha_ranges_overlap(ws, bytes, a->out, rows * (size_t)a->value_dim * sizeof(float)) ||
           mha_ranges_overlap(ws, bytes, a->weights, rows * (size_t)a->len_k * sizeof(float)) ||
           mha_ranges_overlap(ws, bytes, a->row_key_lengths, rows * sizeof(int32_t)) ||
           mha_mask_overlaps(&a->mask, &s, ws, bytes);
}

mha_status mha_additive_forward(const mha_additive_model *model, const mha_additive_args *a,
                                void *workspace, size_t workspace_bytes)
{
    if (!model)
        return MHA_ERR_NULL_POINTER;
    mha_status st = mha_additive_args_check(&model->cfg, a);
    if (st != MHA_OK)
        return st;
    if (model->kern != mha_kernels_active())
        return MHA_ERR_ISA;
    const int threads = mha_threads(a->num_threads);
    plan p;
    st = plan_for(model, a->batch, a->len_q, a->len_k, threads, &p);
    if (st != MHA_OK)
        return st;
    if (!workspace || workspace_bytes < p.total)
        return MHA_ERR_WORKSPACE;
    if (workspace_aliases(&model->cfg, a, workspace, workspace_bytes))
        return MHA_ERR_ALIAS;

    const mha_kernels *kern = model->kern;
    char *base = (char *)(((uintptr_t)workspace + MHA_ALIGN - 1) & ~(uintptr_t)(MHA_ALIGN - 1));
    float *qp = (float *)(base + p.qp), *kp = (float *)(base + p.kp), *S = (float *)(base + p.s);
    float *per_thread = (float *)(base + p.thr);
    const mha_gemm_job proj[2] = {
        {a->query, model->cfg.query_dim, &model->q, qp, p.h, p.rows},
        {a->key, model->cfg.key_dim, &model->k, kp, p.h, a->batch * a->len_k},
    };
    mha_gemm_run(kern, proj, 2, threads, (float *)(base + p.pack));

    const int64_t chunks = (a->len_k + p.kc - 1) / p.kc;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *mine = per_thread + (size_t)omp_get_thread_num() * p.thread_floats;
        for (int64_t first = 0; first < p.rows; first += p.round_rows) {
            const int64_t n = p.rows - first < p.round_rows ? p.rows - first : p.round_rows;
            const int64_t tasks = (n + TASK_ROWS - 1) / TASK_ROWS * chunks;
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < tasks; t++) {
                const int64_t r0 = first + t / chunks * TASK_ROWS, k0 = t % chunks * p.kc;
                score_task(model, a, &p, qp, kp, first, r0,
                           r0 + TASK_ROWS < first + n ? r0 + TASK_ROWS : first + n, k0,
                           k0 + p.kc < a->len_k ? k0 + p.kc : a->len_k, S, mine);
            }
#pragma omp for schedule(static)
            for (int64_t r = first; r < first + n; r++)
                finish_row(kern, a, r, S + (r - first) * p.lk);
        }
    }
    return MHA_OK;
}
