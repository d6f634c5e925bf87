/* `mha run --expect`: the comparison with a reference output, which understands the
 * one place mha and PyTorch differ on purpose: a query row that may attend to no key
 * is a zero row of that head's attention output in mha and NaN in PyTorch. */
#define _POSIX_C_SOURCE 200809L

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "run.h"

int run_load_expect(const char *path, const int64_t shape[3], npy_array *e)
{
    char err[PATH_MAX + 256], got[160], want[160];
    if (npy_load(path, e, err, sizeof err)) {
        fprintf(stderr, "mha run: --expect %s\n", err);
        return -1;
    }
    if (e->dtype == NPY_F32 && e->ndim == 3 && memcmp(e->shape, shape, 3 * sizeof *shape) == 0)
        return 0;
    fprintf(stderr, "mha run: --expect %s: %s %s, expected float32 %s\n", path,
            npy_dtype_name(e->dtype), run_fmt_shape(got, sizeof got, e->ndim, e->shape),
            run_fmt_shape(want, sizeof want, 3, shape));
    npy_free(e);
    return -1;
}

/* 1 when query row i of batch b may attend to no key in head h under the run's mask
 * (causal, key lengths, boolean zeros, additive -inf). */
static int sees_no_key(const problem *p, int64_t b, int64_t h, int64_t i)
{
    const mha_mask *m = &p->args.mask;
    const dims *d = &p->d;
    int64_t end = d->Lk; /* keys j < end pass the causal and length parts */
    if (m->causal == MHA_CAUSAL_BOTTOM_RIGHT && i + d->Lk - d->Lq + 1 < end)
        end = i + d->Lk - d->Lq + 1;
    if (m->causal == MHA_CAUSAL_EXPLICIT && i + m->causal_offset + 1 < end)
        end = i + m->causal_offset + 1;
    if (m->key_lengths && m->key_lengths[b] < end)
        end = m->key_lengths[b];
    const mha_mask_tensor *bt = &m->bool_mask, *ft = &m->float_mask;
    const uint8_t *bm = bt->data ? (const uint8_t *)bt->data + b * bt->stride_b +
                                       h * bt->stride_h + i * bt->stride_q
                                 : NULL;
    const float *fm = ft->data ? (const float *)ft->data + b * ft->stride_b + h * ft->stride_h +
                                     i * ft->stride_q
                               : NULL;
    for (int64_t j = 0; j < end; j++)
        if ((!bm || bm[j]) && (!fm || fm[j] != -INFINITY))
            return 0;
    return 1;
}

static int all_nan(const float *x, int64_t n)
{
    for (int64_t k = 0; k < n; k++)
        if (!isnan(x[k]))
            return 0;
    return 1;
}

/* Where PyTorch's NaN may stand for mha's zero row. With an output projection the
 * unit is the whole output row (the projection spreads one head's NaN over it) and
 * mha's row must hold no NaN; without one it is one head's slice, which mha must
 * give as zeros. The unit's query row must see no key in some head / in its head. */
static int nan_unit_matches(const problem *p, int64_t row, int64_t head, const float *got,
                            int64_t width)
{
    const int64_t b = row / p->d.Lq, i = row % p->d.Lq;
    int masked = 0;
    for (int64_t h = p->d.out_proj ? 0 : head; h < (p->d.out_proj ? p->d.H : head + 1); h++)
        masked |= sees_no_key(p, b, h, i);
    if (!masked) {
        fprintf(stderr, "mha run: --expect: row (b %lld, i %lld) is all NaN in the expected "
                        "output, but it sees keys in %s\n",
                (long long)b, (long long)i, p->d.out_proj ? "every head" : "this head");
        return 0;
    }
    for (int64_t k = 0; k < width; k++)
        if (p->d.out_proj ? isnan(got[k]) : got[k] != 0.0f) {
            fprintf(stderr, "mha run: --expect: row (b %lld, i %lld) sees no key, but mha's "
                            "output there is not %s\n",
                    (long long)b, (long long)i, p->d.out_proj ? "free of NaN" : "zero");
            return 0;
        }
    return 1;
}

int run_compare_expect(const npy_array *e, const problem *p, double tol)
{
    const int64_t rows = p->d.B * p->d.Lq, units = p->d.out_proj ? 1 : p->d.H;
    const int64_t width = p->d.out_width / units;
    cli_err err = {0};
    int64_t nan_units = 0;
    int ok = 1;
    for (int64_t r = 0; r < rows && ok; r++)
        for (int64_t u = 0; u < units && ok; u++) {
            size_t at = (size_t)(r * p->d.out_width + u * width);
            const float *want = (const float *)e->data + at, *got = p->out + at;
            if (all_nan(want, width)) {
                ok = nan_unit_matches(p, r, u, got, width);
                nan_units += ok;
            } else
                cli_err_add(&err, got, want, (size_t)width);
        }
    double rel = cli_err_rel(&err);
    int pass = ok && rel <= tol;
    printf("max |diff| / max |expected| = %.3g (tol %g)", rel, tol);
    if (nan_units)
        printf("; %lld %s all NaN in expected where mha's query row sees no key (not compared)",
               (long long)nan_units, units == 1 ? "rows" : "head slices");
    printf(": %s\n", pass ? "PASS" : "FAIL");
    return pass ? 0 : -1;
}
