/* Argument checks shared by the fast entries and the reference: masks, strides,
 * aliasing, the attention-only arguments. */
#include <math.h>

#include "internal.h"

bool mha_strided_extent(const int64_t stride[3], int64_t n0, int64_t n1, int64_t n2,
                        int64_t inner, int64_t *extent)
{
    const int64_t n[3] = {n0, n1, n2};
    int64_t e = inner, t;
    for (int i = 0; i < 3; i++) {
        if (stride[i] < 0)
            return false;
        if (!mha_mul(n[i] - 1, stride[i], &t) || !mha_add(e, t, &e))
            return false;
    }
    if (e > MHA_MAX_ELEMS)
        return false;
    *extent = e;
    return true;
}

bool mha_strided_disjoint(const int64_t stride[3], int64_t n0, int64_t n1, int64_t n2,
                          int64_t inner)
{
    /* Sort the dimensions of size > 1 by stride; each must step past everything
     * spanned by the smaller ones. Sufficient, and exact for every layout made
     * of permuted dense dimensions. */
    int64_t st[4] = {1, 0, 0, 0}, sz[4] = {inner, 0, 0, 0};
    const int64_t n[3] = {n0, n1, n2};
    int k = 1;
    for (int i = 0; i < 3; i++) {
        if (n[i] > 1) {
            st[k] = stride[i];
            sz[k] = n[i];
            k++;
        }
    }
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && st[j] < st[j - 1]; j--) {
            int64_t a = st[j], b = sz[j];
            st[j] = st[j - 1];
            sz[j] = sz[j - 1];
            st[j - 1] = a;
            sz[j - 1] = b;
        }
    int64_t span = 0; /* largest offset reached by the dims below */
    for (int i = 0; i < k; i++) {
        if (sz[i] > 1 && st[i] <= span)
            return false;
        span += (sz[i] - 1) * st[i];
    }
    return true;
}

bool mha_ranges_overlap(const void *a, size_t an, const void *b, size_t bn)
{
    uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b;
    if (!a || !b || an == 0 || bn == 0)
        return false;
    return pa < pb + bn && pb < pa + an;
}

/* Checks one mask tensor; on success *extent is its element extent. */
static mha_status mask_tensor_check(const mha_mask_tensor *t, const mha_shape *s, int64_t *extent)
{
    *extent = 0;
    if (!t->data)
        return MHA_OK;
    if (t->stride_b < 0 || t->stride_h < 0 || t->stride_q < 0)
        return MHA_ERR_MASK;
    int64_t row = s->len_k, head, all, x;
    if (t->stride_q != 0 && t->stride_q < row)
        return MHA_ERR_MASK;
    if (!mha_mul(s->len_q - 1, t->stride_q, &x) || !mha_add(x, row, &head))
        return MHA_ERR_OVERFLOW;
    if (t->stride_h != 0 && t->stride_h < head)
        return MHA_ERR_MASK;
    if (!mha_mul(s->heads - 1, t->stride_h, &x) || !mha_add(x, head, &all))
        return MHA_ERR_OVERFLOW;
    if (t->stride_b != 0 && t->stride_b < all)
        return MHA_ERR_MASK;
    if (!mha_mul(s->batch - 1, t->stride_b, &x) || !mha_add(x, all, extent) ||
        *extent > MHA_MAX_ELEMS)
        return MHA_ERR_OVERFLOW;
    return MHA_OK;
}

size_t mha_mask_bytes(const mha_mask_tensor *t, size_t elem, const mha_shape *s)
{
    int64_t e;
    if (mask_tensor_check(t, s, &e) != MHA_OK)
        return 0;
    return (size_t)e * elem;
}

bool mha_mask_overlaps(const mha_mask *m, const mha_shape *s, const void *p, size_t bytes)
{
    return mha_ranges_overlap(p, bytes, m->bool_mask.data, mha_mask_bytes(&m->bool_mask, 1, s)) ||
           mha_ranges_overlap(p, bytes, m->float_mask.data,
                              mha_mask_bytes(&m->float_mask, sizeof(float), s)) ||
           mha_ranges_overlap(p, bytes, m->key_lengths, (size_t)s->batch * sizeof(int32_t));
}

mha_status mha_mask_check(const mha_mask *m, const mha_shape *s)
{
    if (m->causal != MHA_CAUSAL_NONE && m->causal != MHA_CAUSAL_BOTTOM_RIGHT &&
        m->causal != MHA_CAUSAL_EXPLICIT)
        return MHA_ERR_MASK;
    if (m->key_lengths)
        for (int64_t b = 0; b < s->batch; b++)
            if (m->key_lengths[b] < 0 || m->key_lengths[b] > s->len_k)
                return MHA_ERR_MASK;
    int64_t e;
    mha_status st = mask_tensor_check(&m->bool_mask, s, &e);
    if (st == MHA_OK)
        st = mask_tensor_check(&m->float_mask, s, &e);
    return st;
}

/* The dimensions of an attention shape (num_kv_heads 0 = H) and the thread count. */
static mha_status dims_check(int64_t num_kv_heads, const mha_shape *s, int num_threads)
{
    if (s->batch <= 0 || s->heads <= 0 || num_kv_heads < 0 || s->len_q <= 0 || s->len_k <= 0 ||
        s->dk <= 0 || s->dv <= 0)
        return MHA_ERR_BAD_SIZE;
    if (s->heads % s->kv_heads != 0)
        return MHA_ERR_HEADS;
    if (!mha_threads_valid(num_threads))
        return MHA_ERR_THREADS;
    return MHA_OK;
}

/* Zero strides let huge logical tensors sit in a few bytes; the dense copies
 * (packed K/V, the reference's) must still be addressable. */
static mha_status dense_check(const mha_shape *s)
{
    int64_t bh, bg, dense_q, dense_kv;
    if (!mha_mul(s->batch, s->heads, &bh) || !mha_mul(s->batch, s->kv_heads, &bg) ||
        !mha_mul3(bh, s->len_q, s->dk, &dense_q) || dense_q > MHA_MAX_ELEMS ||
        !mha_mul3(bg, s->len_k, s->dk + s->dv, &dense_kv) || dense_kv > MHA_MAX_ELEMS)
        return MHA_ERR_OVERFLOW;
    return MHA_OK;
}

mha_status mha_attention_shape_check(const mha_attention_shape *a, mha_shape *shape)
{
    if (!a)
        return MHA_ERR_NULL_POINTER;
    mha_shape s = {a->batch, a->num_heads, a->num_kv_heads ? a->num_kv_heads : a->num_heads,
                   a->len_q, a->len_k, a->head_dim_qk, a->head_dim_v};
    mha_status st = dims_check(a->num_kv_heads, &s, a->num_threads);
    if (st == MHA_OK && (a->masks & ~(unsigned)MHA_MASK_ALL) != 0)
        st = MHA_ERR_MASK;
    if (st == MHA_OK)
        st = dense_check(&s);
    if (st == MHA_OK)
        *shape = s;
    return st;
}

mha_status mha_attention_check(const mha_attention_args *a, mha_shape *shape, float *scale)
{
    if (!a || !a->q || !a->k || !a->v || !a->out)
        return MHA_ERR_NULL_POINTER;
    mha_shape s = {a->batch, a->num_heads, a->num_kv_heads ? a->num_kv_heads : a->num_heads,
                   a->len_q, a->len_k, a->head_dim_qk, a->head_dim_v};
    mha_status st = dims_check(a->num_kv_heads, &s, a->num_threads);
    if (st != MHA_OK)
        return st;
    if (!isfinite(a->scale))
        return MHA_ERR_SCALE;
    for (int i = 0; i < 3; i++)
        if (a->q_stride[i] < 0 || a->k_stride[i] < 0 || a->v_stride[i] < 0 || a->out_stride[i] < 0)
            return MHA_ERR_STRIDE;
    int64_t eq, ek, ev, eo;
    if (!mha_strided_extent(a->q_stride, s.batch, s.heads, s.len_q, s.dk, &eq) ||
        !mha_strided_extent(a->k_stride, s.batch, s.kv_heads, s.len_k, s.dk, &ek) ||
        !mha_strided_extent(a->v_stride, s.batch, s.kv_heads, s.len_k, s.dv, &ev) ||
        !mha_strided_extent(a->out_stride, s.batch, s.heads, s.len_q, s.dv, &eo))
        return MHA_ERR_OVERFLOW;
    if (!mha_strided_disjoint(a->out_stride, s.batch, s.heads, s.len_q, s.dv))
        return MHA_ERR_STRIDE;
    st = dense_check(&s);
    if (st == MHA_OK)
        st = mha_mask_check(&a->mask, &s);
    if (st != MHA_OK)
        return st;
    size_t ob = (size_t)eo * sizeof(float);
    if (mha_ranges_overlap(a->out, ob, a->q, (size_t)eq * sizeof(float)) ||
        mha_ranges_overlap(a->out, ob, a->k, (size_t)ek * sizeof(float)) ||
        mha_ranges_overlap(a->out, ob, a->v, (size_t)ev * sizeof(float)) ||
        mha_mask_overlaps(&a->mask, &s, a->out, ob))
        return MHA_ERR_ALIAS;
    *shape = s;
    *scale = a->scale != 0.0f ? a->scale : (float)(1.0 / sqrt((double)s.dk));
    return MHA_OK;
}

mha_status mha_forward_check(const mha_config *c, const mha_forward_args *a, int64_t *len_k)
{
    if (!a || !a->query || !a->out)
        return MHA_ERR_NULL_POINTER;
    bool self = !a->key && !a->value;
    if (!self && (!a->key || !a->value))
        return MHA_ERR_NULL_POINTER;
    if (self && (c->kdim != c->embed_dim || c->vdim != c->embed_dim))
        return MHA_ERR_NULL_POINTER; /* key/value sources are required when kdim/vdim != E */
    if (a->batch <= 0 || a->len_q <= 0 || (!self && a->len_k <= 0))
        return MHA_ERR_BAD_SIZE;
    if (!mha_threads_valid(a->num_threads))
        return MHA_ERR_THREADS;
    *len_k = self ? a->len_q : a->len_k;
    int64_t nx, nk, nv, no;
    if (!mha_mul3(a->batch, a->len_q, c->embed_dim, &nx) || !mha_mul3(a->batch, *len_k, c->kdim, &nk) ||
        !mha_mul3(a->batch, *len_k, c->vdim, &nv) || !mha_mul3(a->batch, a->len_q, c->out_dim, &no) ||
        nx > MHA_MAX_ELEMS || nk > MHA_MAX_ELEMS || nv > MHA_MAX_ELEMS || no > MHA_MAX_ELEMS)
        return MHA_ERR_OVERFLOW;
    /* The projected Q, K and V exist densely (workspace, or the reference's copies). */
    int64_t dq, dkv;
    if (!mha_mul3(a->batch, a->len_q, c->num_heads * c->head_dim_qk, &dq) || dq > MHA_MAX_ELEMS ||
        !mha_mul3(a->batch, *len_k, c->num_kv_heads * (c->head_dim_qk + c->head_dim_v), &dkv) ||
        dkv > MHA_MAX_ELEMS)
        return MHA_ERR_OVERFLOW;
    mha_shape s = {a->batch, c->num_heads, c->num_kv_heads, a->len_q, *len_k, c->head_dim_qk,
                   c->head_dim_v};
    mha_status st = mha_mask_check(&a->mask, &s);
    if (st != MHA_OK)
        return st;
    size_t ob = (size_t)no * sizeof(float);
    if (mha_ranges_overlap(a->out, ob, a->query, (size_t)nx * sizeof(float)) ||
        mha_ranges_overlap(a->out, ob, a->key, (size_t)nk * sizeof(float)) ||
        mha_ranges_overlap(a->out, ob, a->value, (size_t)nv * sizeof(float)) ||
        mha_mask_overlaps(&a->mask, &s, a->out, ob))
        return MHA_ERR_ALIAS;
    return MHA_OK;
}
