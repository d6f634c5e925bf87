/*
 * Additive (Bahdanau) and concat attention against their float64 oracles: random
 * shapes (hidden widths past the tanh chunk, keys past a task), every mask (1-D and
 * 2-D valid lengths, causal both ways, boolean, float, all at once), rows that see
 * nothing (zeros in out and weights), thread-count independence (bitwise), the
 * workspace bound stated in mha.h, and bad inputs (status, message, nothing written).
 * No OpenMP outside START_TEST bodies (Check forks each test).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* --------------------------------------------------------------- additive */

typedef struct add_fix {
    mha_additive_config cfg;
    mha_additive_weights w;
    int64_t B, Lq, Lk, Dq, Dk, h, Dv;
    float *wq, *wk, *wv, *bq, *bk, *q, *k, *v;
    mha_additive_model *model;
} add_fix;

/* bias: 0 none (d2l), 1 W_q only, 2 both. */
static void add_init(add_fix *f, int64_t B, int64_t Lq, int64_t Lk, int64_t Dq, int64_t Dk,
                     int64_t h, int64_t Dv, int bias, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    f->B = B, f->Lq = Lq, f->Lk = Lk, f->Dq = Dq, f->Dk = Dk, f->h = h, f->Dv = Dv;
    f->cfg = (mha_additive_config){.query_dim = Dq, .key_dim = Dk, .hidden_dim = h};
    test_rng r = test_rng_seed(seed);
    const float sq = 1.0f / sqrtf((float)Dq), sk = 1.0f / sqrtf((float)Dk), sv = 1.0f / sqrtf((float)h);
    f->wq = test_random(&r, (size_t)(h * Dq), -sq, sq);
    f->wk = test_random(&r, (size_t)(h * Dk), -sk, sk);
    f->wv = test_random(&r, (size_t)h, -3 * sv, 3 * sv); /* scores of a few units: peaked rows */
    f->bq = bias >= 1 ? test_random(&r, (size_t)h, -sq, sq) : NULL;
    f->bk = bias >= 2 ? test_random(&r, (size_t)h, -sk, sk) : NULL;
    f->q = test_random(&r, (size_t)(B * Lq * Dq), -2, 2);
    f->k = test_random(&r, (size_t)(B * Lk * Dk), -2, 2);
    f->v = test_random(&r, (size_t)(B * Lk * Dv), -1, 1);
    f->w = (mha_additive_weights){f->wq, f->wk, f->wv, f->bq, f->bk};
    mha_status st = mha_additive_model_create(&f->cfg, &f->w, &f->model);
    require(st == MHA_OK, "mha_additive_model_create: %s", mha_status_message(st));
}

static void add_free(add_fix *f)
{
    mha_additive_model_destroy(f->model);
    float *all[] = {f->wq, f->wk, f->wv, f->bq, f->bk, f->q, f->k, f->v};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

static mha_additive_args add_args(const add_fix *f, float *out, float *weights, int threads)
{
    mha_additive_args a = {.batch = f->B, .len_q = f->Lq, .len_k = f->Lk, .value_dim = f->Dv,
                           .query = f->q, .key = f->k, .value = f->v, .out = out,
                           .weights = weights, .num_threads = threads};
    return a;
}

/* The fast call with a workspace of exactly the queried size. */
static mha_status add_run(const add_fix *f, const mha_additive_args *a)
{
    size_t bytes = 0;
    mha_status st = mha_additive_workspace_size(f->model, a->batch, a->len_q, a->len_k,
                                                a->num_threads, &bytes);
    require(st == MHA_OK, "mha_additive_workspace_size: %s", mha_status_message(st));
    void *ws = xmalloc(bytes);
    st = mha_additive_forward(f->model, a, ws, bytes);
    free(ws);
    return st;
}

/* Mask kinds of the oracle test. */
enum { M_NONE, M_LENS_1D, M_LENS_2D, M_CAUSAL, M_CAUSAL_EXPLICIT, M_BOOL, M_FLOAT, M_ALL, M_KINDS };

typedef struct masks {
    int32_t *lens, *row_lens;
    uint8_t *keep;
    float *add;
} masks;

/* Fills a->mask / row_key_lengths for kind; every kind with a length or boolean mask
 * leaves some row seeing no key. */
static void set_masks(const add_fix *f, int kind, mha_additive_args *a, masks *m, test_rng *r)
{
    memset(m, 0, sizeof *m);
    const int64_t B = f->B, Lq = f->Lq, Lk = f->Lk;
    if (kind == M_LENS_1D || kind == M_ALL) {
        m->lens = xmalloc((size_t)B * sizeof *m->lens);
        for (int64_t b = 0; b < B; b++)
            m->lens[b] = (int32_t)(b == 0 ? 0 : (b * 7 + 3) % (Lk + 1));
        if (B == 1)
            m->lens[0] = (int32_t)(Lk / 2);
        a->mask.key_lengths = m->lens;
    }
    if (kind == M_LENS_2D || kind == M_ALL) {
        m->row_lens = xmalloc((size_t)(B * Lq) * sizeof *m->row_lens);
        for (int64_t i = 0; i < B * Lq; i++)
            m->row_lens[i] = (int32_t)(i == (B * Lq > 1) ? 0 : (i * 5 + 1) % (Lk + 1));
        a->row_key_lengths = m->row_lens;
    }
    if (kind == M_CAUSAL || kind == M_ALL)
        a->mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
    if (kind == M_CAUSAL_EXPLICIT) {
        a->mask.causal = MHA_CAUSAL_EXPLICIT;
        a->mask.causal_offset = -2; /* rows 0 and 1 see nothing */
    }
    if (kind == M_BOOL || kind == M_ALL) {
        m->keep = xmalloc((size_t)(B * Lq * Lk));
        for (int64_t i = 0; i < B * Lq * Lk; i++)
            m->keep[i] = (uint8_t)(test_rng_uniform(r, 0, 1) < 0.7f ? 1 + i % 3 : 0);
        memset(m->keep, 0, (size_t)Lk); /* row (0, 0) sees nothing */
        a->mask.bool_mask = (mha_mask_tensor){m->keep, Lq * Lk, 0, Lk};
    }
    if (kind == M_FLOAT || kind == M_ALL) { /* [Lq, Lk] broadcast over the batch */
        m->add = test_random(r, (size_t)(Lq * Lk), -2, 2);
        for (int64_t i = 0; i < Lq * Lk; i += 5)
            m->add[i] = -INFINITY;
        a->mask.float_mask = (mha_mask_tensor){m->add, 0, 0, Lk};
    }
}

static void masks_free(masks *m)
{
    free(m->lens);
    free(m->row_lens);
    free(m->keep);
    free(m->add);
}

/* Max |a - b| over n values (NaN if they disagree on NaN). */
static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double d = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i]))
            return NAN;
        if (!isnan(a[i]) && fabs((double)a[i] - (double)b[i]) > d)
            d = fabs((double)a[i] - (double)b[i]);
    }
    return d;
}

/* n floats filled with the sentinel (an output nothing may write on error). */
static float *sentinel_floats(size_t n)
{
    float *x = xmalloc(n * sizeof *x);
    fill_sentinel(x, n * sizeof *x);
    return x;
}

/* One bad argument: `a` = `good` with one mutation; `expect` checks the status
 * and that nothing was written. */
#define BAD_CALL(expect, mutation, status)                                                          \
    do {                                                                                           \
        a = good;                                                                                  \
        mutation;                                                                                  \
        expect(&f, &a, status, #mutation);                                                         \
    } while (0)

/* Fast vs oracle on one fixture and mask kind: out within 2e-5 (V is in [-1, 1],
 * so max |V| is the yardstick), weights within 1e-6; rows the oracle gives zero
 * weights must be exactly zero in both outputs. */
static void check_additive_vs_oracle(const add_fix *f, int kind, int threads)
{
    const size_t no = (size_t)(f->B * f->Lq * f->Dv), nw = (size_t)(f->B * f->Lq * f->Lk);
    float *out = sentinel_floats(no), *ref = xmalloc(no * sizeof *ref);
    float *w = sentinel_floats(nw), *wref = xmalloc(nw * sizeof *wref);
    mha_additive_args a = add_args(f, out, w, threads);
    masks m;
    test_rng r = test_rng_seed((uint64_t)kind * 77 + 5);
    set_masks(f, kind, &a, &m, &r);
    mha_status st = add_run(f, &a);
    require(st == MHA_OK, "mha_additive_forward: %s", mha_status_message(st));
    a.out = ref;
    a.weights = wref;
    st = mha_reference_additive(&f->cfg, &f->w, &a);
    require(st == MHA_OK, "mha_reference_additive: %s", mha_status_message(st));
    const double e_out = max_abs_diff(out, ref, no), e_w = max_abs_diff(w, wref, nw);
    require(e_out <= 2e-5, "%s, mask kind %d, B=%lld Lq=%lld Lk=%lld h=%lld: out error %.3g",
            isa_now(), kind, (long long)f->B, (long long)f->Lq, (long long)f->Lk, (long long)f->h, e_out);
    require(e_w <= 1e-6, "%s, mask kind %d, h=%lld: weights error %.3g", isa_now(), kind,
            (long long)f->h, e_w);
    int empty_rows = 0;
    for (int64_t row = 0; row < f->B * f->Lq; row++) {
        int empty = 1;
        for (int64_t j = 0; j < f->Lk; j++)
            empty &= wref[row * f->Lk + j] == 0.0f;
        if (!empty)
            continue;
        empty_rows++;
        for (int64_t j = 0; j < f->Lk; j++)
            require(w[row * f->Lk + j] == 0.0f, "row %lld sees no key: weight %g", (long long)row,
                    w[row * f->Lk + j]);
        for (int64_t d = 0; d < f->Dv; d++)
            require(out[row * f->Dv + d] == 0.0f, "row %lld sees no key: out %g", (long long)row,
                    out[row * f->Dv + d]);
    }
    /* The kinds that hide a whole row did so (else the zero check proved nothing). */
    if (kind == M_LENS_2D || kind == M_CAUSAL_EXPLICIT || kind == M_BOOL || kind == M_ALL)
        require(empty_rows > 0, "mask kind %d left no empty row", kind);
    masks_free(&m);
    free(out);
    free(ref);
    free(w);
    free(wref);
}

/* {B, Lq, Lk, Dq, Dk, h, Dv, bias}: tails of every vector width, a hidden width past
 * one chunk (1024) and keys past one task (256), decoding (Lq = 1), Lq > Lk. */
static const int64_t add_shapes[][8] = {
    {1, 1, 1, 1, 1, 1, 1, 0},     {2, 5, 7, 3, 4, 9, 5, 0},       {3, 8, 33, 16, 8, 32, 17, 2},
    {1, 1, 300, 24, 40, 48, 8, 1}, {2, 13, 6, 5, 5, 1100, 3, 2},  {1, 70, 520, 8, 8, 20, 4, 0},
    {2, 9, 4, 12, 7, 65, 33, 2},
};
#define N_ADD_SHAPES ((int)(sizeof add_shapes / sizeof add_shapes[0]))

START_TEST(test_additive_oracle)
{
    const int64_t *s = add_shapes[_i];
    if (test_quick() && s[1] * s[2] * s[5] > 20000)
        return; /* emulated ISAs: the small shapes cover the same paths */
    add_fix f;
    add_init(&f, s[0], s[1], s[2], s[3], s[4], s[5], s[6], (int)s[7], 100 + (uint64_t)_i);
    for (int kind = 0; kind < M_KINDS; kind++)
        check_additive_vs_oracle(&f, kind, 1 + kind % 2);
    add_free(&f);
}
END_TEST

/* Same bits on 1, 2 and 3 threads, with every mask and the weights output. */
START_TEST(test_additive_threads_bitwise)
{
    add_fix f;
    add_init(&f, 3, 11, 300, 10, 6, 40, 9, 2, 7);
    const size_t no = (size_t)(f.B * f.Lq * f.Dv), nw = (size_t)(f.B * f.Lq * f.Lk);
    float *out[3], *w[3];
    for (int t = 0; t < 3; t++) {
        out[t] = xmalloc(no * sizeof(float));
        w[t] = xmalloc(nw * sizeof(float));
        mha_additive_args a = add_args(&f, out[t], w[t], t + 1);
        masks m;
        test_rng r = test_rng_seed(3);
        set_masks(&f, M_ALL, &a, &m, &r);
        ck_assert_int_eq(add_run(&f, &a), MHA_OK);
        masks_free(&m);
    }
    for (int t = 1; t < 3; t++) {
        ck_assert_msg(memcmp(out[0], out[t], no * sizeof(float)) == 0, "out: 1 vs %d threads", t + 1);
        ck_assert_msg(memcmp(w[0], w[t], nw * sizeof(float)) == 0, "weights: 1 vs %d threads", t + 1);
    }
    for (int t = 0; t < 3; t++) {
        free(out[t]);
        free(w[t]);
    }
    add_free(&f);
}
END_TEST

/* Without the weights output the result is the same, and the bias of w_v is not
 * needed: only b_q + b_k enters (a fixture with both equals one with their sum). */
START_TEST(test_additive_bias_sum)
{
    add_fix f;
    add_init(&f, 2, 4, 9, 6, 5, 12, 3, 2, 11);
    float *sum = xmalloc((size_t)f.h * sizeof *sum);
    for (int64_t u = 0; u < f.h; u++)
        sum[u] = f.bq[u] + f.bk[u];
    mha_additive_weights w2 = f.w;
    w2.q_bias = sum;
    w2.k_bias = NULL;
    mha_additive_model *m2;
    ck_assert_int_eq(mha_additive_model_create(&f.cfg, &w2, &m2), MHA_OK);
    const size_t no = (size_t)(f.B * f.Lq * f.Dv);
    float *o1 = xmalloc(no * sizeof *o1), *o2 = xmalloc(no * sizeof *o2);
    mha_additive_args a = add_args(&f, o1, NULL, 1);
    ck_assert_int_eq(add_run(&f, &a), MHA_OK);
    mha_additive_model *keep = f.model;
    f.model = m2;
    a.out = o2;
    ck_assert_int_eq(add_run(&f, &a), MHA_OK);
    f.model = keep;
    ck_assert(memcmp(o1, o2, no * sizeof *o1) == 0);
    mha_additive_model_destroy(m2);
    free(sum);
    free(o1);
    free(o2);
    add_free(&f);
}
END_TEST

/* The bound of mha.h, and that it does not grow with Lq*Lk*h: monotone in the shape
 * and far below the textbook's [B, Lq, Lk, h] tensor. */
START_TEST(test_additive_workspace_bound)
{
    add_fix f;
    add_init(&f, 1, 1, 1, 8, 8, 256, 1, 0, 1);
    /* Each shape no smaller than the one before in every dimension. */
    const int64_t shapes[][3] = {{1, 1, 1}, {1, 1, 1024}, {8, 64, 1024}, {8, 300, 5000}, {8, 2048, 300000}};
    size_t prev = 0;
    for (int s = 0; s < 5; s++) {
        const int64_t B = shapes[s][0], Lq = shapes[s][1], Lk = shapes[s][2], h = f.h, T = 2;
        size_t bytes;
        ck_assert_int_eq(mha_additive_workspace_size(f.model, B, Lq, Lk, (int)T, &bytes), MHA_OK);
        int64_t round = Lk > (1 << 18) ? Lk : (1 << 18);
        if (B * Lq * Lk < round)
            round = B * Lq * Lk;
        const double bound =
            4.0 * (double)(B * Lq * h + B * Lk * h + round + T * 8256) + T * 2097152.0 + 256;
        ck_assert_msg((double)bytes <= bound, "%zu bytes > the stated %.0f", bytes, bound);
        ck_assert_msg(bytes >= prev, "not monotone");
        ck_assert_msg((double)bytes < 0.1 * 4.0 * (double)(B * Lq * Lk * h) || B * Lq * Lk < 100000,
                      "%zu bytes: grows like Lq*Lk*h", bytes);
        prev = bytes;
    }
    add_free(&f);
}
END_TEST

/* The fast entry's status st and the oracle's sr are both `want`, with a message. */
static void require_statuses(const char *what, mha_status st, mha_status sr, mha_status want)
{
    require(st == want, "%s: status %d (%s), expected %d", what, st, mha_status_message(st), want);
    require(strlen(mha_status_message(st)) > 0, "%s: empty message", what);
    require(sr == want, "%s: reference status %d, expected %d", what, sr, want);
}

static void expect_add_error(const add_fix *f, const mha_additive_args *a, mha_status want,
                             const char *what)
{
    size_t bytes = 0;
    mha_status sq = mha_additive_workspace_size(f->model, f->B, f->Lq, f->Lk, 1, &bytes);
    require(sq == MHA_OK, "size query");
    void *ws = xmalloc(bytes);
    mha_status st = mha_additive_forward(f->model, a, ws, bytes);
    require_statuses(what, st, mha_reference_additive(&f->cfg, &f->w, a), want);
    free(ws);
}

START_TEST(test_additive_bad_inputs)
{
    add_fix f;
    add_init(&f, 2, 3, 5, 4, 6, 8, 7, 1, 3);
    const size_t no = (size_t)(f.B * f.Lq * f.Dv), nw = (size_t)(f.B * f.Lq * f.Lk);
    float *out = sentinel_floats(no), *w = sentinel_floats(nw);
    const mha_additive_args good = add_args(&f, out, w, 1);
    mha_additive_args a;
    int32_t lens[2] = {5, 6}, neg[6] = {0, 1, 2, 3, -1, 0}, row[6] = {0, 1, 2, 3, 4, 5};
    uint8_t keep[3 * 5] = {0};

#define BAD(mutation, status) BAD_CALL(expect_add_error, mutation, status)
    BAD(a.query = NULL, MHA_ERR_NULL_POINTER);
    BAD(a.key = NULL, MHA_ERR_NULL_POINTER);
    BAD(a.value = NULL, MHA_ERR_NULL_POINTER);
    BAD(a.out = NULL, MHA_ERR_NULL_POINTER);
    BAD(a.batch = 0, MHA_ERR_BAD_SIZE);
    BAD(a.len_q = -1, MHA_ERR_BAD_SIZE);
    BAD(a.len_k = 0, MHA_ERR_BAD_SIZE);
    BAD(a.value_dim = 0, MHA_ERR_BAD_SIZE);
    BAD(a.num_threads = -1, MHA_ERR_THREADS);
    BAD(a.num_threads = 257, MHA_ERR_THREADS);
    BAD(a.batch = INT64_MAX / 2, MHA_ERR_OVERFLOW);
    BAD(a.mask.key_lengths = lens, MHA_ERR_MASK);      /* 6 > Lk */
    BAD(a.row_key_lengths = neg, MHA_ERR_MASK);        /* -1 */
    BAD((row[5] = 6, a.row_key_lengths = row), MHA_ERR_MASK);
    BAD(a.mask.causal = (mha_causal)7, MHA_ERR_MASK);
    BAD(a.mask.bool_mask = ((mha_mask_tensor){keep, 0, 0, 2}), MHA_ERR_MASK); /* stride_q < Lk */
    BAD(a.mask.bool_mask = ((mha_mask_tensor){keep, 0, 0, -5}), MHA_ERR_MASK);
    BAD(a.out = (float *)f.q, MHA_ERR_ALIAS);
    BAD(a.weights = (float *)f.v + 3, MHA_ERR_ALIAS);
    BAD(a.weights = out + 1, MHA_ERR_ALIAS);
#undef BAD

    /* The workspace: NULL, too small, overlapping an input. */
    size_t bytes;
    ck_assert_int_eq(mha_additive_workspace_size(f.model, f.B, f.Lq, f.Lk, 1, &bytes), MHA_OK);
    void *ws = xmalloc(bytes);
    ck_assert_int_eq(mha_additive_forward(f.model, &good, NULL, bytes), MHA_ERR_WORKSPACE);
    ck_assert_int_eq(mha_additive_forward(f.model, &good, ws, bytes - 1), MHA_ERR_WORKSPACE);
    ck_assert_int_eq(mha_additive_forward(NULL, &good, ws, bytes), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_additive_forward(f.model, NULL, ws, bytes), MHA_ERR_NULL_POINTER);
    float *big = xmalloc(bytes + (size_t)(f.B * f.Lq * f.Dq) * sizeof(float));
    memcpy(big, f.q, (size_t)(f.B * f.Lq * f.Dq) * sizeof(float));
    a = good;
    a.query = big; /* the workspace below starts inside the query */
    ck_assert_int_eq(mha_additive_forward(f.model, &a, big + 1, bytes), MHA_ERR_ALIAS);
    free(big);
    ck_assert(is_sentinel(out, no * sizeof *out));
    ck_assert(is_sentinel(w, nw * sizeof *w));

    /* The size query and model creation. */
    ck_assert_int_eq(mha_additive_workspace_size(f.model, 0, 1, 1, 1, &bytes), MHA_ERR_BAD_SIZE);
    ck_assert_int_eq(mha_additive_workspace_size(f.model, 1, 1, 1, -1, &bytes), MHA_ERR_THREADS);
    ck_assert_int_eq(mha_additive_workspace_size(f.model, 1, 1, 1, 257, &bytes), MHA_ERR_THREADS);
    ck_assert_int_eq(mha_additive_workspace_size(f.model, INT64_MAX / 4, 4, 1, 1, &bytes), MHA_ERR_OVERFLOW);
    ck_assert_int_eq(mha_additive_workspace_size(NULL, 1, 1, 1, 1, &bytes), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_additive_workspace_size(f.model, 1, 1, 1, 1, NULL), MHA_ERR_NULL_POINTER);
    mha_additive_model *m = NULL; /* must stay untouched */
    mha_additive_config c = f.cfg;
    c.query_dim = 0;
    ck_assert_int_eq(mha_additive_model_create(&c, &f.w, &m), MHA_ERR_BAD_SIZE);
    c = f.cfg;
    c.hidden_dim = -3;
    ck_assert_int_eq(mha_additive_model_create(&c, &f.w, &m), MHA_ERR_BAD_SIZE);
    c = f.cfg;
    c.hidden_dim = INT64_MAX / 2;
    ck_assert_int_eq(mha_additive_model_create(&c, &f.w, &m), MHA_ERR_OVERFLOW);
    mha_additive_weights w2 = f.w;
    w2.v_weight = NULL;
    ck_assert_int_eq(mha_additive_model_create(&f.cfg, &w2, &m), MHA_ERR_WEIGHTS);
    ck_assert_int_eq(mha_additive_model_create(NULL, &f.w, &m), MHA_ERR_NULL_POINTER);
    ck_assert_ptr_null(m);
    mha_additive_model_destroy(NULL);
    free(ws);
    free(out);
    free(w);
    add_free(&f);
}
END_TEST

/* ----------------------------------------------------------------- concat */

typedef struct cat_fix {
    mha_concat_config cfg;
    mha_concat_weights w;
    int64_t B, Dq, Dk, Dv, L, O;
    float *wa, *ba, *wc, *bc, *q, *k, *v;
    mha_concat_model *model;
} cat_fix;

static void cat_init(cat_fix *f, int64_t B, int64_t Dq, int64_t Dk, int64_t Dv, int64_t L,
                     int64_t O, int bias, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    f->B = B, f->Dq = Dq, f->Dk = Dk, f->Dv = Dv, f->L = L, f->O = O;
    f->cfg = (mha_concat_config){Dq, Dk, Dv, L, O};
    test_rng r = test_rng_seed(seed);
    const float sa = 1.0f / sqrtf((float)(Dq + Dk)), sc = 1.0f / sqrtf((float)(Dq + Dv));
    f->wa = test_random(&r, (size_t)(L * (Dq + Dk)), -3 * sa, 3 * sa);
    f->wc = test_random(&r, (size_t)(O * (Dq + Dv)), -sc, sc);
    f->ba = bias ? test_random(&r, (size_t)L, -sa, sa) : NULL;
    f->bc = bias ? test_random(&r, (size_t)O, -sc, sc) : NULL;
    f->q = test_random(&r, (size_t)(B * Dq), -1, 1);
    f->k = test_random(&r, (size_t)(B * Dk), -1, 1);
    f->v = test_random(&r, (size_t)(B * L * Dv), -1, 1);
    f->w = (mha_concat_weights){f->wa, f->ba, f->wc, f->bc};
    mha_status st = mha_concat_model_create(&f->cfg, &f->w, &f->model);
    require(st == MHA_OK, "mha_concat_model_create: %s", mha_status_message(st));
}

static void cat_free(cat_fix *f)
{
    mha_concat_model_destroy(f->model);
    float *all[] = {f->wa, f->ba, f->wc, f->bc, f->q, f->k, f->v};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

static mha_status cat_run(const cat_fix *f, const mha_concat_args *a)
{
    size_t bytes = 0;
    mha_status st = mha_concat_workspace_size(f->model, a->batch, a->num_threads, &bytes);
    require(st == MHA_OK, "mha_concat_workspace_size: %s", mha_status_message(st));
    void *ws = xmalloc(bytes);
    st = mha_concat_forward(f->model, a, ws, bytes);
    free(ws);
    return st;
}

/* {B, Dq, Dk, Dv, L, O, bias}: the tutorial's sizes (32, 32, 64, 32, 64), tails. */
static const int64_t cat_shapes[][7] = {
    {1, 32, 32, 64, 32, 64, 1}, {1, 1, 1, 1, 1, 1, 0},     {5, 7, 9, 13, 17, 3, 1},
    {3, 64, 16, 40, 100, 33, 0}, {17, 10, 10, 10, 10, 10, 1},
};
#define N_CAT_SHAPES ((int)(sizeof cat_shapes / sizeof cat_shapes[0]))

START_TEST(test_concat_oracle)
{
    const int64_t *s = cat_shapes[_i];
    cat_fix f;
    cat_init(&f, s[0], s[1], s[2], s[3], s[4], s[5], (int)s[6], 40 + (uint64_t)_i);
    const size_t no = (size_t)(f.B * f.O), nw = (size_t)(f.B * f.L);
    float *out = xmalloc(no * sizeof *out), *ref = xmalloc(no * sizeof *ref);
    float *w = xmalloc(nw * sizeof *w), *wref = xmalloc(nw * sizeof *wref);
    mha_concat_args a = {.batch = f.B, .query = f.q, .key = f.k, .value = f.v, .out = out,
                         .weights = w, .num_threads = 2};
    ck_assert_int_eq(cat_run(&f, &a), MHA_OK);
    a.out = ref;
    a.weights = wref;
    ck_assert_int_eq(mha_reference_concat(&f.cfg, &f.w, &a), MHA_OK);
    double top = 1e-6;
    for (size_t i = 0; i < no; i++) /* no fmax: it crashes aarch64 gcc 12's vectorizer */
        if (fabs((double)ref[i]) > top)
            top = fabs((double)ref[i]);
    const double e_out = max_abs_diff(out, ref, no) / top, e_w = max_abs_diff(w, wref, nw);
    ck_assert_msg(e_out <= 2e-5, "%s: out error %.3g of max |out|", isa_now(), e_out);
    ck_assert_msg(e_w <= 1e-6, "%s: weights error %.3g", isa_now(), e_w);
    /* Without the weights output: the same out, bitwise. */
    float *out2 = xmalloc(no * sizeof *out2);
    a.out = out2;
    a.weights = NULL;
    a.num_threads = 1;
    ck_assert_int_eq(cat_run(&f, &a), MHA_OK);
    ck_assert(memcmp(out, out2, no * sizeof *out) == 0);
    free(out2);
    free(out);
    free(ref);
    free(w);
    free(wref);
    cat_free(&f);
}
END_TEST

static void expect_cat_error(const cat_fix *f, const mha_concat_args *a, mha_status want,
                             const char *what)
{
    size_t bytes = 0;
    require(mha_concat_workspace_size(f->model, f->B, 1, &bytes) == MHA_OK, "size query");
    void *ws = xmalloc(bytes);
    mha_status st = mha_concat_forward(f->model, a, ws, bytes);
    require_statuses(what, st, mha_reference_concat(&f->cfg, &f->w, a), want);
    free(ws);
}

START_TEST(test_concat_bad_inputs)
{
    cat_fix f;
    cat_init(&f, 3, 4, 5, 6, 7, 8, 1, 9);
    const size_t no = (size_t)(f.B * f.O), nw = (size_t)(f.B * f.L);
    float *out = sentinel_floats(no), *w = sentinel_floats(nw);
    const mha_concat_args good = {.batch = f.B, .query = f.q, .key = f.k, .value = f.v,
                                  .out = out, .weights = w, .num_threads = 1};
    mha_concat_args a;
#define BAD(mutation, status) BAD_CALL(expect_cat_error, mutation, status)
    BAD(a.query = NULL, MHA_ERR_NULL_POINTER);
    BAD(a.key = NULL, MHA_ERR_NULL_POINTER);
    BAD(a.value = NULL, MHA_ERR_NULL_POINTER);
    BAD(a.out = NULL, MHA_ERR_NULL_POINTER);
    BAD(a.batch = 0, MHA_ERR_BAD_SIZE);
    BAD(a.batch = INT64_MAX / 3, MHA_ERR_OVERFLOW);
    BAD(a.num_threads = -2, MHA_ERR_THREADS);
    BAD(a.num_threads = 1000, MHA_ERR_THREADS);
    BAD(a.out = (float *)f.v + 1, MHA_ERR_ALIAS);
    BAD(a.weights = (float *)f.q, MHA_ERR_ALIAS);
    BAD(a.weights = out + 2, MHA_ERR_ALIAS);
#undef BAD
    size_t bytes;
    ck_assert_int_eq(mha_concat_workspace_size(f.model, f.B, 1, &bytes), MHA_OK);
    void *ws = xmalloc(bytes);
    ck_assert_int_eq(mha_concat_forward(f.model, &good, ws, bytes - 1), MHA_ERR_WORKSPACE);
    ck_assert_int_eq(mha_concat_forward(f.model, &good, NULL, bytes), MHA_ERR_WORKSPACE);
    ck_assert_int_eq(mha_concat_forward(NULL, &good, ws, bytes), MHA_ERR_NULL_POINTER);
    ck_assert(is_sentinel(out, no * sizeof *out));
    ck_assert(is_sentinel(w, nw * sizeof *w));
    ck_assert_int_eq(mha_concat_workspace_size(f.model, -1, 1, &bytes), MHA_ERR_BAD_SIZE);
    ck_assert_int_eq(mha_concat_workspace_size(f.model, 1, 300, &bytes), MHA_ERR_THREADS);
    mha_concat_model *m = NULL;
    mha_concat_config c = f.cfg;
    c.max_len = 0;
    ck_assert_int_eq(mha_concat_model_create(&c, &f.w, &m), MHA_ERR_BAD_SIZE);
    c = f.cfg;
    c.out_dim = -1;
    ck_assert_int_eq(mha_concat_model_create(&c, &f.w, &m), MHA_ERR_BAD_SIZE);
    mha_concat_weights w2 = f.w;
    w2.combine_weight = NULL;
    ck_assert_int_eq(mha_concat_model_create(&f.cfg, &w2, &m), MHA_ERR_WEIGHTS);
    ck_assert_ptr_null(m);
    /* Defaults: key, value and output widths 0 = Dq. */
    c = (mha_concat_config){.query_dim = 4, .max_len = 7};
    cat_fix g;
    cat_init(&g, 2, 4, 4, 4, 7, 4, 0, 2);
    ck_assert_int_eq(mha_concat_model_create(&c, &g.w, &m), MHA_OK);
    mha_concat_model_destroy(m);
    cat_free(&g);
    free(ws);
    free(out);
    free(w);
    cat_free(&f);
}
END_TEST

START_TEST(test_concat_threads_bitwise)
{
    cat_fix f;
    cat_init(&f, 37, 24, 20, 30, 50, 28, 1, 5);
    const size_t no = (size_t)(f.B * f.O), nw = (size_t)(f.B * f.L);
    float *o[2] = {xmalloc(no * 4), xmalloc(no * 4)}, *w[2] = {xmalloc(nw * 4), xmalloc(nw * 4)};
    for (int t = 0; t < 2; t++) {
        mha_concat_args a = {.batch = f.B, .query = f.q, .key = f.k, .value = f.v, .out = o[t],
                             .weights = w[t], .num_threads = 1 + 2 * t};
        ck_assert_int_eq(cat_run(&f, &a), MHA_OK);
    }
    ck_assert(memcmp(o[0], o[1], no * 4) == 0);
    ck_assert(memcmp(w[0], w[1], nw * 4) == 0);
    for (int t = 0; t < 2; t++) {
        free(o[t]);
        free(w[t]);
    }
    cat_free(&f);
}
END_TEST

Suite *suite_additive(void)
{
    Suite *s = suite_create("additive");
    TCase *tc = tcase_create("additive");
    tcase_add_loop_test(tc, test_additive_oracle, 0, N_ADD_SHAPES);
    tcase_add_test(tc, test_additive_threads_bitwise);
    tcase_add_test(tc, test_additive_bias_sum);
    tcase_add_test(tc, test_additive_workspace_bound);
    tcase_add_test(tc, test_additive_bad_inputs);
    suite_add_tcase(s, tc);
    TCase *tc2 = tcase_create("concat");
    tcase_add_loop_test(tc2, test_concat_oracle, 0, N_CAT_SHAPES);
    tcase_add_test(tc2, test_concat_threads_bitwise);
    tcase_add_test(tc2, test_concat_bad_inputs);
    suite_add_tcase(s, tc2);
    return s;
}
