/*
 * The whole forward pass: projections on packed weights, flash attention reading
 * Q, K and V in place through strides (no transpose pass) and writing the heads
 * side by side, then the output projection over all rows at once (one GEMM: W_o
 * streamed once per row block, not once per query block as when it was fused into
 * the attention's tasks; engine/flash.c says what that cost).
 * Workspace layout (64-byte aligned slices): Q [B*Lq, H*d_k], K [B*Lk, G*d_k],
 * V [B*Lk, G*d_v], the concatenated heads [B*Lq, H*d_v] (with an output
 * projection; without one the heads go straight to out), the GEMMs' A-packing
 * buffers (one per thread), then the attention scratch.
 */
#include <string.h>

#include "internal.h"

typedef struct fwd_layout {
    mha_shape s;
    size_t q, k, v, cat, pack, attn, total; /* byte offsets of each slice; total bytes */
    size_t pack_floats;                /* one thread's A-packing buffer */
} fwd_layout;

/* bound: size the attention scratch for every call no larger (the size query),
 * rather than for this call exactly. */
static mha_status layout_for(const mha_model *m, int64_t batch, int64_t lq, int64_t lk, int threads,
                             bool bound, fwd_layout *l)
{
    const mha_config *c = &m->cfg;
    mha_shape s = {batch, c->num_heads, c->num_kv_heads, lq, lk, c->head_dim_qk, c->head_dim_v};
    int64_t nq, nk, nv, nc = 0;
    if (!mha_mul3(batch, lq, c->num_heads * c->head_dim_qk, &nq) ||
        !mha_mul3(batch, lk, c->num_kv_heads * c->head_dim_qk, &nk) ||
        !mha_mul3(batch, lk, c->num_kv_heads * c->head_dim_v, &nv) ||
        (c->has_out_proj && !mha_mul3(batch, lq, c->num_heads * c->head_dim_v, &nc)) || nq > MHA_MAX_ELEMS ||
        nk > MHA_MAX_ELEMS || nv > MHA_MAX_ELEMS || nc > MHA_MAX_ELEMS)
        return MHA_ERR_OVERFLOW;
    size_t attn;
    if (!(bound ? mha_attention_scratch_bound : mha_attention_scratch_bytes)(m->kern, &s, threads, &attn))
        return MHA_ERR_OVERFLOW;
    size_t pack[4] = {mha_gemm_pack_floats(m->kern, batch * lq, c->embed_dim),
                      mha_gemm_pack_floats(m->kern, batch * lk, c->kdim),
                      mha_gemm_pack_floats(m->kern, batch * lk, c->vdim),
                      c->has_out_proj ? mha_gemm_pack_floats(m->kern, batch * lq, c->num_heads * c->head_dim_v) : 0};
    l->pack_floats = 0;
    for (int i = 0; i < 4; i++)
        l->pack_floats = pack[i] > l->pack_floats ? pack[i] : l->pack_floats;
    l->s = s;
    l->q = 0;
    l->k = l->q + mha_round_up((size_t)nq * sizeof(float));
    l->v = l->k + mha_round_up((size_t)nk * sizeof(float));
    l->cat = l->v + mha_round_up((size_t)nv * sizeof(float));
    l->pack = l->cat + mha_round_up((size_t)nc * sizeof(float));
    l->attn = l->pack + (size_t)threads * l->pack_floats * sizeof(float);
    l->total = l->attn + attn + MHA_ALIGN;
    return MHA_OK;
}

mha_status mha_forward_workspace_size(const mha_model *model, int64_t batch, int64_t len_q,
                                      int64_t len_k, int num_threads, size_t *bytes)
{
    if (!model || !bytes)
        return MHA_ERR_NULL_POINTER;
    if (batch <= 0 || len_q <= 0 || len_k < 0)
        return MHA_ERR_BAD_SIZE;
    if (!mha_threads_valid(num_threads))
        return MHA_ERR_THREADS;
    if (len_k == 0) /* self-attention, as mha_forward sees it */
        len_k = len_q;
    fwd_layout l;
    mha_status st = layout_for(model, batch, len_q, len_k, mha_threads(num_threads), true, &l);
    if (st == MHA_OK)
        *bytes = l.total;
    return st;
}

mha_status mha_forward(const mha_model *model, const mha_forward_args *a, void *workspace,
                       size_t workspace_bytes)
{
    int64_t lk;
    if (!model)
        return MHA_ERR_NULL_POINTER;
    mha_status st = mha_forward_check(&model->cfg, a, &lk);
    if (st != MHA_OK)
        return st;
    if (model->kern != mha_kernels_active())
        return MHA_ERR_ISA;
    const mha_config *c = &model->cfg;
    int threads = mha_threads(a->num_threads);
    fwd_layout l;
    st = layout_for(model, a->batch, a->len_q, lk, threads, false, &l);
    if (st != MHA_OK)
        return st;
    if (!workspace || workspace_bytes < l.total)
        return MHA_ERR_WORKSPACE;
    int64_t o_elems = a->batch * a->len_q * c->out_dim;
    int64_t x_elems = a->batch * a->len_q * c->embed_dim;
    if (mha_ranges_overlap(workspace, workspace_bytes, a->out, (size_t)o_elems * sizeof(float)) ||
        mha_ranges_overlap(workspace, workspace_bytes, a->query, (size_t)x_elems * sizeof(float)) ||
        mha_ranges_overlap(workspace, workspace_bytes, a->key, (size_t)(a->batch * lk * c->kdim) * sizeof(float)) ||
        mha_ranges_overlap(workspace, workspace_bytes, a->value, (size_t)(a->batch * lk * c->vdim) * sizeof(float)) ||
        mha_mask_overlaps(&a->mask, &l.s, workspace, workspace_bytes))
        return MHA_ERR_ALIAS;

    char *base = (char *)(((uintptr_t)workspace + MHA_ALIGN - 1) & ~(uintptr_t)(MHA_ALIGN - 1));
    float *q = (float *)(base + l.q), *k = (float *)(base + l.k), *v = (float *)(base + l.v),
          *cat = (float *)(base + l.cat);
    const int64_t nq = c->num_heads * c->head_dim_qk, nk = c->num_kv_heads * c->head_dim_qk,
                  nv = c->num_kv_heads * c->head_dim_v, ncat = c->num_heads * c->head_dim_v;
    const float *ksrc = a->key ? a->key : a->query, *vsrc = a->value ? a->value : a->query;

    mha_gemm_job proj[3] = {
        {a->query, c->embed_dim, &model->q, q, nq, a->batch * a->len_q},
        {ksrc, c->kdim, &model->k, k, nk, a->batch * lk},
        {vsrc, c->vdim, &model->v, v, nv, a->batch * lk},
    };
    /* The workspace was checked for `threads`; the call may run on fewer when
     * other calls are in flight (engine/threads.c). */
    const int used = mha_threads_enter(a->num_threads);
    mha_gemm_run(model->kern, proj, 3, used, (float *)(base + l.pack));

    mha_attn_problem p = {
        l.s, 1.0f, /* the scale is folded into W_q at model creation */
        q, {a->len_q * nq, c->head_dim_qk, nq},
        k, {lk * nk, c->head_dim_qk, nk},
        v, {lk * nv, c->head_dim_v, nv},
        c->has_out_proj ? cat : a->out, {a->len_q * ncat, c->head_dim_v, ncat},
        &a->mask,
    };
    mha_attention_run(model->kern, &p, base + l.attn, used);
    if (c->has_out_proj) {
        const mha_gemm_job o = {cat, ncat, &model->o, a->out, c->out_dim, a->batch * a->len_q};
        mha_gemm_run(model->kern, &o, 1, used, (float *)(base + l.pack));
    }
    mha_threads_leave();
    return MHA_OK;
}
