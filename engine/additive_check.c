/* Argument checks of the additive and concat attention modules, shared by the fast
 * paths and the float64 oracles so that both reject the same calls. */
#include "additive_internal.h"

/* a * b floats, both > 0, addressable; false otherwise. */
static bool floats_ok(int64_t a, int64_t b, int64_t *n)
{
    return mha_mul(a, b, n) && *n <= MHA_MAX_ELEMS;
}

mha_status mha_additive_config_resolve(const mha_additive_config *in, mha_additive_config *out)
{
    if (!in || !out)
        return MHA_ERR_NULL_POINTER;
    mha_additive_config c = *in;
    if (c.query_dim <= 0 || c.key_dim < 0 || c.hidden_dim < 0)
        return MHA_ERR_BAD_SIZE;
    if (c.key_dim == 0)
        c.key_dim = c.query_dim;
    if (c.hidden_dim == 0)
        c.hidden_dim = c.query_dim;
    int64_t n;
    if (!floats_ok(c.hidden_dim, c.query_dim, &n) || !floats_ok(c.hidden_dim, c.key_dim, &n))
        return MHA_ERR_OVERFLOW;
    *out = c;
    return MHA_OK;
}

mha_status mha_additive_weights_check(const mha_additive_weights *w)
{
    if (!w)
        return MHA_ERR_NULL_POINTER;
    return w->q_weight && w->k_weight && w->v_weight ? MHA_OK : MHA_ERR_WEIGHTS;
}

mha_shape mha_additive_shape(const mha_additive_args *a)
{
    mha_shape s = {a->batch, 1, 1, a->len_q, a->len_k, 1, a->value_dim};
    return s;
}

static bool overlaps_any(const void *p, size_t bytes, const void *const *in, const size_t *in_bytes,
                         int n)
{
    for (int i = 0; i < n; i++)
        if (mha_ranges_overlap(p, bytes, in[i], in_bytes[i]))
            return true;
    return false;
}

mha_status mha_additive_args_check(const mha_additive_config *c, const mha_additive_args *a)
{
    if (!a || !a->query || !a->key || !a->value || !a->out)
        return MHA_ERR_NULL_POINTER;
    if (a->batch <= 0 || a->len_q <= 0 || a->len_k <= 0 || a->value_dim <= 0)
        return MHA_ERR_BAD_SIZE;
    if (!mha_threads_valid(a->num_threads))
        return MHA_ERR_THREADS;
    int64_t rows, keys, nq, nk, nv, no, nw, t;
    if (!floats_ok(a->batch, a->len_q, &rows) || !floats_ok(a->batch, a->len_k, &keys) ||
        !floats_ok(rows, c->query_dim, &nq) || !floats_ok(keys, c->key_dim, &nk) ||
        !floats_ok(keys, a->value_dim, &nv) || !floats_ok(rows, a->value_dim, &no) ||
        !floats_ok(rows, a->len_k, &nw) || !floats_ok(rows, c->hidden_dim, &t) ||
        !floats_ok(keys, c->hidden_dim, &t))
        return MHA_ERR_OVERFLOW;
    const mha_shape s = mha_additive_shape(a);
    mha_status st = mha_mask_check(&a->mask, &s);
    if (st != MHA_OK)
        return st;
    if (a->row_key_lengths)
        for (int64_t r = 0; r < rows; r++)
            if (a->row_key_lengths[r] < 0 || a->row_key_lengths[r] > a->len_k)
                return MHA_ERR_MASK;
    const void *in[] = {a->query, a->key, a->value, a->row_key_lengths};
    const size_t in_bytes[] = {(size_t)nq * sizeof(float), (size_t)nk * sizeof(float),
                               (size_t)nv * sizeof(float), (size_t)rows * sizeof(int32_t)};
    const size_t ob = (size_t)no * sizeof(float), wb = (size_t)nw * sizeof(float);
    if (overlaps_any(a->out, ob, in, in_bytes, 4) || mha_mask_overlaps(&a->mask, &s, a->out, ob) ||
        (a->weights && (overlaps_any(a->weights, wb, in, in_bytes, 4) ||
                        mha_mask_overlaps(&a->mask, &s, a->weights, wb) ||
                        mha_ranges_overlap(a->weights, wb, a->out, ob))))
        return MHA_ERR_ALIAS;
    return MHA_OK;
}

mha_status mha_concat_config_resolve(const mha_concat_config *in, mha_concat_config *out)
{
    if (!in || !out)
        return MHA_ERR_NULL_POINTER;
    mha_concat_config c = *in;
    if (c.query_dim <= 0 || c.max_len <= 0 || c.key_dim < 0 || c.value_dim < 0 || c.out_dim < 0)
        return MHA_ERR_BAD_SIZE;
    if (c.key_dim == 0)
        c.key_dim = c.query_dim;
    if (c.value_dim == 0)
        c.value_dim = c.query_dim;
    if (c.out_dim == 0)
        c.out_dim = c.query_dim;
    int64_t n;
    if (!mha_add(c.query_dim, c.key_dim, &n) || !floats_ok(c.max_len, n, &n) ||
        !mha_add(c.query_dim, c.value_dim, &n) || !floats_ok(c.out_dim, n, &n))
        return MHA_ERR_OVERFLOW;
    *out = c;
    return MHA_OK;
}

mha_status mha_concat_weights_check(const mha_concat_weights *w)
{
    if (!w)
        return MHA_ERR_NULL_POINTER;
    return w->attn_weight && w->combine_weight ? MHA_OK : MHA_ERR_WEIGHTS;
}

mha_status mha_concat_args_check(const mha_concat_config *c, const mha_concat_args *a)
{
    if (!a || !a->query || !a->key || !a->value || !a->out)
        return MHA_ERR_NULL_POINTER;
    if (a->batch <= 0)
        return MHA_ERR_BAD_SIZE;
    if (!mha_threads_valid(a->num_threads))
        return MHA_ERR_THREADS;
    /* Fits int64: config_resolve bounded every width by a weight's size. */
    const int64_t ws = c->query_dim + c->key_dim + c->max_len + c->query_dim + c->value_dim;
    int64_t nq, nk, nv, no, nw, cat;
    if (!floats_ok(a->batch, c->query_dim, &nq) || !floats_ok(a->batch, c->key_dim, &nk) ||
        !floats_ok(a->batch, c->max_len, &nw) || !floats_ok(nw, c->value_dim, &nv) ||
        !floats_ok(a->batch, c->out_dim, &no) || !floats_ok(a->batch, ws, &cat))
        return MHA_ERR_OVERFLOW;
    const void *in[] = {a->query, a->key, a->value};
    const size_t in_bytes[] = {(size_t)nq * sizeof(float), (size_t)nk * sizeof(float),
                               (size_t)nv * sizeof(float)};
    const size_t ob = (size_t)no * sizeof(float), wb = (size_t)nw * sizeof(float);
    if (overlaps_any(a->out, ob, in, in_bytes, 3) ||
        (a->weights && (overlaps_any(a->weights, wb, in, in_bytes, 3) ||
                        mha_ranges_overlap(a->weights, wb, a->out, ob))))
        return MHA_ERR_ALIAS;
    return MHA_OK;
}
