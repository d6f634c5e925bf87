/* The textbook unfused additive attention (see additive_baseline.h). */
#include "additive_baseline.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

size_t additive_textbook_scratch_floats(int B, int Lq, int Lk, int h)
{
    const size_t b = (size_t)B, lq = (size_t)Lq, lk = (size_t)Lk, hh = (size_t)h;
    return b * lq * hh + b * lk * hh + b * lq * lk * hh + b * lq * lk;
}

/* d2l's masked_softmax on one row: positions >= valid are set to -1e6 (not -inf:
 * with valid = 0 every score is -1e6 and the softmax is uniform), then softmax. */
static void masked_softmax_row(float *s, int n, int valid)
{
    for (int j = valid < 0 ? 0 : valid; j < n; j++)
        s[j] = -1e6f;
    float m = s[0];
    for (int j = 1; j < n; j++)
        m = s[j] > m ? s[j] : m;
    float sum = 0.0f;
    for (int j = 0; j < n; j++) {
        s[j] = expf(s[j] - m);
        sum += s[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < n; j++)
        s[j] *= inv;
}

void additive_textbook(int B, int Lq, int Lk, int Dq, int Dk, int h, int Dv, const float *q,
                       const float *k, const float *v, const float *W_q, const float *W_k,
                       const float *w_v, const int32_t *valid_lens, float *out, float *weights,
                       float *scratch)
{
    const size_t lq = (size_t)Lq, lk = (size_t)Lk, hh = (size_t)h;
    float *qp = scratch;                    /* [B, Lq, h] */
    float *kp = qp + (size_t)B * lq * hh;   /* [B, Lk, h] */
    float *feat = kp + (size_t)B * lk * hh; /* [B, Lq, Lk, h] */
    float *scores = weights ? weights : feat + (size_t)B * lq * lk * hh; /* [B, Lq, Lk] */

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B * Lq, h, Dq, 1.0f, q, Dq, W_q, Dq, 0.0f,
                qp, h);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B * Lk, h, Dk, 1.0f, k, Dk, W_k, Dk, 0.0f,
                kp, h);
    /* queries.unsqueeze(2) + keys.unsqueeze(1): the broadcast sum, materialised. */
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < lq; i++)
            for (size_t j = 0; j < lk; j++) {
                const float *a = qp + ((size_t)b * lq + i) * hh, *c = kp + ((size_t)b * lk + j) * hh;
                float *f = feat + (((size_t)b * lq + i) * lk + j) * hh;
                for (size_t t = 0; t < hh; t++)
                    f[t] = a[t] + c[t];
            }
    const size_t nfeat = (size_t)B * lq * lk * hh;
    for (size_t t = 0; t < nfeat; t++)
        feat[t] = tanhf(feat[t]);
    /* w_v(features).squeeze(-1): [B*Lq*Lk, h] times [h]. */
    cblas_sgemv(CblasRowMajor, CblasNoTrans, B * Lq * Lk, h, 1.0f, feat, h, w_v, 1, 0.0f, scores,
                1);
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < lq; i++)
            masked_softmax_row(scores + ((size_t)b * lq + i) * lk, Lk,
                               valid_lens ? valid_lens[b] : Lk);
    for (int b = 0; b < B; b++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Lq, Dv, Lk, 1.0f,
                    scores + (size_t)b * lq * lk, Lk, v + (size_t)b * lk * (size_t)Dv, Dv, 0.0f,
                    out + (size_t)b * lq * (size_t)Dv, Dv);
}
