/* Two partial attention results merged by their log-sum-exps. */
#include <math.h>

#include "internal.h"

mha_status mha_lse_merge(int64_t rows, int64_t num_heads, int64_t head_dim, const float *out_a,
                         const float *lse_a, const float *out_b, const float *lse_b, float *out,
                         float *lse_out)
{
    if (!out_a || !lse_a || !out_b || !lse_b || !out)
        return MHA_ERR_NULL_POINTER;
    if (rows <= 0 || num_heads <= 0 || head_dim <= 0)
        return MHA_ERR_BAD_SIZE;
    int64_t n, nl;
    if (!mha_mul3(rows, num_heads, head_dim, &n) || n > MHA_MAX_ELEMS || !mha_mul(rows, num_heads, &nl))
        return MHA_ERR_OVERFLOW;
    const size_t ob = (size_t)n * sizeof(float), lb = (size_t)nl * sizeof(float);
    /* Element-wise: an output may be exactly an input, never partly over one. */
    const float *ins[4] = {out_a, out_b, lse_a, lse_b};
    const size_t sz[4] = {ob, ob, lb, lb};
    for (int i = 0; i < 4; i++) {
        if (ins[i] != out && mha_ranges_overlap(out, ob, ins[i], sz[i]))
            return MHA_ERR_ALIAS;
        if (lse_out && ins[i] != lse_out && mha_ranges_overlap(lse_out, lb, ins[i], sz[i]))
            return MHA_ERR_ALIAS;
    }
    if ((lse_out && mha_ranges_overlap(out, ob, lse_out, lb)) || (out == lse_a || out == lse_b) ||
        (lse_out && (lse_out == out_a || lse_out == out_b)))
        return MHA_ERR_ALIAS;
    for (int64_t r = 0; r < nl; r++) {
        const float la = lse_a[r], lb_ = lse_b[r];
        const float m = la > lb_ ? la : lb_;
        const float *a = out_a + r * head_dim, *b = out_b + r * head_dim;
        float *o = out + r * head_dim;
        if (isnan(la) || isnan(lb_)) {
            for (int64_t d = 0; d < head_dim; d++)
                o[d] = NAN;
            if (lse_out)
                lse_out[r] = NAN;
            continue;
        }
        if (m == -INFINITY) { /* both parts empty */
            for (int64_t d = 0; d < head_dim; d++)
                o[d] = 0.0f;
            if (lse_out)
                lse_out[r] = -INFINITY;
            continue;
        }
        /* An empty part has weight exp(-inf) = 0 and its out is not read (it may be
         * anything, even NaN). */
        const float wa = expf(la - m), wb = expf(lb_ - m), inv = 1.0f / (wa + wb);
        for (int64_t d = 0; d < head_dim; d++) {
            float x = la == -INFINITY ? 0.0f : wa * a[d];
            float y = lb_ == -INFINITY ? 0.0f : wb * b[d];
            o[d] = (x + y) * inv;
        }
        if (lse_out)
            lse_out[r] = m + logf(wa + wb);
    }
    return MHA_OK;
}
