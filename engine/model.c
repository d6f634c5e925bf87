/* Model creation: checks, then packs every projection for the active ISA's GEMM. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void packed_free(mha_packed *p)
{
    free(p->panels);
    free(p->bias);
}

/* Packs W [n, k] (row stride ld) and copies its bias, both multiplied by scale. */
static mha_status pack(const mha_kernels *kern, const float *w, int64_t ld, const float *bias,
                       int64_t n, int64_t k, float scale, mha_packed *p)
{
    size_t nr = kern->gemm_nr;
    size_t panels = ((size_t)n + nr - 1) / nr;
    p->n = n;
    p->k = k;
    p->panels = aligned_alloc(MHA_ALIGN, mha_round_up(panels * nr * (size_t)k * sizeof(float)));
    p->bias = bias ? malloc((size_t)n * sizeof(float)) : NULL;
    if (!p->panels || (bias && !p->bias))
        return MHA_ERR_NO_MEMORY;
    kern->f32_pack_b_nk((size_t)n, (size_t)k, w, (size_t)ld, p->panels);
    if (bias)
        memcpy(p->bias, bias, (size_t)n * sizeof(float));
    if (scale != 1.0f) {
        kern->f32_scale(p->panels, scale, panels * nr * (size_t)k);
        if (bias)
            kern->f32_scale(p->bias, scale, (size_t)n);
    }
    return MHA_OK;
}

mha_status mha_model_create(const mha_config *config, const mha_weights *weights, mha_model **model)
{
    if (!config || !weights || !model)
        return MHA_ERR_NULL_POINTER;
    mha_config c;
    mha_status st = mha_config_resolve(config, &c);
    if (st == MHA_OK)
        st = mha_weights_check(&c, weights);
    if (st != MHA_OK)
        return st;

    mha_model *m = calloc(1, sizeof *m);
    if (!m)
        return MHA_ERR_NO_MEMORY;
    m->cfg = c;
    m->kern = mha_kernels_active();
    const mha_weights *w = weights;
    int64_t nq = c.num_heads * c.head_dim_qk, nk = c.num_kv_heads * c.head_dim_qk,
            nv = c.num_kv_heads * c.head_dim_v;
    const float *wq = w->q_weight, *wk = w->k_weight, *wv = w->v_weight;
    const float *bq = w->q_bias, *bk = w->k_bias, *bv = w->v_bias;
    if (w->in_proj_weight) { /* rows: W_q, W_k, W_v */
        wq = w->in_proj_weight;
        wk = wq + nq * c.embed_dim;
        wv = wk + nk * c.embed_dim;
        if (w->in_proj_bias) {
            bq = w->in_proj_bias;
            bk = bq + nq;
            bv = bk + nk;
        }
    }
    /* The softmax scale is folded into W_q and b_q: the attention tiles then skip
     * a multiply per score. */
    st = pack(m->kern, wq, c.embed_dim, bq, nq, c.embed_dim, c.scale, &m->q);
    if (st == MHA_OK)
        st = pack(m->kern, wk, c.kdim, bk, nk, c.kdim, 1.0f, &m->k);
    if (st == MHA_OK)
        st = pack(m->kern, wv, c.vdim, bv, nv, c.vdim, 1.0f, &m->v);
    if (st == MHA_OK && c.has_out_proj)
        st = pack(m->kern, w->out_weight, c.num_heads * c.head_dim_v, w->out_bias, c.out_dim,
                  c.num_heads * c.head_dim_v, 1.0f, &m->o);
    if (st != MHA_OK) {
        mha_model_destroy(m);
        return st;
    }
    *model = m;
    return MHA_OK;
}

void mha_model_destroy(mha_model *model)
{
    if (!model)
        return;
    packed_free(&model->q);
    packed_free(&model->k);
    packed_free(&model->v);
    packed_free(&model->o);
    free(model);
}

mha_status mha_model_config(const mha_model *model, mha_config *config)
{
    if (!model || !config)
        return MHA_ERR_NULL_POINTER;
    *config = model->cfg;
    return MHA_OK;
}

/* For the other modules' models (additive and concat attention). */
mha_status mha_pack_weight(const mha_kernels *kern, const float *w, int64_t ld, const float *bias,
                           int64_t n, int64_t k, float scale, mha_packed *p)
{
    return pack(kern, w, ld, bias, n, k, scale, p);
}

void mha_packed_free(mha_packed *p)
{
    packed_free(p);
}
