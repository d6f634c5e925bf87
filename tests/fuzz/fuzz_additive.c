/*
 * Differential fuzzing of the additive (Bahdanau) and concat attention modules
 * against their float64 oracles: the input bytes choose the module, the shape
 * (hidden widths past the tanh chunk, keys past a task), biases, every mask of the
 * additive module (1-D and 2-D valid lengths, out-of-range ones included, causal
 * kinds, boolean, float), the weights output, the thread count, and seed the data.
 * Both entries must return the same status; on MHA_OK the outputs and weights must
 * agree within float32 error; on any other status nothing may be written. Any
 * disagreement aborts, which libFuzzer reports with the input that caused it.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "mha.h"

static float *random_floats(int64_t n, uint64_t *s, float amp)
{
    float *x = malloc((size_t)n * sizeof *x + 1);
    for (int64_t i = 0; i < n; i++)
        x[i] = amp * rng_float(s);
    return x;
}

static float *sentinel_floats(int64_t n)
{
    float *x = malloc((size_t)n * sizeof *x + 1);
    memset(x, 0x5A, (size_t)n * sizeof *x);
    return x;
}

static void untouched(const float *x, int64_t n)
{
    const uint8_t *c = (const uint8_t *)x;
    for (size_t i = 0; i < (size_t)n * sizeof *x; i++)
        if (c[i] != 0x5A)
            abort(); /* an error wrote an output */
}

/* max |a - b| must be <= tol * scale (NaN agreement required). */
static void agree(const float *a, const float *b, int64_t n, double tol, const char *what)
{
    double top = 1.0, err = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i])) {
            fprintf(stderr, "%s: NaN mismatch at %lld: fast %g, reference %g\n", what, (long long)i,
                    a[i], b[i]);
            abort();
        }
        if (!isnan(b[i])) {
            err = fmax(err, fabs((double)a[i] - b[i]));
            top = fmax(top, fabs((double)b[i]));
        }
    }
    if (err > tol * top) {
        fprintf(stderr, "%s: error %g > %g\n", what, err, tol * top);
        abort();
    }
}

/* A module's outputs: the fast entry's and the oracle's, filled with the sentinel. */
typedef struct outputs {
    float *out, *ref, *wts, *wref;
    int64_t n_out, n_w;
    int with_weights;
} outputs;

static outputs outputs_new(int64_t n_out, int64_t n_w, int with_weights)
{
    outputs o = {sentinel_floats(n_out), sentinel_floats(n_out), sentinel_floats(n_w), sentinel_floats(n_w),
                 n_out, n_w, with_weights};
    return o;
}

/* The fast entry's (reference 0) or the oracle's (1) outputs into the args. */
static void point(const outputs *o, int reference, float **out, float **weights)
{
    *out = reference ? o->ref : o->out;
    *weights = o->with_weights ? (reference ? o->wref : o->wts) : NULL;
}

/* Same status; on error nothing written, else outputs within tol (scaled by amp). */
static void verdict(const char *module, mha_status st, mha_status sr, const outputs *o, double tol)
{
    char what[64];
    if (st != sr) {
        fprintf(stderr, "%s status: fast %d, reference %d\n", module, st, sr);
        abort();
    }
    if (st != MHA_OK) {
        untouched(o->out, o->n_out);
        untouched(o->wts, o->n_w);
        return;
    }
    snprintf(what, sizeof what, "%s out", module);
    agree(o->out, o->ref, o->n_out, tol, what);
    snprintf(what, sizeof what, "%s weights", module);
    if (o->with_weights)
        agree(o->wts, o->wref, o->n_w, tol, what);
}

static void outputs_free(outputs *o)
{
    free(o->out);
    free(o->ref);
    free(o->wts);
    free(o->wref);
}

static void fuzz_additive(bytes *b, uint64_t seed)
{
    const int64_t B = 1 + take(b, 3), Lq = 1 + take(b, take(b, 4) ? 9 : 40);
    const int64_t Lk = 1 + take(b, take(b, 4) ? 20 : 600), Dq = 1 + take(b, 20);
    const int64_t key_dim = take(b, 8) ? 1 + take(b, 20) : 0, Dk = key_dim ? key_dim : Dq; /* 0 = Dq */
    const int64_t h = 1 + (take(b, 8) ? take(b, 70) : 1000 + take(b, 100)), Dv = 1 + take(b, 20);
    const float amp = take(b, 4) == 0 ? 8.0f : 1.0f;
    float *wq = random_floats(h * Dq, &seed, amp / sqrtf((float)Dq));
    float *wk = random_floats(h * Dk, &seed, amp / sqrtf((float)Dk)), *wv = random_floats(h, &seed, 1.0f);
    float *bq = take(b, 2) ? random_floats(h, &seed, 0.5f) : NULL;
    float *bk = take(b, 2) ? random_floats(h, &seed, 0.5f) : NULL;
    float *q = random_floats(B * Lq * Dq, &seed, 1.0f), *k = random_floats(B * Lk * Dk, &seed, 1.0f);
    float *v = random_floats(B * Lk * Dv, &seed, 1.0f);
    const mha_additive_config cfg = {Dq, key_dim, h};
    const mha_additive_weights w = {wq, wk, wv, bq, bk};
    mha_additive_args a = {.batch = B, .len_q = Lq, .len_k = Lk, .value_dim = Dv, .query = q,
                           .key = k, .value = v};
    a.num_threads = (int)take(b, 4) + (take(b, 40) == 0 ? 300 : 0); /* 300 > MHA_MAX_THREADS */
    int32_t lens[3], *rows = NULL;
    uint8_t *keep = NULL;
    float *add = NULL;
    a.mask.causal = (mha_causal)take(b, 4); /* 3: not a valid kind */
    a.mask.causal_offset = (int64_t)take(b, 0) - 128;
    if (take(b, 3) == 0) {
        for (int64_t i = 0; i < B; i++)
            lens[i] = (int32_t)take(b, (unsigned)Lk + 2); /* Lk + 1: out of range */
        a.mask.key_lengths = lens;
    }
    if (take(b, 3) == 0) {
        rows = malloc((size_t)(B * Lq) * sizeof *rows);
        for (int64_t i = 0; i < B * Lq; i++)
            rows[i] = (int32_t)(rng_next(&seed) % (uint64_t)(Lk + 1)) - (take(b, 50) == 0);
        a.row_key_lengths = rows;
    }
    if (take(b, 3) == 0) {
        keep = malloc((size_t)(B * Lq * Lk));
        for (int64_t i = 0; i < B * Lq * Lk; i++)
            keep[i] = (uint8_t)((rng_next(&seed) & 7) != 0);
        a.mask.bool_mask = (mha_mask_tensor){keep, take(b, 2) ? Lq * Lk : 0, 0, Lk};
    }
    if (take(b, 3) == 0) {
        add = random_floats(B * Lq * Lk, &seed, 2.0f);
        for (int64_t i = 0; i < B * Lq * Lk; i += 7)
            add[i] = -INFINITY;
        a.mask.float_mask = (mha_mask_tensor){add, take(b, 2) ? Lq * Lk : 0, 0, Lk};
    }
    outputs o = outputs_new(B * Lq * Dv, B * Lq * Lk, take(b, 2));

    mha_additive_model *m = NULL;
    size_t ws_bytes = 0;
    void *ws = NULL;
    mha_status st = mha_additive_model_create(&cfg, &w, &m);
    if (st == MHA_OK)
        st = mha_additive_workspace_size(m, B, Lq, Lk, a.num_threads, &ws_bytes);
    if (st == MHA_OK) {
        ws = malloc(ws_bytes);
        point(&o, 0, &a.out, &a.weights);
        st = mha_additive_forward(m, &a, ws, ws_bytes);
    }
    point(&o, 1, &a.out, &a.weights);
    /* Scores carry the float32 rounding of projections of inputs up to amp. */
    verdict("additive", st, mha_reference_additive(&cfg, &w, &a), &o, 2e-5 * (1.0 + amp));
    mha_additive_model_destroy(m);
    free(ws);
    outputs_free(&o);
    float *all[] = {wq, wk, wv, bq, bk, q, k, v, add};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    free(rows);
    free(keep);
}

static void fuzz_concat(bytes *b, uint64_t seed)
{
    const int64_t B = 1 + take(b, 9), Dq = 1 + take(b, 40), Dk = 1 + take(b, 40);
    const int64_t Dv = 1 + take(b, 40), L = 1 + take(b, 70), O = 1 + take(b, 40);
    const float amp = take(b, 4) == 0 ? 8.0f : 1.0f;
    float *wa = random_floats(L * (Dq + Dk), &seed, amp / sqrtf((float)(Dq + Dk)));
    float *wc = random_floats(O * (Dq + Dv), &seed, 1.0f / sqrtf((float)(Dq + Dv)));
    float *ba = take(b, 2) ? random_floats(L, &seed, 0.5f) : NULL;
    float *bc = take(b, 2) ? random_floats(O, &seed, 0.5f) : NULL;
    float *q = random_floats(B * Dq, &seed, 1.0f), *k = random_floats(B * Dk, &seed, 1.0f);
    float *v = random_floats(B * L * Dv, &seed, 1.0f);
    const mha_concat_config cfg = {Dq, Dk, Dv, L, O};
    const mha_concat_weights w = {wa, ba, wc, bc};
    mha_concat_args a = {.batch = B, .query = q, .key = k, .value = v};
    a.num_threads = (int)take(b, 4) + (take(b, 40) == 0 ? 300 : 0); /* 300 > MHA_MAX_THREADS */
    outputs o = outputs_new(B * O, B * L, take(b, 2));
    mha_concat_model *m = NULL;
    size_t ws_bytes = 0;
    void *ws = NULL;
    mha_status st = mha_concat_model_create(&cfg, &w, &m);
    if (st == MHA_OK)
        st = mha_concat_workspace_size(m, B, a.num_threads, &ws_bytes);
    if (st == MHA_OK) {
        ws = malloc(ws_bytes);
        point(&o, 0, &a.out, &a.weights);
        st = mha_concat_forward(m, &a, ws, ws_bytes);
    }
    point(&o, 1, &a.out, &a.weights);
    verdict("concat", st, mha_reference_concat(&cfg, &w, &a), &o, 2e-5 * (1.0 + amp));
    mha_concat_model_destroy(m);
    free(ws);
    outputs_free(&o);
    float *all[] = {wa, wc, ba, bc, q, k, v};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bytes b = {data, size};
    const unsigned module = take(&b, 3);
    uint64_t seed = 0x9E3779B97F4A7C15ull ^ (uint64_t)take(&b, 0) << 8 ^ take(&b, 0);
    if (module == 0)
        fuzz_concat(&b, seed);
    else
        fuzz_additive(&b, seed);
    return 0;
}
