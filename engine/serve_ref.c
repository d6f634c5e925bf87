/* The float64 oracle of mha_serve_attention: every row over its own sequence's
 * keys straight from the formula, with its own cache addressing (only the
 * argument checks are shared with the fast path). */
#include <math.h>
#include <stdlib.h>

#include "serve.h"

/* Key (or value) j of sequence s, kv head g. */
static const float *ref_row(const serve_cache *c, const mha_batch *b, int64_t s, int64_t g, int64_t j,
                            int value)
{
    const float *base = value ? c->v : c->k;
    const int64_t d = value ? c->dv : c->dk;
    if (c->layout == MHA_KV_CONTIGUOUS) {
        const int64_t *st = value ? c->vs : c->ks;
        return base + (b->cache_seq ? b->cache_seq[s] : s) * st[0] + g * st[1] + j * st[2];
    }
    const int32_t *row = b->block_start ? b->block_table + b->block_start[s]
                                        : b->block_table + s * (b->block_table_stride ? b->block_table_stride
                                                                                      : b->max_blocks);
    return base + (((int64_t)row[j / c->bs] * c->G + g) * c->bs + j % c->bs) * d;
}

mha_status mha_reference_serve_attention(const mha_serve_plan *plan, const mha_batch *batch,
                                         const mha_kv_cache *cache, const mha_serve_attention_args *args)
{
    serve_call k;
    mha_status st = serve_check_attention_call(plan, batch, cache, args, &k);
    if (st != MHA_OK)
        return st;
    const serve_cache *c = &k.c;
    const int64_t *qs = k.qs, *os = k.os;
    const double scale = k.scale;
    const mha_shape *d = &plan->dims;
    int64_t max_kv = 0;
    for (int64_t s = 0; s < batch->num_seqs; s++)
        max_kv = batch->kv_len[s] > max_kv ? batch->kv_len[s] : max_kv;
    double *score = malloc((size_t)max_kv * sizeof *score), *acc = malloc((size_t)d->dv * sizeof *acc);
    if (!score || !acc) {
        free(score);
        free(acc);
        return MHA_ERR_NO_MEMORY;
    }
    for (int64_t s = 0; s < batch->num_seqs; s++) {
        const int64_t ql = batch->q_start[s + 1] - batch->q_start[s], kl = batch->kv_len[s];
        for (int64_t i = 0; i < ql; i++)
            for (int64_t h = 0; h < d->heads; h++) {
                const int64_t t = batch->q_start[s] + i, g = h / (d->heads / d->kv_heads);
                const int64_t end = batch->non_causal ? kl : kl - ql + i + 1;
                const float *q = args->q + t * qs[0] + h * qs[1];
                double mx = -INFINITY, sum = 0.0;
                int nan = 0;
                for (int64_t j = 0; j < end; j++) {
                    const float *k = ref_row(c, batch, s, g, j, 0);
                    double dot = 0.0;
                    for (int64_t e = 0; e < d->dk; e++)
                        dot += (double)q[e] * k[e];
                    score[j] = dot * scale;
                    nan |= isnan(score[j]);
                    mx = score[j] > mx ? score[j] : mx;
                }
                for (int64_t e = 0; e < d->dv; e++)
                    acc[e] = 0.0;
                for (int64_t j = 0; j < end && !nan; j++) {
                    const float *v = ref_row(c, batch, s, g, j, 1);
                    double p = exp(score[j] - mx);
                    sum += p;
                    for (int64_t e = 0; e < d->dv; e++)
                        acc[e] += p * v[e];
                }
                float *o = args->out + t * os[0] + h * os[1];
                for (int64_t e = 0; e < d->dv; e++)
                    o[e] = nan ? NAN : (float)(acc[e] / sum);
                if (args->lse)
                    args->lse[t * d->heads + h] = nan ? NAN : (float)(mx + log(sum));
            }
    }
    free(score);
    free(acc);
    return MHA_OK;
}
