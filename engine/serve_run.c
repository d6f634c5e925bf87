/* The serving entries that attend: attention only (on the caller's Q) and the
 * whole layer step (Q/K/V projections, append, attention, output projection). */
#include "serve.h"

mha_status mha_serve_attention(const mha_serve_plan *plan, const mha_batch *batch,
                               const mha_kv_cache *cache, const mha_serve_attention_args *args,
                               void *workspace, size_t workspace_bytes)
{
    serve_call k;
    mha_status st = serve_check_attention_call(plan, batch, cache, args, &k);
    if (st != MHA_OK)
        return st;
    if (!workspace || workspace_bytes < plan->ws_total)
        return MHA_ERR_WORKSPACE;
    const int64_t T = plan->total_rows, H = plan->dims.heads, *qs = k.qs, *os = k.os;
    const serve_cache *c = &k.c;
    const size_t qb = (size_t)((T - 1) * qs[0] + (H - 1) * qs[1] + plan->dims.dk) * sizeof(float);
    const size_t ob = (size_t)((T - 1) * os[0] + (H - 1) * os[1] + plan->dims.dv) * sizeof(float);
    if (serve_overlaps_inputs(batch, c, workspace, workspace_bytes) ||
        mha_ranges_overlap(workspace, workspace_bytes, plan, plan->bytes) ||
        mha_ranges_overlap(workspace, workspace_bytes, args->q, qb) ||
        mha_ranges_overlap(workspace, workspace_bytes, args->out, ob) ||
        mha_ranges_overlap(workspace, workspace_bytes, args->lse, args->lse ? (size_t)(T * H) * sizeof(float) : 0))
        return MHA_ERR_ALIAS;
    const int threads = serve_threads_enter(plan);
    serve_attend(mha_kernels_active(), plan, batch, c, args->q, qs, k.scale, args->out, os, args->lse,
                 serve_align(workspace), threads);
    mha_threads_leave();
    return MHA_OK;
}

mha_status mha_serve_layer(const mha_model *model, const mha_serve_plan *plan, const mha_batch *batch,
                           const mha_kv_cache *cache, const mha_serve_layer_args *args,
                           void *workspace, size_t workspace_bytes)
{
    if (!args || !args->x || !args->out)
        return MHA_ERR_NULL_POINTER;
    if (model && (model->cfg.kdim != model->cfg.embed_dim || model->cfg.vdim != model->cfg.embed_dim))
        return MHA_ERR_NULL_POINTER; /* self-attention only, as mha_forward without key/value */
    serve_cache c;
    const int64_t T = plan ? plan->total_rows : 0;
    const mha_config *cfg = model ? &model->cfg : NULL;
    const serve_range in[2] = {
        {args->x, cfg ? (size_t)(T * cfg->embed_dim) * sizeof(float) : 0},
        {args->out, cfg ? (size_t)(T * cfg->out_dim) * sizeof(float) : 0},
    };
    mha_status st = serve_check_model_call(model, plan, batch, cache, &c, workspace, workspace_bytes, in, 2);
    if (st != MHA_OK)
        return st;
    if (mha_ranges_overlap(in[0].p, in[0].n, in[1].p, in[1].n) ||
        serve_overlaps_inputs(batch, &c, in[1].p, in[1].n) ||
        serve_overlaps_inputs(batch, &c, in[0].p, in[0].n))
        return MHA_ERR_ALIAS;
    char *ws = serve_align(workspace);
    st = serve_append_check(plan, batch, &c, NULL, (uint64_t *)(ws + plan->ws_bits));
    if (st != MHA_OK)
        return st;

    const mha_kernels *kern = model->kern;
    const int64_t H = cfg->num_heads, G = cfg->num_kv_heads, dk = cfg->head_dim_qk, dv = cfg->head_dim_v;
    float *q = (float *)(ws + plan->ws_q), *k = (float *)(ws + plan->ws_k), *v = (float *)(ws + plan->ws_v);
    mha_gemm_job proj[3] = {
        {args->x, cfg->embed_dim, &model->q, q, H * dk, T},
        {args->x, cfg->embed_dim, &model->k, k, G * dk, T},
        {args->x, cfg->embed_dim, &model->v, v, G * dv, T},
    };
    float *pack = (float *)(ws + plan->ws_threads); /* thread slices, free until the attention */
    const int threads = serve_threads_enter(plan);
    mha_gemm_run(kern, proj, 3, threads, pack);
    serve_append_store(plan, batch, &c, NULL, k, v, threads);

    /* The scale is folded into W_q; heads go to the concatenation (or straight
     * out without an output projection), then through W_o. */
    const bool proj_out = model->o.panels != NULL;
    float *cat = proj_out ? (float *)(ws + plan->ws_cat) : args->out;
    const int64_t qs[2] = {H * dk, dk}, os[2] = {H * dv, dv};
    serve_attend(kern, plan, batch, &c, q, qs, 1.0f, cat, os, NULL, ws, threads);
    if (proj_out) {
        mha_gemm_job job = {cat, H * dv, &model->o, args->out, cfg->out_dim, T};
        mha_gemm_run(kern, &job, 1, threads, pack); /* free again */
    }
    mha_threads_leave();
    return MHA_OK;
}
