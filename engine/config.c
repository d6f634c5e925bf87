/* Model configuration: defaults, resolution and the checks of config and weights. */
#include <math.h>

#include "internal.h"

mha_config mha_config_default(int64_t embed_dim, int64_t num_heads)
{
    mha_config c = {0};
    c.embed_dim = embed_dim;
    c.num_heads = num_heads;
    c.has_bias = 1;
    c.has_out_proj = 1;
    return c;
}

mha_status mha_config_resolve(const mha_config *in, mha_config *out)
{
    if (!in || !out)
        return MHA_ERR_NULL_POINTER;
    mha_config c = *in;
    if (c.embed_dim <= 0 || c.num_heads <= 0 || c.num_kv_heads < 0 || c.kdim < 0 || c.vdim < 0 ||
        c.head_dim_qk < 0 || c.head_dim_v < 0 || c.out_dim < 0)
        return MHA_ERR_BAD_SIZE;
    if (c.num_kv_heads == 0)
        c.num_kv_heads = c.num_heads;
    if (c.num_heads % c.num_kv_heads != 0)
        return MHA_ERR_HEADS;
    if ((c.head_dim_qk == 0 || c.head_dim_v == 0) && c.embed_dim % c.num_heads != 0)
        return MHA_ERR_HEADS;
    if (c.head_dim_qk == 0)
        c.head_dim_qk = c.embed_dim / c.num_heads;
    if (c.head_dim_v == 0)
        c.head_dim_v = c.embed_dim / c.num_heads;
    if (c.kdim == 0)
        c.kdim = c.embed_dim;
    if (c.vdim == 0)
        c.vdim = c.embed_dim;
    if ((c.has_bias != 0 && c.has_bias != 1) || (c.has_out_proj != 0 && c.has_out_proj != 1))
        return MHA_ERR_WEIGHTS; /* booleans: 7 is more likely a bug than "true" */
    if (!isfinite(c.scale))
        return MHA_ERR_SCALE;
    if (c.scale == 0.0f)
        c.scale = (float)(1.0 / sqrt((double)c.head_dim_qk));

    /* Every weight matrix must be addressable. */
    int64_t qw, kw, vw, cat, t;
    if (!mha_mul(c.num_heads, c.head_dim_qk, &qw) || !mha_mul(c.num_kv_heads, c.head_dim_qk, &kw) ||
        !mha_mul(c.num_kv_heads, c.head_dim_v, &vw) || !mha_mul(c.num_heads, c.head_dim_v, &cat))
        return MHA_ERR_OVERFLOW;
    if (c.out_dim == 0)
        c.out_dim = c.has_out_proj ? c.embed_dim : cat;
    else if (!c.has_out_proj)
        c.out_dim = cat;
    if (!mha_mul(qw, c.embed_dim, &t) || t > MHA_MAX_ELEMS || !mha_mul(kw, c.kdim, &t) ||
        t > MHA_MAX_ELEMS || !mha_mul(vw, c.vdim, &t) || t > MHA_MAX_ELEMS ||
        !mha_mul(cat, c.out_dim, &t) || t > MHA_MAX_ELEMS)
        return MHA_ERR_OVERFLOW;
    *out = c;
    return MHA_OK;
}

mha_status mha_weights_check(const mha_config *c, const mha_weights *w)
{
    if (!w)
        return MHA_ERR_NULL_POINTER;
    bool fused = w->in_proj_weight != NULL;
    if (fused) {
        if (w->q_weight || w->k_weight || w->v_weight || w->q_bias || w->k_bias || w->v_bias)
            return MHA_ERR_WEIGHTS;
        if (c->kdim != c->embed_dim || c->vdim != c->embed_dim)
            return MHA_ERR_WEIGHTS;
        if ((w->in_proj_bias != NULL) != (c->has_bias != 0))
            return MHA_ERR_WEIGHTS;
    } else {
        if (!w->q_weight || !w->k_weight || !w->v_weight || w->in_proj_bias)
            return MHA_ERR_WEIGHTS;
        bool b = c->has_bias != 0;
        if ((w->q_bias != NULL) != b || (w->k_bias != NULL) != b || (w->v_bias != NULL) != b)
            return MHA_ERR_WEIGHTS;
    }
    if (c->has_out_proj) {
        if (!w->out_weight || (w->out_bias != NULL) != (c->has_bias != 0))
            return MHA_ERR_WEIGHTS;
    } else if (w->out_weight || w->out_bias) {
        return MHA_ERR_WEIGHTS;
    }
    return MHA_OK;
}
