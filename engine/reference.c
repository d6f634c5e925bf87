/*
 * The oracle: attention written straight from the formulas, in double precision,
 * one query row at a time with the full score row in memory. It shares no
 * arithmetic with the fast paths (no kernel table, no packing, no online softmax);
 * only the argument checks are common, so both reject the same calls.
 */
#include <math.h>
#include <stdlib.h>

#include "internal.h"

/* A strided double tensor: element (i0, i1, i2, d). */
typedef struct view {
    const double *p;
    int64_t s0, s1, s2;
} view;

static double at(view v, int64_t i0, int64_t i1, int64_t i2, int64_t d)
{
    return v.p[i0 * v.s0 + i1 * v.s1 + i2 * v.s2 + d];
}

/* A dense double copy [n0, n1, n2, inner] of a strided float tensor. */
static double *to_f64(const float *x, const int64_t st[3], int64_t n0, int64_t n1, int64_t n2,
                      int64_t inner, view *v)
{
    double *y = malloc((size_t)(n0 * n1 * n2 * inner) * sizeof *y);
    if (!y)
        return NULL;
    double *o = y;
    for (int64_t a = 0; a < n0; a++)
        for (int64_t b = 0; b < n1; b++)
            for (int64_t c = 0; c < n2; c++)
                for (int64_t d = 0; d < inner; d++)
                    *o++ = (double)x[a * st[0] + b * st[1] + c * st[2] + d];
    *v = (view){y, n1 * n2 * inner, n2 * inner, inner};
    return y;
}

/* 1 if query row i of (b, h) may attend to key j, by every discrete mask. */
static int visible(const mha_mask *m, int64_t lq, int64_t lk, int64_t b, int64_t h, int64_t i, int64_t j)
{
    if (m->key_lengths && j >= m->key_lengths[b])
        return 0;
    if (m->causal == MHA_CAUSAL_BOTTOM_RIGHT && j > i + (lk - lq))
        return 0;
    if (m->causal == MHA_CAUSAL_EXPLICIT && j - i > m->causal_offset) /* j - i cannot overflow */
        return 0;
    if (m->bool_mask.data) {
        const uint8_t *u = m->bool_mask.data;
        if (!u[b * m->bool_mask.stride_b + h * m->bool_mask.stride_h + i * m->bool_mask.stride_q + j])
            return 0;
    }
    return 1;
}

/* out[d] (double, length dv) = softmax(scale q k^T + mask) v for one query row. */
static void attend_row(const mha_shape *s, const mha_mask *m, double scale, view q, view k, view v,
                       int64_t b, int64_t h, int64_t i, double *score, double *out)
{
    int64_t g = h / (s->heads / s->kv_heads);
    double mx = -INFINITY;
    int any_nan = 0;
    for (int64_t j = 0; j < s->len_k; j++) {
        double dot = 0.0;
        for (int64_t d = 0; d < s->dk; d++)
            dot += at(q, b, h, i, d) * at(k, b, g, j, d);
        double x = dot * scale;
        if (m->float_mask.data) {
            const float *f = m->float_mask.data;
            x += f[b * m->float_mask.stride_b + h * m->float_mask.stride_h + i * m->float_mask.stride_q + j];
        }
        if (!visible(m, s->len_q, s->len_k, b, h, i, j))
            x = -INFINITY;
        score[j] = x;
        if (isnan(x))
            any_nan = 1;
        else if (x > mx)
            mx = x;
    }
    for (int64_t d = 0; d < s->dv; d++)
        out[d] = any_nan ? NAN : 0.0;
    if (any_nan || mx == -INFINITY) /* NaN propagates; a row that sees nothing is zero */
        return;
    double sum = 0.0;
    for (int64_t j = 0; j < s->len_k; j++) {
        double p = exp(score[j] - mx);
        sum += p;
        for (int64_t d = 0; d < s->dv; d++)
            out[d] += p * at(v, b, g, j, d);
    }
    for (int64_t d = 0; d < s->dv; d++)
        out[d] /= sum;
}

/* Attention into a double buffer laid out [B, Lq, H, dv]. */
static mha_status attention_f64(const mha_shape *s, const mha_mask *m, double scale, view q, view k,
                                view v, double *out)
{
    double *score = malloc((size_t)s->len_k * sizeof *score);
    if (!score)
        return MHA_ERR_NO_MEMORY;
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t h = 0; h < s->heads; h++)
            for (int64_t i = 0; i < s->len_q; i++)
                attend_row(s, m, scale, q, k, v, b, h, i, score,
                           out + ((b * s->len_q + i) * s->heads + h) * s->dv);
    free(score);
    return MHA_OK;
}

mha_status mha_reference_attention(const mha_attention_args *a)
{
    mha_shape s;
    float scale;
    mha_status st = mha_attention_check(a, &s, &scale);
    if (st != MHA_OK)
        return st;
    view q, k, v;
    double *o = malloc((size_t)(s.batch * s.len_q * s.heads * s.dv) * sizeof *o);
    double *qd = to_f64(a->q, a->q_stride, s.batch, s.heads, s.len_q, s.dk, &q);
    double *kd = to_f64(a->k, a->k_stride, s.batch, s.kv_heads, s.len_k, s.dk, &k);
    double *vd = to_f64(a->v, a->v_stride, s.batch, s.kv_heads, s.len_k, s.dv, &v);
    st = o && qd && kd && vd ? attention_f64(&s, &a->mask, scale, q, k, v, o) : MHA_ERR_NO_MEMORY;
    if (st == MHA_OK)
        for (int64_t b = 0; b < s.batch; b++)
            for (int64_t i = 0; i < s.len_q; i++)
                for (int64_t h = 0; h < s.heads; h++)
                    for (int64_t d = 0; d < s.dv; d++)
                        a->out[b * a->out_stride[0] + h * a->out_stride[1] + i * a->out_stride[2] + d] =
                            (float)o[((b * s.len_q + i) * s.heads + h) * s.dv + d];
    free(o);
    free(qd);
    free(kd);
    free(vd);
    return st;
}

/* y[r, n] = sum_k x[r, k] w[n, k] + bias[n], x float [rows, kdim], in double. */
static void linear_f64(const float *x, int64_t rows, int64_t kdim, const float *w, const float *bias,
                       int64_t n, double *y)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < n; o++) {
            double acc = bias ? (double)bias[o] : 0.0;
            for (int64_t i = 0; i < kdim; i++)
                acc += (double)x[r * kdim + i] * (double)w[o * kdim + i];
            y[r * n + o] = acc;
        }
}

mha_status mha_reference_forward(const mha_config *config, const mha_weights *w,
                                 const mha_forward_args *a)
{
    mha_config c;
    int64_t lk;
    if (!config)
        return MHA_ERR_NULL_POINTER;
    mha_status st = mha_config_resolve(config, &c);
    if (st == MHA_OK)
        st = mha_weights_check(&c, w);
    if (st == MHA_OK)
        st = mha_forward_check(&c, a, &lk);
    if (st != MHA_OK)
        return st;

    const int64_t B = a->batch, lq = a->len_q, H = c.num_heads, G = c.num_kv_heads;
    const int64_t dk = c.head_dim_qk, dv = c.head_dim_v, E = c.embed_dim;
    const int64_t nq = H * dk, nk = G * dk, nv = G * dv, ncat = H * dv;
    const float *wq = w->q_weight, *wk = w->k_weight, *wv = w->v_weight;
    const float *bq = w->q_bias, *bk = w->k_bias, *bv = w->v_bias;
    if (w->in_proj_weight) {
        wq = w->in_proj_weight;
        wk = wq + nq * E;
        wv = wk + nk * E;
        bq = w->in_proj_bias;
        bk = bq ? bq + nq : NULL;
        bv = bk ? bk + nk : NULL;
    }
    const float *ksrc = a->key ? a->key : a->query, *vsrc = a->value ? a->value : a->query;

    double *qd = malloc((size_t)(B * lq * nq) * sizeof *qd);
    double *kd = malloc((size_t)(B * lk * nk) * sizeof *kd);
    double *vd = malloc((size_t)(B * lk * nv) * sizeof *vd);
    double *cat = malloc((size_t)(B * lq * ncat) * sizeof *cat);
    if (!qd || !kd || !vd || !cat) {
        st = MHA_ERR_NO_MEMORY;
        goto done;
    }
    linear_f64(a->query, B * lq, E, wq, bq, nq, qd);
    linear_f64(ksrc, B * lk, c.kdim, wk, bk, nk, kd);
    linear_f64(vsrc, B * lk, c.vdim, wv, bv, nv, vd);
    mha_shape s = {B, H, G, lq, lk, dk, dv};
    view q = {qd, lq * nq, dk, nq}, k = {kd, lk * nk, dk, nk}, v = {vd, lk * nv, dv, nv};
    st = attention_f64(&s, &a->mask, (double)c.scale, q, k, v, cat);
    if (st != MHA_OK)
        goto done;
    if (!c.has_out_proj) {
        for (int64_t i = 0; i < B * lq * ncat; i++)
            a->out[i] = (float)cat[i];
        goto done;
    }
    for (int64_t r = 0; r < B * lq; r++)
        for (int64_t o = 0; o < c.out_dim; o++) {
            double acc = w->out_bias ? (double)w->out_bias[o] : 0.0;
            for (int64_t i = 0; i < ncat; i++)
                acc += cat[r * ncat + i] * (double)w->out_weight[o * ncat + i];
            a->out[r * c.out_dim + o] = (float)acc;
        }
done:
    free(qd);
    free(kd);
    free(vd);
    free(cat);
    return st;
}
