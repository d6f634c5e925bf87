/*
 * The textbook additive attention baseline against a float64 loop of d2l's
 * formulas, on small shapes: without and with valid lengths (one of them 0:
 * d2l's uniform weights), with and without the weights output. Exit 1 on a
 * mismatch. A meson test beside the bench (both need OpenBLAS).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "additive_baseline.h"

static uint32_t rng = 12345u;

static float uniform(float lo, float hi)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return lo + (hi - lo) * (float)(rng >> 8) * (1.0f / 16777216.0f);
}

static float *randoms(size_t n, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p)
        exit(2);
    for (size_t i = 0; i < n; i++)
        p[i] = uniform(-scale, scale);
    return p;
}

/* out[b, i, :] and weights[b, i, :] in float64, element by element. */
static void reference(int B, int Lq, int Lk, int Dq, int Dk, int h, int Dv, const float *q,
                      const float *k, const float *v, const float *W_q, const float *W_k,
                      const float *w_v, const int32_t *valid_lens, double *out, double *wts)
{
    double *qp = malloc((size_t)h * sizeof *qp), *kp = malloc((size_t)h * sizeof *kp);
    if (!qp || !kp)
        exit(2);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < Lq; i++) {
            double *w = wts + ((size_t)b * Lq + i) * Lk;
            const float *qi = q + ((size_t)b * Lq + i) * Dq;
            for (int t = 0; t < h; t++) {
                qp[t] = 0.0;
                for (int c = 0; c < Dq; c++)
                    qp[t] += (double)W_q[(size_t)t * Dq + c] * qi[c];
            }
            for (int j = 0; j < Lk; j++) {
                const float *kj = k + ((size_t)b * Lk + j) * Dk;
                double s = 0.0;
                for (int t = 0; t < h; t++) {
                    kp[t] = 0.0;
                    for (int c = 0; c < Dk; c++)
                        kp[t] += (double)W_k[(size_t)t * Dk + c] * kj[c];
                    s += (double)w_v[t] * tanh(qp[t] + kp[t]);
                }
                w[j] = (valid_lens && j >= valid_lens[b]) ? -1e6 : s;
            }
            double m = w[0], sum = 0.0;
            for (int j = 1; j < Lk; j++)
                m = w[j] > m ? w[j] : m;
            for (int j = 0; j < Lk; j++)
                sum += (w[j] = exp(w[j] - m));
            for (int j = 0; j < Lk; j++)
                w[j] /= sum;
            for (int c = 0; c < Dv; c++) {
                double o = 0.0;
                for (int j = 0; j < Lk; j++)
                    o += w[j] * v[((size_t)b * Lk + j) * Dv + c];
                out[((size_t)b * Lq + i) * Dv + c] = o;
            }
        }
    free(qp);
    free(kp);
}

/* 0 when out (and weights, if asked for) match the float64 loop. */
static int check(const char *name, int B, int Lq, int Lk, int Dq, int Dk, int h, int Dv,
                 const int32_t *valid_lens, int want_weights)
{
    float *q = randoms((size_t)B * Lq * Dq, 1.0f), *k = randoms((size_t)B * Lk * Dk, 1.0f);
    float *v = randoms((size_t)B * Lk * Dv, 2.0f);
    float *W_q = randoms((size_t)h * Dq, 1.0f / sqrtf((float)Dq));
    float *W_k = randoms((size_t)h * Dk, 1.0f / sqrtf((float)Dk));
    float *w_v = randoms((size_t)h, 1.0f);
    float *out = randoms((size_t)B * Lq * Dv, 1.0f), *wts = randoms((size_t)B * Lq * Lk, 1.0f);
    float *scratch = randoms(additive_textbook_scratch_floats(B, Lq, Lk, h), 1.0f);
    double *ro = malloc((size_t)B * Lq * Dv * sizeof *ro), *rw = malloc((size_t)B * Lq * Lk * sizeof *rw);
    if (!ro || !rw)
        exit(2);
    additive_textbook(B, Lq, Lk, Dq, Dk, h, Dv, q, k, v, W_q, W_k, w_v, valid_lens, out,
                      want_weights ? wts : NULL, scratch);
    reference(B, Lq, Lk, Dq, Dk, h, Dv, q, k, v, W_q, W_k, w_v, valid_lens, ro, rw);
    double eo = 0.0, ew = 0.0, mo = 1.0;
    for (size_t i = 0; i < (size_t)B * Lq * Dv; i++) {
        eo = fmax(eo, fabs(out[i] - ro[i]));
        mo = fmax(mo, fabs(ro[i]));
    }
    if (want_weights)
        for (size_t i = 0; i < (size_t)B * Lq * Lk; i++)
            ew = fmax(ew, fabs(wts[i] - rw[i]));
    /* NaN-safe: a NaN error fails. */
    int bad = !(eo <= 2e-5 * mo) || !(ew <= 1e-6);
    printf("%s %s: max |out - ref| = %.3g (max |ref| %.3g), max |weights - ref| = %.3g\n",
           bad ? "FAIL" : "ok", name, eo, mo, ew);
    free(q), free(k), free(v), free(W_q), free(W_k), free(w_v), free(out), free(wts);
    free(scratch), free(ro), free(rw);
    return bad;
}

int main(void)
{
    const int32_t d2l_lens[2] = {2, 6}, lens3[3] = {7, 0, 3};
    int bad = 0;
    /* d2l's example: queries (2, 1, 20), keys (2, 10, 2), values (2, 10, 4), h = 8. */
    bad |= check("d2l example", 2, 1, 10, 20, 2, 8, 4, d2l_lens, 1);
    bad |= check("no mask, no weights", 3, 5, 7, 6, 9, 11, 3, NULL, 0);
    bad |= check("valid lengths 7, 0, 3", 3, 4, 7, 5, 5, 16, 6, lens3, 1);
    bad |= check("one decoder step", 1, 1, 33, 17, 17, 32, 9, NULL, 1);
    return bad;
}
