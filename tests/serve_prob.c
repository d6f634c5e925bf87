#include "serve_prob.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *serve_kind_name(int kind)
{
    static const char *names[] = {"contiguous", "contiguous strided", "paged", "paged CSR"};
    return names[kind];
}

static int64_t rand_below(test_rng *r, int64_t n)
{
    int64_t x = (int64_t)test_rng_uniform(r, 0.0f, (float)n);
    return x < n ? x : n - 1;
}

static void shuffle(test_rng *r, int32_t *x, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = rand_below(r, i + 1);
        int32_t t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

void serve_random_lengths(test_rng *r, int64_t n, int32_t max_q, int32_t max_kv, int32_t budget,
                          int32_t *q_len, int32_t *kv_len)
{
    for (int64_t s = 0; s < n; s++) {
        kv_len[s] = (int32_t)(1 + rand_below(r, max_kv));
        int32_t lim = s % 3 == 0 ? 4 : max_q;
        lim = lim < kv_len[s] ? lim : kv_len[s];
        lim = lim < budget / kv_len[s] ? lim : (budget / kv_len[s] > 1 ? budget / kv_len[s] : 1);
        q_len[s] = (int32_t)(1 + rand_below(r, lim));
    }
}

static float *fill_nan(size_t floats)
{
    float *x = xmalloc(floats * sizeof(float));
    for (size_t i = 0; i < floats; i++)
        x[i] = NAN;
    return x;
}

/* Copies each sequence's dense K/V into the cache. */
void serve_prob_lay_out(serve_prob *p)
{
    const mha_kv_cache *c = &p->cache;
    float *kp = c->k, *vp = c->v;
    for (int64_t s = 0; s < p->n; s++)
        for (int64_t j = 0; j < p->kv_len[s]; j++)
            for (int64_t g = 0; g < p->G; g++) {
                float *kd, *vd;
                if (c->layout == MHA_KV_CONTIGUOUS) {
                    int64_t row = p->rows[s];
                    kd = kp + row * c->k_stride[0] + g * c->k_stride[1] + j * c->k_stride[2];
                    vd = vp + row * c->v_stride[0] + g * c->v_stride[1] + j * c->v_stride[2];
                } else {
                    const int32_t *t = p->batch.block_start ? p->table + p->starts[s]
                                                            : p->table + s * p->batch.block_table_stride;
                    int64_t blk = t[j / c->block_size], off = j % c->block_size;
                    kd = kp + ((blk * p->G + g) * c->block_size + off) * p->dk;
                    vd = vp + ((blk * p->G + g) * c->block_size + off) * p->dv;
                }
                memcpy(kd, p->K[s] + (j * p->G + g) * p->dk, (size_t)p->dk * sizeof(float));
                memcpy(vd, p->V[s] + (j * p->G + g) * p->dv, (size_t)p->dv * sizeof(float));
            }
}

void serve_prob_init(serve_prob *p, uint64_t seed, int64_t n, int64_t H, int64_t G, int64_t dk,
                     int64_t dv, const int32_t *q_len, const int32_t *kv_len, int kind,
                     int64_t block_size)
{
    test_rng r = test_rng_seed(seed);
    memset(p, 0, sizeof *p);
    p->n = n;
    p->H = H;
    p->G = G;
    p->dk = dk;
    p->dv = dv;
    p->q_start = xmalloc((size_t)(n + 1) * sizeof(int32_t));
    p->kv_len = xmalloc((size_t)n * sizeof(int32_t));
    p->K = xmalloc((size_t)n * sizeof(float *));
    p->V = xmalloc((size_t)n * sizeof(float *));
    p->q_start[0] = 0;
    int64_t max_kv = 0, blocks = 0, max_need = 0;
    for (int64_t s = 0; s < n; s++) {
        p->q_start[s + 1] = p->q_start[s] + q_len[s];
        p->kv_len[s] = kv_len[s];
        p->K[s] = test_random(&r, (size_t)(kv_len[s] * G * dk), -1.0f, 1.0f);
        p->V[s] = test_random(&r, (size_t)(kv_len[s] * G * dv), -1.0f, 1.0f);
        max_kv = kv_len[s] > max_kv ? kv_len[s] : max_kv;
        if (block_size) {
            int64_t need = (kv_len[s] + block_size - 1) / block_size;
            blocks += need;
            max_need = need > max_need ? need : max_need;
        }
    }
    p->T = p->q_start[n];
    p->q = test_random(&r, (size_t)(p->T * H * dk), -1.0f, 1.0f);
    mha_kv_cache *c = &p->cache;
    c->num_kv_heads = G;
    c->head_dim_qk = dk;
    c->head_dim_v = dv;
    p->batch.num_seqs = n;
    p->batch.q_start = p->q_start;
    p->batch.kv_len = p->kv_len;
    if (kind == SP_CONTIGUOUS || kind == SP_STRIDED) {
        /* n + 2 rows, sequences in shuffled ones; strided: padded tokens and rows,
         * heads interleaved with the token stride. */
        const int64_t rows = n + 2, L = max_kv + 3;
        p->rows = xmalloc((size_t)rows * sizeof(int32_t));
        for (int64_t i = 0; i < rows; i++)
            p->rows[i] = (int32_t)i;
        shuffle(&r, p->rows, rows);
        c->layout = MHA_KV_CONTIGUOUS;
        c->num_seqs = rows;
        c->max_len = L;
        int64_t pad = kind == SP_STRIDED ? 3 : 0;
        const int64_t ks[3] = {L * (G * dk + pad) + 5 * (pad > 0), dk, G * dk + pad},
                      vs[3] = {L * (G * dv + pad) + 7 * (pad > 0), dv, G * dv + pad};
        memcpy(c->k_stride, ks, sizeof ks);
        memcpy(c->v_stride, vs, sizeof vs);
        p->k_bytes = (size_t)(rows * ks[0]) * sizeof(float);
        p->v_bytes = (size_t)(rows * vs[0]) * sizeof(float);
        p->batch.cache_seq = p->rows;
    } else {
        const int64_t nb = blocks + 3;
        int32_t *perm = xmalloc((size_t)nb * sizeof(int32_t));
        for (int64_t i = 0; i < nb; i++)
            perm[i] = (int32_t)i;
        shuffle(&r, perm, nb);
        c->layout = MHA_KV_PAGED;
        c->block_size = block_size;
        c->num_blocks = nb;
        p->k_bytes = (size_t)(nb * G * block_size * dk) * sizeof(float);
        p->v_bytes = (size_t)(nb * G * block_size * dv) * sizeof(float);
        int64_t used = 0;
        if (kind == SP_PAGED_CSR) {
            p->starts = xmalloc((size_t)(n + 1) * sizeof(int32_t));
            p->table = xmalloc((size_t)(blocks ? blocks : 1) * sizeof(int32_t));
            p->starts[0] = 0;
            for (int64_t s = 0; s < n; s++) {
                int64_t need = (kv_len[s] + block_size - 1) / block_size;
                for (int64_t i = 0; i < need; i++)
                    p->table[p->starts[s] + i] = perm[used++];
                p->starts[s + 1] = p->starts[s] + (int32_t)need;
            }
            p->batch.block_start = p->starts;
        } else {
            /* Rows longer than needed, a stride past them; unused entries -1. */
            const int64_t mb = max_need + 1, stride = mb + 2;
            p->table = xmalloc((size_t)(n * stride) * sizeof(int32_t));
            for (int64_t i = 0; i < n * stride; i++)
                p->table[i] = -1;
            for (int64_t s = 0; s < n; s++)
                for (int64_t i = 0; i < (kv_len[s] + block_size - 1) / block_size; i++)
                    p->table[s * stride + i] = perm[used++];
            p->batch.max_blocks = mb;
            p->batch.block_table_stride = stride;
        }
        p->batch.block_table = p->table;
        free(perm);
    }
    c->k = fill_nan(p->k_bytes / sizeof(float));
    c->v = fill_nan(p->v_bytes / sizeof(float));
    serve_prob_lay_out(p);
}

void serve_prob_free(serve_prob *p)
{
    for (int64_t s = 0; s < p->n; s++) {
        free(p->K[s]);
        free(p->V[s]);
    }
    free(p->K);
    free(p->V);
    free(p->q);
    free(p->q_start);
    free(p->kv_len);
    free(p->cache.k);
    free(p->cache.v);
    free(p->table);
    free(p->starts);
    free(p->rows);
}

float *serve_expected(const serve_prob *p, float scale)
{
    float *want = xmalloc((size_t)(p->T * p->H * p->dv) * sizeof(float));
    for (int64_t s = 0; s < p->n; s++) {
        const int64_t ql = p->q_start[s + 1] - p->q_start[s], kl = p->kv_len[s];
        mha_attention_args a = {.batch = 1, .num_heads = p->H, .num_kv_heads = p->G, .len_q = ql,
                                .len_k = kl, .head_dim_qk = p->dk, .head_dim_v = p->dv,
                                .scale = scale};
        a.q = p->q + p->q_start[s] * p->H * p->dk;
        a.k = p->K[s];
        a.v = p->V[s];
        a.out = want + p->q_start[s] * p->H * p->dv;
        const int64_t qs[3] = {ql * p->H * p->dk, p->dk, p->H * p->dk},
                      ks[3] = {kl * p->G * p->dk, p->dk, p->G * p->dk},
                      vs[3] = {kl * p->G * p->dv, p->dv, p->G * p->dv},
                      os[3] = {ql * p->H * p->dv, p->dv, p->H * p->dv};
        memcpy(a.q_stride, qs, sizeof qs);
        memcpy(a.k_stride, ks, sizeof ks);
        memcpy(a.v_stride, vs, sizeof vs);
        memcpy(a.out_stride, os, sizeof os);
        a.mask.causal = p->batch.non_causal ? MHA_CAUSAL_NONE : MHA_CAUSAL_BOTTOM_RIGHT;
        mha_status st = mha_reference_attention(&a);
        require(st == MHA_OK, "reference of sequence %lld: %s", (long long)s, mha_status_message(st));
    }
    return want;
}

float *serve_run(const serve_prob *p, int threads, float scale, float *lse)
{
    mha_serve_plan_args pa = {.num_heads = p->H, .num_kv_heads = p->G, .head_dim_qk = p->dk,
                              .head_dim_v = p->dv, .batch = &p->batch, .cache = &p->cache,
                              .num_threads = threads};
    size_t pb, wb;
    mha_status st = mha_serve_plan_size(&pa, &pb, &wb);
    require(st == MHA_OK, "plan size: %s", mha_status_message(st));
    void *storage = xmalloc(pb), *ws = xmalloc(wb);
    mha_serve_plan *plan;
    st = mha_serve_plan_create(&pa, storage, pb, &plan);
    require(st == MHA_OK, "plan: %s", mha_status_message(st));
    float *out = xmalloc((size_t)(p->T * p->H * p->dv) * sizeof(float));
    mha_serve_attention_args a = {.q = p->q, .out = out, .lse = lse, .scale = scale};
    st = mha_serve_attention(plan, &p->batch, &p->cache, &a, ws, wb);
    require(st == MHA_OK, "[%s] serve attention: %s", isa_now(), mha_status_message(st));
    free(ws);
    free(storage);
    return out;
}
