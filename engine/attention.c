/* The attention-only entry, like scaled_dot_product_attention: checks, then the
 * flash driver. */
#include <string.h>

#include "internal.h"

mha_status mha_attention_workspace_size(const mha_attention_args *args, size_t *bytes)
{
    mha_shape s;
    float scale;
    if (!bytes)
        return MHA_ERR_NULL_POINTER;
    mha_status st = mha_attention_check(args, &s, &scale);
    if (st != MHA_OK)
        return st;
    return mha_attention_scratch_bytes(mha_kernels_active(), &s, mha_threads(args->num_threads), bytes)
               ? MHA_OK
               : MHA_ERR_OVERFLOW;
}

mha_status mha_attention_workspace_bound(const mha_attention_shape *shape, size_t *bytes)
{
    mha_shape s;
    if (!bytes)
        return MHA_ERR_NULL_POINTER;
    mha_status st = mha_attention_shape_check(shape, &s);
    if (st != MHA_OK)
        return st;
    return mha_attention_scratch_bound(mha_kernels_active(), &s, mha_threads(shape->num_threads), bytes)
               ? MHA_OK
               : MHA_ERR_OVERFLOW;
}

mha_status mha_attention(const mha_attention_args *args, void *workspace, size_t workspace_bytes)
{
    mha_shape s;
    float scale;
    mha_status st = mha_attention_check(args, &s, &scale);
    if (st != MHA_OK)
        return st;
    const mha_kernels *kern = mha_kernels_active();
    int threads = mha_threads(args->num_threads);
    size_t need;
    if (!mha_attention_scratch_bytes(kern, &s, threads, &need))
        return MHA_ERR_OVERFLOW;
    if (!workspace || workspace_bytes < need)
        return MHA_ERR_WORKSPACE;
    int64_t eq, ek, ev, eo;
    mha_strided_extent(args->q_stride, s.batch, s.heads, s.len_q, s.dk, &eq);
    mha_strided_extent(args->k_stride, s.batch, s.kv_heads, s.len_k, s.dk, &ek);
    mha_strided_extent(args->v_stride, s.batch, s.kv_heads, s.len_k, s.dv, &ev);
    mha_strided_extent(args->out_stride, s.batch, s.heads, s.len_q, s.dv, &eo);
    if (mha_ranges_overlap(workspace, workspace_bytes, args->out, (size_t)eo * sizeof(float)) ||
        mha_ranges_overlap(workspace, workspace_bytes, args->q, (size_t)eq * sizeof(float)) ||
        mha_ranges_overlap(workspace, workspace_bytes, args->k, (size_t)ek * sizeof(float)) ||
        mha_ranges_overlap(workspace, workspace_bytes, args->v, (size_t)ev * sizeof(float)) ||
        mha_mask_overlaps(&args->mask, &s, workspace, workspace_bytes))
        return MHA_ERR_ALIAS;
    mha_attn_problem p = {s, scale, args->q, {0}, args->k, {0}, args->v, {0}, args->out, {0},
                          &args->mask};
    memcpy(p.q_stride, args->q_stride, sizeof p.q_stride);
    memcpy(p.k_stride, args->k_stride, sizeof p.k_stride);
    memcpy(p.v_stride, args->v_stride, sizeof p.v_stride);
    memcpy(p.out_stride, args->out_stride, sizeof p.out_stride);
    mha_attention_run(kern, &p, workspace, mha_threads_enter(args->num_threads)); /* <= threads */
    mha_threads_leave();
    return MHA_OK;
}
