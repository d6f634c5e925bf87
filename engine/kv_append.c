/* Appending new tokens' keys and values to the cache through the model's packed
 * W_k, W_v: projections into the workspace, then one copy per row and kv head
 * into its slot. The slots are checked (range, no two rows alike) before
 * anything is written. */
#include <string.h>

#include "serve.h"

mha_status serve_check_model_call(const mha_model *model, const mha_serve_plan *p,
                                  const mha_batch *b, const mha_kv_cache *cache, serve_cache *view,
                                  void *ws, size_t ws_bytes, const serve_range *r, int n)
{
    if (!model || !p)
        return MHA_ERR_NULL_POINTER;
    mha_status st = serve_check_plan(p, b);
    if (st != MHA_OK)
        return st;
    if (p->model != model)
        return MHA_ERR_PLAN;
    if (model->kern != mha_kernels_active())
        return MHA_ERR_ISA;
    st = serve_check_cache(p, b, cache, view);
    if (st != MHA_OK)
        return st;
    if (!ws || ws_bytes < p->ws_total)
        return MHA_ERR_WORKSPACE;
    if (serve_overlaps_inputs(b, view, ws, ws_bytes) || mha_ranges_overlap(ws, ws_bytes, p, p->bytes))
        return MHA_ERR_ALIAS;
    for (int i = 0; i < n; i++)
        if (mha_ranges_overlap(ws, ws_bytes, r[i].p, r[i].n))
            return MHA_ERR_ALIAS;
    return MHA_OK;
}

static int64_t slot_of_row(const mha_batch *b, const serve_cache *c, const int64_t *slots,
                           int64_t s, int64_t t)
{
    if (slots)
        return slots[t];
    int64_t ql = b->q_start[s + 1] - b->q_start[s];
    return serve_slot_of(c, b, s, b->kv_len[s] - ql + (t - b->q_start[s]));
}

mha_status serve_append_check(const mha_serve_plan *p, const mha_batch *b, const serve_cache *c,
                              const int64_t *slots, uint64_t *bits)
{
    size_t kb, vb;
    serve_cache_bytes(c, &kb, &vb);
    const size_t sb = slots ? (size_t)p->total_rows * sizeof(int64_t) : 0;
    if (serve_overlaps_batch(b, c->k, kb) || serve_overlaps_batch(b, c->v, vb) ||
        mha_ranges_overlap(c->k, kb, slots, sb) || mha_ranges_overlap(c->v, vb, slots, sb) ||
        mha_ranges_overlap(c->k, kb, p, p->bytes) || mha_ranges_overlap(c->v, vb, p, p->bytes))
        return MHA_ERR_ALIAS;
    const int64_t nslots = c->layout == MHA_KV_PAGED ? c->num_blocks * c->bs : c->rows * c->max_len;
    memset(bits, 0, (size_t)(nslots + 63) / 64 * sizeof(uint64_t));
    for (int64_t s = 0; s < p->num_seqs; s++)
        for (int64_t t = b->q_start[s]; t < b->q_start[s + 1]; t++) {
            int64_t slot = slot_of_row(b, c, slots, s, t);
            if (slot < 0 || slot >= nslots || (bits[slot / 64] >> (slot % 64) & 1))
                return MHA_ERR_CACHE;
            bits[slot / 64] |= (uint64_t)1 << (slot % 64);
        }
    return MHA_OK;
}

void serve_append_store(const mha_serve_plan *p, const mha_batch *b, const serve_cache *c,
                        const int64_t *slots, const float *k, const float *v, int run_threads)
{
    const int64_t G = c->G, dk = c->dk, dv = c->dv;
    const int threads = mha_threads_for(run_threads, p->num_seqs);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
    for (int64_t s = 0; s < p->num_seqs; s++)
        for (int64_t t = b->q_start[s]; t < b->q_start[s + 1]; t++) {
            int64_t slot = slot_of_row(b, c, slots, s, t);
            for (int64_t g = 0; g < G; g++) {
                float *kd, *vd;
                serve_slot_ptrs(c, slot, g, &kd, &vd);
                memcpy(kd, k + (t * G + g) * dk, (size_t)dk * sizeof(float));
                memcpy(vd, v + (t * G + g) * dv, (size_t)dv * sizeof(float));
            }
        }
}

mha_status mha_kv_append(const mha_model *model, const mha_serve_plan *plan, const mha_batch *batch,
                         const mha_kv_cache *cache, const mha_kv_append_args *args, void *workspace,
                         size_t workspace_bytes)
{
    if (!args || !args->key_src || !args->value_src)
        return MHA_ERR_NULL_POINTER;
    serve_cache c;
    const int64_t T = plan ? plan->total_rows : 0;
    const serve_range in[3] = {
        {args->key_src, (size_t)(T * (model ? model->cfg.kdim : 0)) * sizeof(float)},
        {args->value_src, (size_t)(T * (model ? model->cfg.vdim : 0)) * sizeof(float)},
        {args->slots, args->slots ? (size_t)T * sizeof(int64_t) : 0},
    };
    mha_status st = serve_check_model_call(model, plan, batch, cache, &c, workspace, workspace_bytes, in, 3);
    if (st != MHA_OK)
        return st;
    size_t kb, vb;
    serve_cache_bytes(&c, &kb, &vb);
    for (int i = 0; i < 2; i++)
        if (mha_ranges_overlap(c.k, kb, in[i].p, in[i].n) || mha_ranges_overlap(c.v, vb, in[i].p, in[i].n))
            return MHA_ERR_ALIAS;
    char *ws = serve_align(workspace);
    st = serve_append_check(plan, batch, &c, args->slots, (uint64_t *)(ws + plan->ws_bits));
    if (st != MHA_OK)
        return st;
    const mha_config *cfg = &model->cfg;
    float *k = (float *)(ws + plan->ws_k), *v = (float *)(ws + plan->ws_v);
    mha_gemm_job jobs[2] = {
        {args->key_src, cfg->kdim, &model->k, k, cfg->num_kv_heads * cfg->head_dim_qk, T},
        {args->value_src, cfg->vdim, &model->v, v, cfg->num_kv_heads * cfg->head_dim_v, T},
    };
    const int threads = serve_threads_enter(plan);
    mha_gemm_run(model->kern, jobs, 2, threads, (float *)(ws + plan->ws_threads));
    serve_append_store(plan, batch, &c, args->slots, k, v, threads);
    mha_threads_leave();
    return MHA_OK;
}
