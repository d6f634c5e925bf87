/*
 * The textbook unfused additive (Bahdanau) attention, written as d2l.ai's
 * AdditiveAttention computes it, as the baseline of the additive attention bench
 * rows. Needs OpenBLAS (built only with it, like the other baselines).
 *
 *   Qp = q W_q^T [B, Lq, h], Kp = k W_k^T [B, Lk, h]               (sgemm)
 *   feat[b, i, j, :] = Qp[b, i, :] + Kp[b, j, :]       materialised [B, Lq, Lk, h]
 *   feat = tanhf(feat)                                  libm, a second pass
 *   scores = feat w_v [B, Lq, Lk]                      (sgemv)
 *   scores[b, i, j] = -1e6 for j >= valid_lens[b]       d2l's masked_softmax
 *   weights = softmax(scores, -1); out[b] = weights[b] v[b]   (sgemm per batch)
 *
 * Layouts are PyTorch's, contiguous: q [B, Lq, Dq], k [B, Lk, Dk], v [B, Lk, Dv],
 * W_q [h, Dq], W_k [h, Dk], w_v [h] (nn.Linear without bias, as in d2l). valid_lens
 * [B] may be NULL (no mask); as in d2l, a valid length of 0 gives uniform weights
 * (the library gives zeros there). weights [B, Lq, Lk] may be NULL. scratch holds
 * additive_textbook_scratch_floats(B, Lq, Lk, h) floats, the materialised tensor
 * included. Runs on the calling thread; sgemm uses OpenBLAS's thread setting.
 */
#ifndef MHA_BENCH_ADDITIVE_BASELINE_H
#define MHA_BENCH_ADDITIVE_BASELINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

size_t additive_textbook_scratch_floats(int B, int Lq, int Lk, int h);

void additive_textbook(int B, int Lq, int Lk, int Dq, int Dk, int h, int Dv, const float *q,
                       const float *k, const float *v, const float *W_q, const float *W_k,
                       const float *w_v, const int32_t *valid_lens, float *out, float *weights,
                       float *scratch);

#ifdef __cplusplus
}
#endif

#endif /* MHA_BENCH_ADDITIVE_BASELINE_H */
