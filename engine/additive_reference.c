/*
 * The float64 oracles of the additive and concat attention modules, written
 * straight from the formulas: projections in double, libm's tanh and exp, the full
 * score row in memory, the [Lk, h] hidden row of every query materialised. They
 * share no arithmetic with the fast paths; only the argument checks are common.
 */
#include <math.h>
#include <stdlib.h>

#include "additive_internal.h"

/* y[n] = W [n, k] x + bias (bias may be NULL), in double. */
static void linear_row(const float *x, int64_t k, const float *w, const float *bias, int64_t n,
                       double *y)
{
    for (int64_t o = 0; o < n; o++) {
        double acc = bias ? (double)bias[o] : 0.0;
        for (int64_t i = 0; i < k; i++)
            acc += (double)x[i] * (double)w[o * k + i];
        y[o] = acc;
    }
}

/* In place: softmax of the n scores (-inf = masked out); zeros when every score is
 * -inf, NaN everywhere when one is NaN. */
static void softmax_f64(double *s, int64_t n)
{
    double mx = -INFINITY;
    int nan = 0;
    for (int64_t j = 0; j < n; j++) {
        nan |= isnan(s[j]);
        mx = s[j] > mx ? s[j] : mx;
    }
    if (nan || mx == -INFINITY) {
        for (int64_t j = 0; j < n; j++)
            s[j] = nan ? NAN : 0.0;
        return;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++)
        sum += s[j] = exp(s[j] - mx);
    for (int64_t j = 0; j < n; j++)
        s[j] /= sum;
}

/* 1 if row i of batch b may attend key j by every discrete mask. */
static int visible(const mha_additive_args *a, int64_t b, int64_t i, int64_t j)
{
    const mha_mask *m = &a->mask;
    if (m->key_lengths && j >= m->key_lengths[b])
        return 0;
    if (a->row_key_lengths && j >= a->row_key_lengths[b * a->len_q + i])
        return 0;
    if (m->causal == MHA_CAUSAL_BOTTOM_RIGHT && j > i + (a->len_k - a->len_q))
        return 0;
    if (m->causal == MHA_CAUSAL_EXPLICIT && j - i > m->causal_offset)
        return 0;
    const uint8_t *keep = m->bool_mask.data;
    if (keep && !keep[b * m->bool_mask.stride_b + i * m->bool_mask.stride_q + j])
        return 0;
    return 1;
}

mha_status mha_reference_additive(const mha_additive_config *config,
                                  const mha_additive_weights *w, const mha_additive_args *a)
{
    mha_additive_config c;
    mha_status st = mha_additive_config_resolve(config, &c);
    if (st == MHA_OK)
        st = mha_additive_weights_check(w);
    if (st == MHA_OK)
        st = mha_additive_args_check(&c, a);
    if (st != MHA_OK)
        return st;
    const int64_t B = a->batch, lq = a->len_q, lk = a->len_k, h = c.hidden_dim, dv = a->value_dim;
    double *qp = malloc((size_t)h * sizeof *qp);
    double *kp = malloc((size_t)(lk * h) * sizeof *kp);
    double *hidden = malloc((size_t)(lk * h) * sizeof *hidden); /* the textbook's tensor, one row */
    double *s = malloc((size_t)lk * sizeof *s);
    double *o = malloc((size_t)dv * sizeof *o);
    if (!qp || !kp || !hidden || !s || !o) {
        st = MHA_ERR_NO_MEMORY;
        goto done;
    }
    for (int64_t b = 0; b < B; b++) {
        for (int64_t j = 0; j < lk; j++)
            linear_row(a->key + (b * lk + j) * c.key_dim, c.key_dim, w->k_weight, w->k_bias, h,
                       kp + j * h);
        for (int64_t i = 0; i < lq; i++) {
            linear_row(a->query + (b * lq + i) * c.query_dim, c.query_dim, w->q_weight, w->q_bias,
                       h, qp);
            for (int64_t j = 0; j < lk; j++)
                for (int64_t u = 0; u < h; u++)
                    hidden[j * h + u] = tanh(qp[u] + kp[j * h + u]);
            const mha_mask *m = &a->mask;
            for (int64_t j = 0; j < lk; j++) {
                double x = 0.0;
                for (int64_t u = 0; u < h; u++)
                    x += (double)w->v_weight[u] * hidden[j * h + u];
                if (m->float_mask.data)
                    x += ((const float *)m->float_mask.data)[b * m->float_mask.stride_b +
                                                             i * m->float_mask.stride_q + j];
                s[j] = visible(a, b, i, j) ? x : -INFINITY;
            }
            softmax_f64(s, lk);
            for (int64_t d = 0; d < dv; d++)
                o[d] = 0.0;
            for (int64_t j = 0; j < lk; j++)
                for (int64_t d = 0; d < dv && s[j] != 0.0; d++) /* masked keys add nothing */
                    o[d] += s[j] * (double)a->value[(b * lk + j) * dv + d];
            for (int64_t d = 0; d < dv; d++)
                a->out[(b * lq + i) * dv + d] = (float)o[d];
            for (int64_t j = 0; a->weights && j < lk; j++)
                a->weights[(b * lq + i) * lk + j] = (float)s[j];
        }
    }
done:
    free(qp);
    free(kp);
    free(hidden);
    free(s);
    free(o);
    return st;
}

mha_status mha_reference_concat(const mha_concat_config *config, const mha_concat_weights *w,
                                const mha_concat_args *a)
{
    mha_concat_config c;
    mha_status st = mha_concat_config_resolve(config, &c);
    if (st == MHA_OK)
        st = mha_concat_weights_check(w);
    if (st == MHA_OK)
        st = mha_concat_args_check(&c, a);
    if (st != MHA_OK)
        return st;
    const int64_t dq = c.query_dim, dk = c.key_dim, dv = c.value_dim, L = c.max_len, O = c.out_dim;
    float *cat = malloc((size_t)(dq + dk) * sizeof *cat);
    double *s = malloc((size_t)L * sizeof *s), *applied = malloc((size_t)dv * sizeof *applied);
    double *y = malloc((size_t)O * sizeof *y);
    if (!cat || !s || !applied || !y) {
        st = MHA_ERR_NO_MEMORY;
        goto done;
    }
    for (int64_t b = 0; b < a->batch; b++) {
        for (int64_t i = 0; i < dq; i++)
            cat[i] = a->query[b * dq + i];
        for (int64_t i = 0; i < dk; i++)
            cat[dq + i] = a->key[b * dk + i];
        linear_row(cat, dq + dk, w->attn_weight, w->attn_bias, L, s);
        softmax_f64(s, L);
        for (int64_t d = 0; d < dv; d++) {
            applied[d] = 0.0;
            for (int64_t j = 0; j < L; j++)
                applied[d] += s[j] * (double)a->value[(b * L + j) * dv + d];
        }
        /* attn_combine on [q, applied] with applied kept in double. */
        for (int64_t o = 0; o < O; o++) {
            const float *wr = w->combine_weight + o * (dq + dv);
            double acc = w->combine_bias ? (double)w->combine_bias[o] : 0.0;
            for (int64_t i = 0; i < dq; i++)
                acc += (double)a->query[b * dq + i] * (double)wr[i];
            for (int64_t d = 0; d < dv; d++)
                acc += applied[d] * (double)wr[dq + d];
            y[o] = acc;
        }
        for (int64_t o = 0; o < O; o++)
            a->out[b * O + o] = (float)y[o];
        for (int64_t j = 0; a->weights && j < L; j++)
            a->weights[b * L + j] = (float)s[j];
    }
done:
    free(cat);
    free(s);
    free(applied);
    free(y);
    return st;
}
