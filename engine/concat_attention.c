/*
 * Concat attention (the decoder attention of PyTorch's seq2seq tutorial):
 *   cat1 = [q, k]             -> S = cat1 W_a^T + b_a   (packed GEMM, [B, L])
 *   softmax over each row of S -> weights; applied = weights V_b (V rows in place)
 *   cat2 = [q, applied]       -> out = cat2 W_c^T + b_c (packed GEMM, [B, O])
 * The two concatenations are copies into the workspace: a few floats per batch row
 * against the GEMMs' L*(Dq+Dk) and O*(Dq+Dv) multiply-adds. Row-wise steps run in
 * parallel over the batch; the GEMM tiles are fixed by the shape, so results do not
 * depend on the thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "additive_internal.h"

struct mha_concat_model {
    mha_concat_config cfg; /* resolved */
    const mha_kernels *kern;
    mha_packed attn;    /* W_a [L, Dq + Dk], b_a */
    mha_packed combine; /* W_c [O, Dq + Dv], b_c */
};

void mha_concat_model_destroy(mha_concat_model *model)
{
    if (!model)
        return;
    mha_packed_free(&model->attn);
    mha_packed_free(&model->combine);
    free(model);
}

mha_status mha_concat_model_create(const mha_concat_config *config, const mha_concat_weights *weights,
                                   mha_concat_model **model)
{
    if (!config || !weights || !model)
        return MHA_ERR_NULL_POINTER;
    mha_concat_config c;
    mha_status st = mha_concat_config_resolve(config, &c);
    if (st == MHA_OK)
        st = mha_concat_weights_check(weights);
    if (st != MHA_OK)
        return st;
    mha_concat_model *m = calloc(1, sizeof *m);
    if (!m)
        return MHA_ERR_NO_MEMORY;
    m->cfg = c;
    m->kern = mha_kernels_active();
    const int64_t in_a = c.query_dim + c.key_dim, in_c = c.query_dim + c.value_dim;
    st = mha_pack_weight(m->kern, weights->attn_weight, in_a, weights->attn_bias, c.max_len, in_a,
                         1.0f, &m->attn);
    if (st == MHA_OK)
        st = mha_pack_weight(m->kern, weights->combine_weight, in_c, weights->combine_bias,
                             c.out_dim, in_c, 1.0f, &m->combine);
    if (st != MHA_OK) {
        mha_concat_model_destroy(m);
        return st;
    }
    *model = m;
    return MHA_OK;
}

typedef struct layout {
    size_t cat1, s, cat2, pack, total; /* byte offsets; total bytes */
} layout;

/* pack: the GEMMs' A-packing buffers, one per thread. */
static layout layout_for(const mha_concat_model *m, int64_t batch, int threads)
{
    const mha_concat_config *c = &m->cfg;
    layout l;
    const size_t b = (size_t)batch;
    size_t pack = mha_gemm_pack_floats(m->kern, batch, c->query_dim + c->key_dim), pc;
    if ((pc = mha_gemm_pack_floats(m->kern, batch, c->query_dim + c->value_dim)) > pack)
        pack = pc;
    l.cat1 = 0;
    l.s = l.cat1 + mha_round_up(b * (size_t)(c->query_dim + c->key_dim) * sizeof(float));
    l.cat2 = l.s + mha_round_up(b * (size_t)c->max_len * sizeof(float));
    l.pack = l.cat2 + mha_round_up(b * (size_t)(c->query_dim + c->value_dim) * sizeof(float));
    l.total = l.pack + (size_t)threads * pack * sizeof(float) + MHA_ALIGN;
    return l;
}

mha_status mha_concat_workspace_size(const mha_concat_model *model, int64_t batch, int num_threads,
                                     size_t *bytes)
{
    if (!model || !bytes)
        return MHA_ERR_NULL_POINTER;
    if (batch <= 0)
        return MHA_ERR_BAD_SIZE;
    if (!mha_threads_valid(num_threads))
        return MHA_ERR_THREADS;
    const mha_concat_config *c = &model->cfg;
    int64_t n;
    if (!mha_mul(batch, c->query_dim + c->key_dim + c->max_len + c->query_dim + c->value_dim, &n) ||
        n > MHA_MAX_ELEMS)
        return MHA_ERR_OVERFLOW;
    *bytes = layout_for(model, batch, mha_threads(num_threads)).total;
    return MHA_OK;
}

/* Softmax of one score row in place; zeros if every score is -inf. */
static void softmax_row(const mha_kernels *kern, float *s, int64_t n)
{
    const float mx = kern->f32_rowmax(s, (size_t)n);
    if (mx == -INFINITY) {
        memset(s, 0, (size_t)n * sizeof(float));
        return;
    }
    const float sum = kern->f32_exp_sub_sum(s, mx, s, (size_t)n);
    kern->f32_scale(s, 1.0f / sum, (size_t)n);
}

mha_status mha_concat_forward(const mha_concat_model *model, const mha_concat_args *a,
                              void *workspace, size_t workspace_bytes)
{
    if (!model)
        return MHA_ERR_NULL_POINTER;
    const mha_concat_config *c = &model->cfg;
    mha_status st = mha_concat_args_check(c, a);
    if (st != MHA_OK)
        return st;
    if (model->kern != mha_kernels_active())
        return MHA_ERR_ISA;
    const int threads = mha_threads(a->num_threads);
    const layout l = layout_for(model, a->batch, threads);
    if (!workspace || workspace_bytes < l.total)
        return MHA_ERR_WORKSPACE;
    const size_t b = (size_t)a->batch;
    if (mha_ranges_overlap(workspace, workspace_bytes, a->query, b * (size_t)c->query_dim * sizeof(float)) ||
        mha_ranges_overlap(workspace, workspace_bytes, a->key, b * (size_t)c->key_dim * sizeof(float)) ||
        mha_ranges_overlap(workspace, workspace_bytes, a->value,
                           b * (size_t)(c->max_len * c->value_dim) * sizeof(float)) ||
        mha_ranges_overlap(workspace, workspace_bytes, a->out, b * (size_t)c->out_dim * sizeof(float)) ||
        mha_ranges_overlap(workspace, workspace_bytes, a->weights, b * (size_t)c->max_len * sizeof(float)))
        return MHA_ERR_ALIAS;

    const mha_kernels *kern = model->kern;
    char *base = (char *)(((uintptr_t)workspace + MHA_ALIGN - 1) & ~(uintptr_t)(MHA_ALIGN - 1));
    float *cat1 = (float *)(base + l.cat1), *S = (float *)(base + l.s), *cat2 = (float *)(base + l.cat2);
    const int64_t dq = c->query_dim, dk = c->key_dim, dv = c->value_dim, L = c->max_len;
    const int64_t in_a = dq + dk, in_c = dq + dv;

    for (int64_t r = 0; r < a->batch; r++) {
        memcpy(cat1 + r * in_a, a->query + r * dq, (size_t)dq * sizeof(float));
        memcpy(cat1 + r * in_a + dq, a->key + r * dk, (size_t)dk * sizeof(float));
    }
    mha_gemm_job job = {cat1, in_a, &model->attn, S, L, a->batch};
    mha_gemm_run(kern, &job, 1, threads, (float *)(base + l.pack));
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && a->batch > 1)
    for (int64_t r = 0; r < a->batch; r++) {
        float *s = S + r * L, *applied = cat2 + r * in_c + dq;
        softmax_row(kern, s, L);
        if (a->weights)
            memcpy(a->weights + r * L, s, (size_t)L * sizeof(float));
        memcpy(cat2 + r * in_c, a->query + r * dq, (size_t)dq * sizeof(float));
        memset(applied, 0, (size_t)dv * sizeof(float));
        kern->f32_axpy_rows(s, a->value + r * L * dv, (size_t)dv, (size_t)L, (size_t)dv, applied);
    }
    job = (mha_gemm_job){cat2, in_c, &model->combine, a->out, c->out_dim, a->batch};
    mha_gemm_run(kern, &job, 1, threads, (float *)(base + l.pack));
    return MHA_OK;
}
