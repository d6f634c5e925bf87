/* The online-softmax step and the final division shared by the attention drivers (engine/flash.c,
 * engine/serve_attend.c). */
#include <math.h>
#include <string.h>

#include "internal.h"

/* One online-softmax step of a row: srow (nk scores, the first vis of them masked
 * and visible, the rest hidden) becomes P, the running max *m and sum *l are
 * updated and the output row o (d_v) rescaled when the max grows. */
void mha_softmax_step(const mha_kernels *kern, float *srow, int64_t vis, int64_t nk, float *m, float *l,
                      float *o, int64_t dv)
{
    memset(srow + vis, 0, (size_t)(nk - vis) * sizeof(float));
    if (vis == 0)
        return;
    nk = vis;
    float mnew = kern->f32_rowmax(srow, (size_t)nk);
    if (*m > mnew)
        mnew = *m;
    if (mnew == -INFINITY) { /* nothing visible yet: contributes nothing */
        memset(srow, 0, (size_t)nk * sizeof(float));
        return;
    }
    float alpha = expf(*m - mnew);
    float sum = kern->f32_exp_sub_sum(srow, mnew, srow, (size_t)nk);
    *l = *l * alpha + sum;
    if (alpha != 1.0f)
        kern->f32_scale(o, alpha, (size_t)dv);
    *m = mnew;
}

/* dst = o / l, or zeros for a row that may attend to nothing (l == 0). */
void mha_finish_row(const float *o, float l, int64_t dv, float *dst)
{
    if (l == 0.0f) {
        memset(dst, 0, (size_t)dv * sizeof(float));
        return;
    }
    float inv = 1.0f / l;
    for (int64_t d = 0; d < dv; d++)
        dst[d] = o[d] * inv;
}
