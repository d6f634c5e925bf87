/*
 * Flash-style attention: per task (batch, head, query block) the key range is walked
 * in blocks; S = Q K^T on the GEMM microkernel, scale and mask, online softmax
 * (running max m and sum l, O rescaled only when m grows), O += P V on the
 * microkernel, and O / l written once at the end. The Lq x Lk score matrix never
 * exists; scratch per thread is one block of S and one block of O.
 * Every task's arithmetic is fixed by the shape alone, so results do not depend on
 * the thread count.
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "internal.h"

typedef struct tiles {
    int64_t bq, bk;             /* query rows and keys per block */
    int64_t k_panels, v_panels; /* nr-panels of packed K (over keys) and V (over d_v) */
    size_t k_floats, v_floats;  /* packed K / V floats of one (batch, kv head) */
    size_t thread_floats;       /* S block + O block + m + l */
} tiles;

static tiles tiles_for(const mha_kernels *kern, const mha_shape *s)
{
    tiles t;
    int64_t mr = (int64_t)kern->gemm_mr, nr = (int64_t)kern->gemm_nr;
    t.bq = mr * ((64 + mr - 1) / mr);
    t.bk = nr * ((128 + nr - 1) / nr);
    t.k_panels = (s->len_k + nr - 1) / nr;
    t.v_panels = (s->dv + nr - 1) / nr;
    t.k_floats = (size_t)(t.k_panels * nr * s->dk);
    t.v_floats = (size_t)(t.v_panels * nr * s->len_k);
    t.thread_floats = mha_round_up((size_t)(t.bq * t.bk) * sizeof(float)) / sizeof(float) +
                      mha_round_up((size_t)(t.bq * t.v_panels * nr) * sizeof(float)) / sizeof(float) +
                      2 * mha_round_up((size_t)t.bq * sizeof(float)) / sizeof(float);
    return t;
}

bool mha_attention_scratch_bytes(const mha_kernels *kern, const mha_shape *s, int threads,
                                 size_t *bytes)
{
    /* Packed K and V hold every key of every (batch, kv head), even when the caller
     * broadcast them with zero strides: bound that before tiles_for multiplies. */
    int64_t nr = (int64_t)kern->gemm_nr, kv, per;
    if (!mha_mul3(s->batch * s->kv_heads, s->len_k + nr, s->dk + s->dv + 2 * nr, &kv) ||
        kv > MHA_MAX_ELEMS)
        return false;
    tiles t = tiles_for(kern, s);
    int64_t stride = (int64_t)(mha_round_up((t.k_floats + t.v_floats) * sizeof(float)));
    if (!mha_mul(s->batch * s->kv_heads, stride, &kv) ||
        !mha_mul(threads, (int64_t)(t.thread_floats * sizeof(float)), &per) ||
        !mha_add(kv, per + MHA_ALIGN, &kv) || kv > MHA_MAX_ELEMS)
        return false;
    *bytes = (size_t)kv;
    return true;
}

/* Row i may see keys j <= i + causal_offset; clamped to where it still matters, so
 * that any int64 offset is safe to add. */
static int64_t causal_offset(const mha_attn_problem *p)
{
    int64_t off = p->mask->causal == MHA_CAUSAL_EXPLICIT ? p->mask->causal_offset
                                                          : p->s.len_k - p->s.len_q;
    if (off > p->s.len_k)
        return p->s.len_k;
    return off < -p->s.len_q - 1 ? -p->s.len_q - 1 : off;
}

/* Last key (exclusive) that any row of [i0, i0 + mq) of batch b may see. */
static int64_t key_end(const mha_attn_problem *p, int64_t b, int64_t i0, int64_t mq)
{
    int64_t end = p->s.len_k;
    if (p->mask->key_lengths && p->mask->key_lengths[b] < end)
        end = p->mask->key_lengths[b];
    if (p->mask->causal != MHA_CAUSAL_NONE) {
        int64_t last = i0 + mq + causal_offset(p); /* row i0 + mq - 1 sees j <= that + offset */
        if (last < end)
            end = last;
    }
    return end < 0 ? 0 : end;
}

/* Scales row i of the score block and applies every mask to keys [j0, j0 + n). */
static void scale_and_mask(const mha_kernels *kern, const mha_attn_problem *p, int64_t b, int64_t h,
                           int64_t i, int64_t j0, float *srow, int64_t n)
{
    const mha_mask *m = p->mask;
    const float *add = NULL;
    if (m->float_mask.data)
        add = (const float *)m->float_mask.data + b * m->float_mask.stride_b +
              h * m->float_mask.stride_h + i * m->float_mask.stride_q + j0;
    kern->f32_scale_add(srow, p->scale, add, (size_t)n);
    if (m->bool_mask.data)
        kern->f32_mask_u8(srow,
                          (const uint8_t *)m->bool_mask.data + b * m->bool_mask.stride_b +
                              h * m->bool_mask.stride_h + i * m->bool_mask.stride_q + j0,
                          (size_t)n);
    if (m->causal != MHA_CAUSAL_NONE) {
        int64_t first_masked = i + causal_offset(p) + 1 - j0; /* local index of the first hidden key */
        for (int64_t j = first_masked < 0 ? 0 : first_masked; j < n; j++)
            srow[j] = -INFINITY;
    }
}

static void pack_kv(const mha_kernels *kern, const mha_attn_problem *p, const tiles *t, float *kv,
                    int threads)
{
    const int64_t groups = p->s.batch * p->s.kv_heads;
    const size_t stride = mha_round_up((t->k_floats + t->v_floats) * sizeof(float)) / sizeof(float);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && groups > 1)
    for (int64_t bg = 0; bg < groups; bg++) {
        int64_t b = bg / p->s.kv_heads, g = bg % p->s.kv_heads;
        float *dst = kv + (size_t)bg * stride;
        kern->f32_pack_b_nk((size_t)p->s.len_k, (size_t)p->s.dk,
                            p->k + b * p->k_stride[0] + g * p->k_stride[1], (size_t)p->k_stride[2], dst);
        kern->f32_pack_b_kn((size_t)p->s.dv, (size_t)p->s.len_k,
                            p->v + b * p->v_stride[0] + g * p->v_stride[1], (size_t)p->v_stride[2],
                            dst + t->k_floats);
    }
}

static void run_task(const mha_kernels *kern, const mha_attn_problem *p, const tiles *t,
                     const float *kv, size_t kv_stride, float *scratch, int64_t task)
{
    const mha_shape *s = &p->s;
    const int64_t mr = (int64_t)kern->gemm_mr, nr = (int64_t)kern->gemm_nr;
    const int64_t q_blocks = (s->len_q + t->bq - 1) / t->bq;
    const int64_t b = task / (s->heads * q_blocks), h = (task / q_blocks) % s->heads;
    const int64_t i0 = (task % q_blocks) * t->bq;
    const int64_t mq = s->len_q - i0 < t->bq ? s->len_q - i0 : t->bq;
    const int64_t g = h / (s->heads / s->kv_heads);
    const int64_t ldo = t->v_panels * nr;

    float *S = scratch;
    float *O = S + mha_round_up((size_t)(t->bq * t->bk) * sizeof(float)) / sizeof(float);
    float *mrow = O + mha_round_up((size_t)(t->bq * ldo) * sizeof(float)) / sizeof(float);
    float *lrow = mrow + mha_round_up((size_t)t->bq * sizeof(float)) / sizeof(float);
    memset(O, 0, (size_t)(mq * ldo) * sizeof(float));
    for (int64_t r = 0; r < mq; r++) {
        mrow[r] = -INFINITY;
        lrow[r] = 0.0f;
    }

    const float *q = p->q + b * p->q_stride[0] + h * p->q_stride[1] + i0 * p->q_stride[2];
    const float *kp = kv + (size_t)(b * s->kv_heads + g) * kv_stride;
    const float *vp = kp + t->k_floats;
    const int64_t kend = key_end(p, b, i0, mq);

    for (int64_t kb = 0; kb < kend; kb += t->bk) {
        const int64_t nk = kend - kb < t->bk ? kend - kb : t->bk;
        /* S = Q K^T over this key block. */
        for (int64_t c = 0; c < nk; c += nr) {
            const float *panel = kp + (size_t)((kb + c) / nr * nr * s->dk);
            int64_t n = nk - c < nr ? nk - c : nr;
            for (int64_t r = 0; r < mq; r += mr)
                kern->f32_gemm((size_t)(mq - r < mr ? mq - r : mr), (size_t)n, (size_t)s->dk,
                               q + r * p->q_stride[2], (size_t)p->q_stride[2], panel,
                               S + r * t->bk + c, (size_t)t->bk, NULL, 0);
        }
        /* Online softmax; P overwrites S. */
        for (int64_t r = 0; r < mq; r++) {
            float *srow = S + r * t->bk;
            scale_and_mask(kern, p, b, h, i0 + r, kb, srow, nk);
            float mnew = kern->f32_rowmax(srow, (size_t)nk);
            if (mrow[r] > mnew)
                mnew = mrow[r];
            if (mnew == -INFINITY) { /* nothing visible yet: contributes nothing */
                memset(srow, 0, (size_t)nk * sizeof(float));
                continue;
            }
            float alpha = expf(mrow[r] - mnew);
            float sum = kern->f32_exp_sub_sum(srow, mnew, srow, (size_t)nk);
            lrow[r] = lrow[r] * alpha + sum;
            if (alpha != 1.0f)
                kern->f32_scale(O + r * ldo, alpha, (size_t)s->dv);
            mrow[r] = mnew;
        }
        /* O += P V over this key block. */
        for (int64_t c = 0; c < s->dv; c += nr) {
            const float *panel = vp + (size_t)(c / nr * nr * s->len_k + kb * nr);
            int64_t n = s->dv - c < nr ? s->dv - c : nr;
            for (int64_t r = 0; r < mq; r += mr)
                kern->f32_gemm((size_t)(mq - r < mr ? mq - r : mr), (size_t)n, (size_t)nk,
                               S + r * t->bk, (size_t)t->bk, panel, O + r * ldo + c, (size_t)ldo,
                               NULL, 1);
        }
    }

    float *out = p->out + b * p->out_stride[0] + h * p->out_stride[1] + i0 * p->out_stride[2];
    for (int64_t r = 0; r < mq; r++) {
        float *dst = out + r * p->out_stride[2];
        if (lrow[r] == 0.0f) { /* the row may attend to nothing */
            memset(dst, 0, (size_t)s->dv * sizeof(float));
            continue;
        }
        float inv = 1.0f / lrow[r];
        for (int64_t d = 0; d < s->dv; d++)
            dst[d] = O[r * ldo + d] * inv;
    }
}

void mha_attention_run(const mha_kernels *kern, const mha_attn_problem *p, void *scratch, int threads)
{
    tiles t = tiles_for(kern, &p->s);
    float *base = (float *)(((uintptr_t)scratch + MHA_ALIGN - 1) & ~(uintptr_t)(MHA_ALIGN - 1));
    const size_t kv_stride = mha_round_up((t.k_floats + t.v_floats) * sizeof(float)) / sizeof(float);
    float *per_thread = base + (size_t)(p->s.batch * p->s.kv_heads) * kv_stride;
    pack_kv(kern, p, &t, base, threads);

    const int64_t tasks = p->s.batch * p->s.heads * ((p->s.len_q + t.bq - 1) / t.bq);
#pragma omp parallel num_threads(threads) if (threads > 1 && tasks > 1)
    {
        float *mine = per_thread + (size_t)omp_get_thread_num() * t.thread_floats;
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; task++)
            run_task(kern, p, &t, base, kv_stride, mine, task);
    }
}

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
    mha_attn_problem p = {s, scale, args->q, {0}, args->k, {0}, args->v, {0}, args->out, {0}, &args->mask};
    memcpy(p.q_stride, args->q_stride, sizeof p.q_stride);
    memcpy(p.k_stride, args->k_stride, sizeof p.k_stride);
    memcpy(p.v_stride, args->v_stride, sizeof p.v_stride);
    memcpy(p.out_stride, args->out_stride, sizeof p.out_stride);
    mha_attention_run(kern, &p, workspace, threads);
    return MHA_OK;
}
