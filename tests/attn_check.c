#include "attn_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- strided tensors */


const char *layout_name(int l)
{
    static const char *n[] = {"dense", "BLHD", "padded", "bcast-batch"};
    return n[l];
}

void set_strides(int64_t st[3], int layout, int64_t n1, int64_t n2, int64_t d)
{
    switch (layout) {
    case L_BLHD:
        st[0] = n2 * n1 * d;
        st[1] = d;
        st[2] = n1 * d;
        break;
    case L_PADDED:
        st[2] = d + 3;
        st[1] = n2 * (d + 3);
        st[0] = n1 * n2 * (d + 3) + 5;
        break;
    case L_BCAST_B:
        st[0] = 0;
        st[1] = n2 * d;
        st[2] = d;
        break;
    default:
        st[0] = n1 * n2 * d;
        st[1] = n2 * d;
        st[2] = d;
        break;
    }
}

size_t extent_of(const int64_t st[3], int64_t n0, int64_t n1, int64_t n2, int64_t d)
{
    return (size_t)((n0 - 1) * st[0] + (n1 - 1) * st[1] + (n2 - 1) * st[2] + d);
}

float *elem(float *x, const int64_t st[3], int64_t a, int64_t b, int64_t c)
{
    return x + a * st[0] + b * st[1] + c * st[2];
}

/* A strided tensor whose padding is NaN (read padding would show) and whose
 * elements are uniform in [lo, hi). */
float *strided_random(test_rng *r, const int64_t st[3], int64_t n0, int64_t n1, int64_t n2,
                      int64_t d, float lo, float hi)
{
    size_t n = extent_of(st, n0, n1, n2, d);
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
    for (int64_t a = 0; a < n0; a++)
        for (int64_t b = 0; b < n1; b++)
            for (int64_t c = 0; c < n2; c++)
                test_fill(r, elem(x, st, a, b, c), (size_t)d, lo, hi);
    return x;
}

/* Dense [n0, n1, n2, d] copy of a strided tensor. */
float *dense_copy(const float *x, const int64_t st[3], int64_t n0, int64_t n1, int64_t n2, int64_t d)
{
    float *y = xmalloc((size_t)(n0 * n1 * n2 * d) * sizeof(float)), *o = y;
    for (int64_t a = 0; a < n0; a++)
        for (int64_t b = 0; b < n1; b++)
            for (int64_t c = 0; c < n2; c++) {
                memcpy(o, x + a * st[0] + b * st[1] + c * st[2], (size_t)d * sizeof(float));
                o += d;
            }
    return y;
}

/* ---------------------------------------------------------------- compare */

/* Fails with the worst element's index in [n0, n1, n2, n3] when
 * max|got - want| / max(max|want|, floor) > tol, or when NaNs differ. */
void compare(const float *got, const float *want, int64_t n0, int64_t n1, int64_t n2, int64_t n3,
             double floor, double tol, const char *what)
{
    size_t n = (size_t)(n0 * n1 * n2 * n3), worst = 0;
    double maxw = floor, maxd = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(want[i])) {
            if (isnan(got[i]) != isnan(want[i])) {
                maxd = INFINITY;
                worst = i;
                break;
            }
            continue;
        }
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= maxd)) {
            maxd = d;
            worst = i;
        }
        if (fabs((double)want[i]) > maxw)
            maxw = fabs((double)want[i]);
    }
    double e = maxd / maxw;
    size_t w = worst;
    int64_t i3 = (int64_t)(w % (size_t)n3), i2 = (int64_t)(w / (size_t)n3 % (size_t)n2),
            i1 = (int64_t)(w / (size_t)(n3 * n2) % (size_t)n1), i0 = (int64_t)(w / (size_t)(n3 * n2 * n1));
    require(e <= tol, "[%s] %s: relative error %.3g > %.3g at [%lld,%lld,%lld,%lld]: got %.9g, want %.9g",
                  isa_now(), what, e, tol, (long long)i0, (long long)i1, (long long)i2, (long long)i3,
                  (double)got[w], (double)want[w]);
}

/* ------------------------------------------------------------- attention */

/* Runs mha_attention on a (any strides) and the oracle on dense copies of q, k, v;
 * compares; checks that the output's padding was not written. Returns the fast
 * output as a dense [B, H, Lq, d_v] array (caller frees); *ref_out, when not NULL,
 * gets the oracle's. */
float *check_attention(const mha_attention_args *in, double tol, const char *what, float **ref_out)
{
    mha_attention_args a = *in;
    const int64_t B = a.batch, H = a.num_heads, G = a.num_kv_heads ? a.num_kv_heads : H, Lq = a.len_q,
                  Lk = a.len_k, dk = a.head_dim_qk, dv = a.head_dim_v;
    char msg[256];
    snprintf(msg, sizeof msg, "%s [B=%lld H=%lld G=%lld Lq=%lld Lk=%lld dk=%lld dv=%lld]", what, (long long)B,
             (long long)H, (long long)G, (long long)Lq, (long long)Lk, (long long)dk, (long long)dv);

    /* Oracle on dense copies. */
    mha_attention_args d = a;
    float *qd = dense_copy(a.q, a.q_stride, B, H, Lq, dk), *kd = dense_copy(a.k, a.k_stride, B, G, Lk, dk),
          *vd = dense_copy(a.v, a.v_stride, B, G, Lk, dv);
    size_t n = (size_t)(B * H * Lq * dv);
    float *ref = xmalloc(n * sizeof(float));
    d.q = qd;
    d.k = kd;
    d.v = vd;
    d.out = ref;
    set_strides(d.q_stride, L_DENSE, H, Lq, dk);
    set_strides(d.k_stride, L_DENSE, G, Lk, dk);
    set_strides(d.v_stride, L_DENSE, G, Lk, dv);
    set_strides(d.out_stride, L_DENSE, H, Lq, dv);
    mha_status st = mha_reference_attention(&d);
    require(st == MHA_OK, "%s: reference: %s", msg, mha_status_message(st));

    /* Fast path into a sentinel-filled buffer. */
    size_t ext = extent_of(a.out_stride, B, H, Lq, dv);
    float *out = xmalloc(ext * sizeof(float));
    memset(out, SENTINEL_BYTE, ext * sizeof(float));
    a.out = out;
    size_t bytes;
    st = mha_attention_workspace_size(&a, &bytes);
    require(st == MHA_OK, "%s: workspace size: %s", msg, mha_status_message(st));
    void *ws = xmalloc(bytes);
    st = mha_attention(&a, ws, bytes);
    require(st == MHA_OK, "[%s] %s: %s", isa_now(), msg, mha_status_message(st));
    free(ws);
    float *got = dense_copy(out, a.out_stride, B, H, Lq, dv);
    /* Padding untouched: overwrite every element with the sentinel, then the whole
     * buffer must be sentinel. */
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++)
                memset(elem(out, a.out_stride, b, h, i), SENTINEL_BYTE, (size_t)dv * sizeof(float));
    const unsigned char *c = (const unsigned char *)out;
    for (size_t i = 0; i < ext * sizeof(float); i++)
        require(c[i] == SENTINEL_BYTE, "[%s] %s: wrote output padding at byte %zu", isa_now(), msg, i);
    free(out);

    compare(got, ref, B, H, Lq, dv, 1e-6, tol, msg);
    free(qd);
    free(kd);
    free(vd);
    if (ref_out)
        *ref_out = ref;
    else
        free(ref);
    return got;
}

/* A random attention problem in the given layouts (q and out share one). */

void prob_init(prob *p, uint64_t seed, int64_t B, int64_t H, int64_t G, int64_t Lq, int64_t Lk,
               int64_t dk, int64_t dv, int q_layout, int kv_layout, int out_layout)
{
    test_rng r = test_rng_seed(seed);
    memset(p, 0, sizeof *p);
    mha_attention_args *a = &p->a;
    a->batch = B;
    a->num_heads = H;
    a->num_kv_heads = G; /* 0 means H: kept 0 to exercise the default */
    /* One thread: with more, libgomp's idle workers spin while the oracle runs and
     * steal its core (seconds on a 2-core machine). Thread counts are covered by
     * test_api.c (thread-count independence) and a few 2-thread cases here. */
    a->num_threads = 1;
    if (G == 0)
        G = H;
    a->len_q = Lq;
    a->len_k = Lk;
    a->head_dim_qk = dk;
    a->head_dim_v = dv;
    set_strides(a->q_stride, q_layout, H, Lq, dk);
    set_strides(a->k_stride, kv_layout, G, Lk, dk);
    set_strides(a->v_stride, kv_layout, G, Lk, dv);
    set_strides(a->out_stride, out_layout, H, Lq, dv);
    p->q = strided_random(&r, a->q_stride, B, H, Lq, dk, -1, 1);
    p->k = strided_random(&r, a->k_stride, B, G, Lk, dk, -1, 1);
    p->v = strided_random(&r, a->v_stride, B, G, Lk, dv, -1, 1);
    a->q = p->q;
    a->k = p->k;
    a->v = p->v;
}

void prob_free(prob *p)
{
    free(p->q);
    free(p->k);
    free(p->v);
}

/* 1 when every element of the dense row is exactly +0 or -0 (not NaN). */
int row_is_zero(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (x[i] != 0.0f)
            return 0;
    return 1;
}

/* ------------------------------------------------------------ forward */

/* Forward pass (fast and oracle) on args a (out is set here); returns the fast
 * output [B, Lq, O] (caller frees) and the oracle's through *ref_out if asked. */
float *check_forward(const fixture *f, const mha_forward_args *in, double tol, const char *what,
                     float **ref_out)
{
    mha_forward_args a = *in;
    const int64_t lk = a.key ? a.len_k : a.len_q;
    size_t n = (size_t)(a.batch * a.len_q * f->O);
    float *out = xmalloc(n * sizeof(float)), *ref = xmalloc(n * sizeof(float));
    char msg[200];
    snprintf(msg, sizeof msg, "forward %s [E=%lld H=%lld G=%lld dk=%lld dv=%lld O=%lld B=%lld Lq=%lld Lk=%lld]",
             what, (long long)f->E, (long long)f->H, (long long)f->G, (long long)f->dk, (long long)f->dv,
             (long long)f->O, (long long)a.batch, (long long)a.len_q, (long long)lk);
    a.out = ref;
    mha_status st = mha_reference_forward(&f->cfg, &f->w, &a);
    require(st == MHA_OK, "%s: reference: %s", msg, mha_status_message(st));
    a.out = out;
    size_t bytes;
    st = mha_forward_workspace_size(f->model, a.batch, a.len_q, lk, a.num_threads, &bytes);
    require(st == MHA_OK, "%s: workspace size: %s", msg, mha_status_message(st));
    void *ws = xmalloc(bytes);
    st = mha_forward(f->model, &a, ws, bytes);
    require(st == MHA_OK, "[%s] %s: %s", isa_now(), msg, mha_status_message(st));
    free(ws);
    compare(out, ref, 1, a.batch, a.len_q, f->O, 1e-6, tol, msg);
    if (ref_out)
        *ref_out = ref;
    else
        free(ref);
    return out;
}

/* Inputs for a forward call: query [B, Lq, E], key [B, Lk, kdim], value [B, Lk, vdim]. */

void finputs_init(finputs *in, const fixture *f, uint64_t seed, int64_t B, int64_t Lq, int64_t Lk, int self,
                  float amp)
{
    test_rng r = test_rng_seed(seed);
    memset(in, 0, sizeof *in);
    in->x = test_random(&r, (size_t)(B * Lq * f->E), -amp, amp);
    in->a.batch = B;
    in->a.num_threads = 1; /* see prob_init */
    in->a.len_q = Lq;
    in->a.query = in->x;
    if (!self) {
        in->k = test_random(&r, (size_t)(B * Lk * f->kdim), -amp, amp);
        in->v = test_random(&r, (size_t)(B * Lk * f->vdim), -amp, amp);
        in->a.len_k = Lk;
        in->a.key = in->k;
        in->a.value = in->v;
    }
}

void finputs_free(finputs *in)
{
    free(in->x);
    free(in->k);
    free(in->v);
}
