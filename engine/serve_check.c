/* Argument checks of the serving entries: batch lengths, plan, cache and block
 * table, attention tensors. Nothing is written before all of them pass. */
#include <math.h>
#include <string.h>

#include "serve.h"

mha_status serve_check_lengths(const mha_batch *b, const mha_kv_cache *c, bool for_model)
{
    if (!b->q_start || !b->kv_len)
        return MHA_ERR_NULL_POINTER;
    if (b->num_seqs <= 0)
        return MHA_ERR_BAD_SIZE;
    if (c->layout != MHA_KV_CONTIGUOUS && c->layout != MHA_KV_PAGED)
        return MHA_ERR_CACHE;
    int64_t cap;
    if (c->layout == MHA_KV_CONTIGUOUS) {
        if (c->num_seqs <= 0 || c->max_len <= 0)
            return MHA_ERR_CACHE;
        if (!mha_mul(c->num_seqs, c->max_len, &cap))
            return MHA_ERR_OVERFLOW;
    } else {
        if (c->block_size <= 0 || c->block_size % 16 != 0 || c->num_blocks <= 0)
            return MHA_ERR_CACHE;
        if (!mha_mul(c->num_blocks, c->block_size, &cap))
            return MHA_ERR_OVERFLOW;
    }
    /* The layer step and append put the new rows into the sequence: causal only. */
    if (b->q_start[0] != 0 || (for_model && b->non_causal))
        return MHA_ERR_BATCH;
    for (int64_t s = 0; s < b->num_seqs; s++) {
        int64_t ql = (int64_t)b->q_start[s + 1] - b->q_start[s], kl = b->kv_len[s];
        if (ql <= 0 || kl <= 0 || (ql > kl && !b->non_causal))
            return MHA_ERR_BATCH;
        if (c->layout == MHA_KV_CONTIGUOUS && kl > c->max_len)
            return MHA_ERR_BATCH;
    }
    return MHA_OK;
}

mha_status serve_check_plan(const mha_serve_plan *p, const mha_batch *b)
{
    if (!p || !b)
        return MHA_ERR_NULL_POINTER;
    if (p->magic != 0x6d68617365727665ull)
        return MHA_ERR_PLAN;
    if (!b->q_start || !b->kv_len)
        return MHA_ERR_NULL_POINTER;
    if (b->num_seqs != p->num_seqs || (b->non_causal != 0) != p->non_causal ||
        memcmp(b->q_start, plan_q_start(p), (size_t)(p->num_seqs + 1) * sizeof(int32_t)) != 0 ||
        memcmp(b->kv_len, plan_kv_len(p), (size_t)p->num_seqs * sizeof(int32_t)) != 0)
        return MHA_ERR_PLAN;
    return MHA_OK;
}

/* The block table row of sequence s and its length. */
static const int32_t *table_row(const mha_batch *b, int64_t s, int64_t *len)
{
    if (b->block_start) {
        *len = (int64_t)b->block_start[s + 1] - b->block_start[s];
        return b->block_table + b->block_start[s];
    }
    *len = b->max_blocks;
    return b->block_table + s * (b->block_table_stride ? b->block_table_stride : b->max_blocks);
}

static mha_status check_table(const mha_batch *b, const serve_cache *c)
{
    if (!b->block_table)
        return MHA_ERR_NULL_POINTER;
    if (b->block_start) {
        if (b->block_start[0] < 0)
            return MHA_ERR_CACHE;
        for (int64_t s = 0; s < b->num_seqs; s++)
            if (b->block_start[s + 1] < b->block_start[s])
                return MHA_ERR_CACHE;
    } else if (b->max_blocks <= 0 || b->block_table_stride < 0 ||
               (b->block_table_stride && b->block_table_stride < b->max_blocks)) {
        return MHA_ERR_CACHE;
    } else {
        int64_t e;
        if (!mha_mul(b->num_seqs, b->block_table_stride ? b->block_table_stride : b->max_blocks, &e))
            return MHA_ERR_OVERFLOW;
    }
    for (int64_t s = 0; s < b->num_seqs; s++) {
        int64_t len, need = (b->kv_len[s] + c->bs - 1) / c->bs;
        const int32_t *row = table_row(b, s, &len);
        if (len < need)
            return MHA_ERR_CACHE;
        for (int64_t i = 0; i < need; i++)
            if (row[i] < 0 || row[i] >= c->num_blocks)
                return MHA_ERR_CACHE;
    }
    return MHA_OK;
}

void serve_cache_bytes(const serve_cache *c, size_t *k_bytes, size_t *v_bytes)
{
    if (c->layout == MHA_KV_PAGED) {
        *k_bytes = (size_t)(c->num_blocks * c->G * c->bs * c->dk) * sizeof(float);
        *v_bytes = (size_t)(c->num_blocks * c->G * c->bs * c->dv) * sizeof(float);
        return;
    }
    int64_t ek, ev;
    mha_strided_extent(c->ks, c->rows, c->G, c->max_len, c->dk, &ek);
    mha_strided_extent(c->vs, c->rows, c->G, c->max_len, c->dv, &ev);
    *k_bytes = (size_t)ek * sizeof(float);
    *v_bytes = (size_t)ev * sizeof(float);
}

/* Contiguous: strides resolved and checked, cache rows of the batch in range. */
static mha_status check_contiguous(const mha_batch *b, const mha_kv_cache *in, serve_cache *c)
{
    c->rows = in->num_seqs;
    c->max_len = in->max_len;
    if (c->rows <= 0 || c->max_len <= 0)
        return MHA_ERR_CACHE;
    const int64_t dk[3] = {c->max_len * c->G * c->dk, c->dk, c->G * c->dk},
                  dv[3] = {c->max_len * c->G * c->dv, c->dv, c->G * c->dv};
    for (int i = 0; i < 3; i++) {
        if (in->k_stride[i] < 0 || in->v_stride[i] < 0)
            return MHA_ERR_STRIDE;
        c->ks[i] = in->k_stride[i] ? in->k_stride[i] : dk[i];
        c->vs[i] = in->v_stride[i] ? in->v_stride[i] : dv[i];
    }
    int64_t e;
    if (!mha_strided_extent(c->ks, c->rows, c->G, c->max_len, c->dk, &e) ||
        !mha_strided_extent(c->vs, c->rows, c->G, c->max_len, c->dv, &e))
        return MHA_ERR_OVERFLOW;
    if (!mha_strided_disjoint(c->ks, c->rows, c->G, c->max_len, c->dk) ||
        !mha_strided_disjoint(c->vs, c->rows, c->G, c->max_len, c->dv))
        return MHA_ERR_STRIDE;
    for (int64_t s = 0; s < b->num_seqs; s++) {
        if (b->kv_len[s] > c->max_len)
            return MHA_ERR_CACHE;
        if (b->cache_seq && (b->cache_seq[s] < 0 || b->cache_seq[s] >= c->rows))
            return MHA_ERR_CACHE;
    }
    return MHA_OK;
}

mha_status serve_check_cache(const mha_serve_plan *p, const mha_batch *b, const mha_kv_cache *in,
                             serve_cache *c)
{
    if (!in)
        return MHA_ERR_NULL_POINTER;
    if (!in->k || !in->v)
        return MHA_ERR_NULL_POINTER;
    if (in->layout != p->layout || (in->layout == MHA_KV_PAGED && in->block_size != p->block_size))
        return MHA_ERR_PLAN;
    if (in->dtype != MHA_DTYPE_F32 || in->num_kv_heads != p->dims.kv_heads ||
        in->head_dim_qk != p->dims.dk || in->head_dim_v != p->dims.dv)
        return MHA_ERR_CACHE;
    memset(c, 0, sizeof *c);
    c->layout = in->layout;
    c->G = in->num_kv_heads;
    c->dk = in->head_dim_qk;
    c->dv = in->head_dim_v;
    c->k = in->k;
    c->v = in->v;
    mha_status st;
    int64_t slots;
    if (in->layout == MHA_KV_CONTIGUOUS) {
        st = check_contiguous(b, in, c);
        slots = c->rows * c->max_len;
    } else {
        c->bs = in->block_size;
        c->num_blocks = in->num_blocks;
        int64_t e;
        if (c->num_blocks <= 0)
            return MHA_ERR_CACHE;
        if (!mha_mul3(c->num_blocks * c->G, c->bs, c->dk > c->dv ? c->dk : c->dv, &e) ||
            e > MHA_MAX_ELEMS)
            return MHA_ERR_OVERFLOW;
        st = check_table(b, c);
        slots = c->num_blocks * c->bs;
    }
    if (st != MHA_OK)
        return st;
    /* The append bitmap covers the slots the plan saw. */
    if (p->model && slots > p->slots)
        return MHA_ERR_PLAN;
    size_t kb, vb;
    serve_cache_bytes(c, &kb, &vb);
    if (mha_ranges_overlap(c->k, kb, c->v, vb))
        return MHA_ERR_ALIAS;
    return MHA_OK;
}

bool serve_overlaps_batch(const mha_batch *b, const void *p, size_t n)
{
    size_t table = 0;
    if (b->block_table)
        table = (size_t)(b->block_start ? b->block_start[b->num_seqs]
                                        : (b->num_seqs - 1) * (b->block_table_stride ? b->block_table_stride
                                                                                     : b->max_blocks) +
                                              b->max_blocks);
    return mha_ranges_overlap(p, n, b->q_start, (size_t)(b->num_seqs + 1) * sizeof(int32_t)) ||
           mha_ranges_overlap(p, n, b->kv_len, (size_t)b->num_seqs * sizeof(int32_t)) ||
           mha_ranges_overlap(p, n, b->cache_seq, b->cache_seq ? (size_t)b->num_seqs * sizeof(int32_t) : 0) ||
           mha_ranges_overlap(p, n, b->block_start, b->block_start ? (size_t)(b->num_seqs + 1) * sizeof(int32_t) : 0) ||
           mha_ranges_overlap(p, n, b->block_table, table * sizeof(int32_t));
}

bool serve_overlaps_inputs(const mha_batch *b, const serve_cache *c, const void *p, size_t n)
{
    size_t kb, vb;
    serve_cache_bytes(c, &kb, &vb);
    return serve_overlaps_batch(b, p, n) || mha_ranges_overlap(p, n, c->k, kb) ||
           mha_ranges_overlap(p, n, c->v, vb);
}

mha_status serve_check_attention(const mha_serve_plan *p, const mha_batch *b,
                                 const mha_serve_attention_args *a, const serve_cache *c,
                                 int64_t qs[2], int64_t os[2], float *scale)
{
    if (!a)
        return MHA_ERR_NULL_POINTER;
    if (!a->q || !a->out)
        return MHA_ERR_NULL_POINTER;
    if (!isfinite(a->scale))
        return MHA_ERR_SCALE;
    const mha_shape *d = &p->dims;
    const int64_t T = p->total_rows, H = d->heads;
    for (int i = 0; i < 2; i++)
        if (a->q_stride[i] < 0 || a->out_stride[i] < 0)
            return MHA_ERR_STRIDE;
    qs[0] = a->q_stride[0] ? a->q_stride[0] : H * d->dk;
    qs[1] = a->q_stride[1] ? a->q_stride[1] : d->dk;
    os[0] = a->out_stride[0] ? a->out_stride[0] : H * d->dv;
    os[1] = a->out_stride[1] ? a->out_stride[1] : d->dv;
    const int64_t q3[3] = {qs[0], qs[1], 0}, o3[3] = {os[0], os[1], 0};
    int64_t eq, eo;
    if (!mha_strided_extent(q3, T, H, 1, d->dk, &eq) || !mha_strided_extent(o3, T, H, 1, d->dv, &eo))
        return MHA_ERR_OVERFLOW;
    if (!mha_strided_disjoint(o3, T, H, 1, d->dv))
        return MHA_ERR_STRIDE;
    const size_t ob = (size_t)eo * sizeof(float), lb = (size_t)(T * H) * sizeof(float);
    if (mha_ranges_overlap(a->out, ob, a->q, (size_t)eq * sizeof(float)) ||
        serve_overlaps_inputs(b, c, a->out, ob) || mha_ranges_overlap(a->out, ob, a->lse, a->lse ? lb : 0) ||
        (a->lse && (mha_ranges_overlap(a->lse, lb, a->q, (size_t)eq * sizeof(float)) ||
                    serve_overlaps_inputs(b, c, a->lse, lb))))
        return MHA_ERR_ALIAS;
    *scale = a->scale != 0.0f ? a->scale : (float)(1.0 / sqrt((double)d->dk));
    return MHA_OK;
}

mha_status serve_check_attention_call(const mha_serve_plan *p, const mha_batch *b, const mha_kv_cache *cache,
                                      const mha_serve_attention_args *a, serve_call *k)
{
    mha_status st = serve_check_plan(p, b);
    if (st == MHA_OK)
        st = serve_check_cache(p, b, cache, &k->c);
    if (st == MHA_OK)
        st = serve_check_attention(p, b, a, &k->c, k->qs, k->os, &k->scale);
    return st;
}
