/*
 * Masks: the fast paths (mha_attention, mha_forward) against
 * the float64 oracle (mha_reference_attention, mha_reference_forward), plus checks
 * that do not trust the oracle's reading of the semantics (a causal mask equals the
 * boolean mask the test builds from the formula, fully masked rows are exactly 0,
 * GQA equals MHA on replicated K/V heads, ...).
 *
 * Tolerance (relative to max |reference|, see test_rel_err). Inputs are uniform
 * in [-1, 1], scale 1/sqrt(d_k), so scores are O(1). In float32 (unit roundoff
 * u = 6e-8) a d-term dot product has a worst-case error of d*u*sum|q_i k_i|, and
 * typically sqrt(d)*u; exp in the kernels is within 2 ulp; the softmax weights are
 * normalized once, and the output is a convex combination of V rows accumulated
 * over Lk terms (error ~ log2(Lk)*u with blocked sums, Lk*u worst case). For
 * d <= 64, Lk <= 300 the realistic error is a few 1e-7 and the worst case stays
 * below 2e-5 of max |V|, hence TOL = 2e-5; for d_k up to 256 the worst-case dot
 * product bound grows with d, hence TOL_BIG = 5e-5. The forward pass adds three
 * projections (E-term dot products, E <= 64) before and one after: same budget.
 * Large scores (inputs scaled by 30) get a tolerance computed from the scores'
 * magnitude, see test_softmax_stability (test_layouts.c).
 *
 * No OpenMP and no mha_forward / mha_attention outside START_TEST bodies: Check
 * forks each test and libgomp is not fork-safe.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_check.h"

/* -------------------------------------------------------------- mask tensors */

/* Mask tensor of shape [B|1, H|1, Lq|1, Lk] (full where the flag is set), rows
 * padded by `pad` elements. The storage is returned through *store. */
static mha_mask_tensor mask_layout(int64_t B, int64_t H, int64_t Lq, int64_t Lk, int fb, int fh, int fq,
                                   int64_t pad, size_t *count)
{
    mha_mask_tensor t = {NULL, 0, 0, 0};
    int64_t row = Lk + pad;
    int64_t head = fq ? Lq * row : row;
    int64_t batch = fh ? H * head : head;
    t.stride_q = fq ? row : 0;
    t.stride_h = fh ? head : 0;
    t.stride_b = fb ? batch : 0;
    *count = (size_t)(fb ? B * batch : batch);
    return t;
}

/* Boolean mask: each element 0 with probability p0, else one of 1, 7, 255, 2. */
static mha_mask_tensor bool_mask(test_rng *r, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int fb, int fh,
                                 int fq, int64_t pad, double p0, uint8_t **store)
{
    size_t n;
    mha_mask_tensor t = mask_layout(B, H, Lq, Lk, fb, fh, fq, pad, &n);
    static const uint8_t yes[4] = {1, 7, 255, 2};
    uint8_t *u = xmalloc(n);
    for (size_t i = 0; i < n; i++) {
        float x = test_rng_uniform(r, 0, 1);
        u[i] = x < p0 ? 0 : yes[(int)(test_rng_uniform(r, 0, 4)) & 3];
    }
    t.data = u;
    *store = u;
    return t;
}

/* Additive mask: uniform in [-3, 3], -inf with probability pinf. */
static mha_mask_tensor float_mask(test_rng *r, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int fb, int fh,
                                  int fq, int64_t pad, double pinf, float **store)
{
    size_t n;
    mha_mask_tensor t = mask_layout(B, H, Lq, Lk, fb, fh, fq, pad, &n);
    float *f = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float x = test_rng_uniform(r, 0, 1);
        f[i] = x < pinf ? -INFINITY : test_rng_uniform(r, -3, 3);
    }
    t.data = f;
    *store = f;
    return t;
}

/* Row (b, h, i) of a mask tensor. */
static void *mask_row(const mha_mask_tensor *t, size_t elem_size, int64_t b, int64_t h, int64_t i)
{
    return (char *)(uintptr_t)t->data + (size_t)(b * t->stride_b + h * t->stride_h + i * t->stride_q) * elem_size;
}

/* Dense [B, 1, Lq, Lk] boolean mask equivalent to the causal part and key lengths
 * of m, built from the documented formulas. */
static uint8_t *discrete_as_bool(const mha_mask *m, int64_t B, int64_t Lq, int64_t Lk)
{
    uint8_t *u = xmalloc((size_t)(B * Lq * Lk));
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < Lq; i++)
            for (int64_t j = 0; j < Lk; j++) {
                int ok = 1;
                if (m->key_lengths && j >= m->key_lengths[b])
                    ok = 0;
                if (m->causal == MHA_CAUSAL_BOTTOM_RIGHT && j > i + (Lk - Lq))
                    ok = 0;
                /* j > i + offset, written without overflow for any offset */
                if (m->causal == MHA_CAUSAL_EXPLICIT && j - i > m->causal_offset)
                    ok = 0;
                u[(b * Lq + i) * Lk + j] = (uint8_t)ok;
            }
    return u;
}

/* ---------------------------------------------------------------- causal */

/* Fast output with the causal/key-length part of mask m, versus the same
 * constraint given as a boolean mask built by the test: both near the oracle,
 * and near each other. */
static void check_discrete_mask(prob *p, const mha_mask *m, const char *what)
{
    mha_attention_args a = p->a;
    const int64_t B = a.batch, H = a.num_heads, Lq = a.len_q, Lk = a.len_k, dv = a.head_dim_v;
    char buf[200];
    a.mask = *m;
    float *got = check_attention(&a, TOL, what, NULL);
    uint8_t *u = discrete_as_bool(m, B, Lq, Lk);
    mha_attention_args e = p->a;
    memset(&e.mask, 0, sizeof e.mask);
    e.mask.bool_mask = (mha_mask_tensor){u, Lq * Lk, 0, Lk};
    snprintf(buf, sizeof buf, "%s as a bool mask", what);
    float *eq = check_attention(&e, TOL, buf, NULL);
    snprintf(buf, sizeof buf, "%s vs the same mask as bool", what);
    compare(got, eq, B, H, Lq, dv, 1e-6, TOL, buf);
    /* Rows that see no key: exactly zero. */
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < Lq; i++) {
            int any = 0;
            for (int64_t j = 0; j < Lk; j++)
                any |= u[(b * Lq + i) * Lk + j];
            for (int64_t h = 0; h < H && !any; h++)
                require(row_is_zero(got + ((b * H + h) * Lq + i) * dv, dv),
                              "[%s] %s: row b=%lld h=%lld i=%lld sees no key but is not 0", isa_now(), what,
                              (long long)b, (long long)h, (long long)i);
        }
    free(u);
    free(got);
    free(eq);
}

START_TEST(test_causal_bottom_right)
{
    const int64_t shapes[][2] = {{3, 7}, {5, 5}, {9, 4}, {1, 1}, {1, 6}, {6, 1}, {70, 40}, {40, 150}, {130, 130}, {40, 1100}};
    /* {40, 1100}: several key blocks per row (blocks hold up to 512 keys). */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t Lq = shapes[s][0], Lk = shapes[s][1];
        prob p;
        prob_init(&p, 100 + s, 2, 2, 1, Lq, Lk, 8, 5, L_DENSE, L_DENSE, L_DENSE);
        mha_mask m = {0};
        m.causal = MHA_CAUSAL_BOTTOM_RIGHT;
        char what[96];
        snprintf(what, sizeof what, "causal bottom-right Lq=%lld Lk=%lld", (long long)Lq, (long long)Lk);
        check_discrete_mask(&p, &m, what);

        /* Explicit offset Lk - Lq is the same mask. */
        mha_attention_args a = p.a;
        a.mask = m;
        float *br = check_attention(&a, TOL, what, NULL);
        a.mask.causal = MHA_CAUSAL_EXPLICIT;
        a.mask.causal_offset = Lk - Lq;
        float *ex = check_attention(&a, TOL, "explicit offset Lk-Lq", NULL);
        compare(ex, br, 2, 2, Lq, 5, 1e-6, TOL, "explicit offset Lk-Lq vs bottom-right");
        /* When Lq > Lk row Lq-Lk sees exactly key 0: its output is V[0]. */
        if (Lq >= Lk)
            for (int64_t b = 0; b < 2; b++)
                for (int64_t h = 0; h < 2; h++)
                    compare(br + ((b * 2 + h) * Lq + (Lq - Lk)) * 5, p.v + b * p.a.v_stride[0], 1, 1, 1, 5, 1e-6,
                            1e-6, "the first row that sees one key equals V[0]");
        free(br);
        free(ex);
        prob_free(&p);
    }
}
END_TEST

START_TEST(test_causal_explicit)
{
    const int64_t Lq = 6, Lk = 9;
    const int64_t offsets[] = {-9, -8, -3, -1, 0, 1, 2, 8, 20, INT64_MAX / 2, INT64_MIN / 2};
    for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
        prob p;
        prob_init(&p, 200 + o, 2, 3, 3, Lq, Lk, 7, 6, L_DENSE, L_DENSE, L_DENSE);
        mha_mask m = {0};
        m.causal = MHA_CAUSAL_EXPLICIT;
        m.causal_offset = offsets[o];
        char what[96];
        snprintf(what, sizeof what, "causal explicit offset %lld", (long long)offsets[o]);
        check_discrete_mask(&p, &m, what);
        prob_free(&p);
    }
    /* Across key blocks: a long key range. */
    prob p;
    prob_init(&p, 250, 1, 2, 1, 70, 300, 8, 8, L_DENSE, L_DENSE, L_DENSE);
    const int64_t offs[] = {-50, 0, 100, 200, 260};
    for (int o = 0; o < 5; o++) {
        mha_mask m = {0};
        m.causal = MHA_CAUSAL_EXPLICIT;
        m.causal_offset = offs[o];
        char what[96];
        snprintf(what, sizeof what, "causal explicit offset %lld, Lq=70 Lk=300", (long long)offs[o]);
        check_discrete_mask(&p, &m, what);
    }
    prob_free(&p);
}
END_TEST

/* Any int64 offset is valid ("offset may be negative"): INT64_MAX sees every key
 * (same as no causal mask), INT64_MIN none (zeros). i + offset must not overflow. */
START_TEST(test_causal_offset_extremes)
{
    prob p;
    prob_init(&p, 260, 2, 2, 2, 5, 7, 8, 8, L_DENSE, L_DENSE, L_DENSE);
    float *none = check_attention(&p.a, TOL, "no mask", NULL);
    mha_attention_args a = p.a;
    a.mask.causal = MHA_CAUSAL_EXPLICIT;
    a.mask.causal_offset = INT64_MAX;
    float *ref = NULL;
    float *all = check_attention(&a, TOL, "causal offset INT64_MAX", &ref);
    compare(all, none, 2, 2, 5, 8, 1e-6, TOL, "causal offset INT64_MAX vs no mask (fast)");
    compare(ref, none, 2, 2, 5, 8, 1e-6, TOL, "causal offset INT64_MAX vs no mask (reference)");
    free(all);
    free(ref);
    a.mask.causal_offset = INT64_MIN;
    float *zero = check_attention(&a, TOL, "causal offset INT64_MIN", NULL);
    require(row_is_zero(zero, 2 * 2 * 5 * 8), "[%s] causal offset INT64_MIN: output not 0", isa_now());
    free(zero);
    free(none);
    prob_free(&p);
}
END_TEST

/* ----------------------------------------------------------- key lengths */

START_TEST(test_key_lengths)
{
    {
        prob p;
        prob_init(&p, 300, 4, 2, 2, 5, 9, 8, 8, L_DENSE, L_DENSE, L_DENSE);
        const int32_t kl[4] = {9, 0, 1, 4};
        mha_mask m = {0};
        m.key_lengths = kl;
        check_discrete_mask(&p, &m, "key_lengths {9, 0, 1, 4}");
        /* Batch 2 sees only key 0: its rows are V[0] of their kv head. */
        mha_attention_args a = p.a;
        a.mask = m;
        float *o = check_attention(&a, TOL, "key_lengths", NULL);
        for (int64_t h = 0; h < 2; h++)
            for (int64_t i = 0; i < 5; i++)
                compare(o + ((2 * 2 + h) * 5 + i) * 8, elem(p.v, p.a.v_stride, 2, h, 0), 1, 1, 1, 8, 1e-6, 1e-6,
                        "key_lengths 1: row equals V[0]");
        require(row_is_zero(o + 1 * 2 * 5 * 8, 2 * 5 * 8), "key_lengths 0: batch 1 not zero");
        free(o);
        /* With causal too. */
        m.causal = MHA_CAUSAL_BOTTOM_RIGHT;
        check_discrete_mask(&p, &m, "key_lengths + causal");
        prob_free(&p);
    }
    {   /* Several key blocks; lengths at block edges. */
        prob p;
        prob_init(&p, 301, 5, 2, 1, 9, 300, 16, 8, L_DENSE, L_DENSE, L_DENSE);
        const int32_t kl[5] = {300, 129, 128, 0, 257};
        mha_mask m = {0};
        m.key_lengths = kl;
        check_discrete_mask(&p, &m, "key_lengths {300, 129, 128, 0, 257}");
        prob_free(&p);
    }
}
END_TEST

/* ---------------------------------------------------------- tensor masks */

static const struct {
    int fb, fh, fq, pad;
    const char *name;
} mask_shapes[] = {
    {1, 1, 1, 0, "[B,H,Lq,Lk]"}, {0, 0, 1, 0, "[1,1,Lq,Lk]"}, {1, 0, 1, 0, "[B,1,Lq,Lk]"},
    {1, 0, 0, 0, "[B,1,1,Lk]"},  {0, 1, 0, 0, "[1,H,1,Lk]"},  {1, 1, 1, 5, "[B,H,Lq,Lk] rows padded"},
    {0, 0, 0, 0, "[1,1,1,Lk]"},
};
#define N_MASK_SHAPES (sizeof mask_shapes / sizeof mask_shapes[0])

START_TEST(test_bool_masks)
{
    const int64_t B = 2, H = 3, Lq = 7, Lk = 11, d = 8;
    for (size_t s = 0; s < N_MASK_SHAPES; s++) {
        prob p;
        prob_init(&p, 400 + s, B, H, 0, Lq, Lk, d, d, L_DENSE, L_DENSE, L_DENSE);
        test_rng r = test_rng_seed(410 + s);
        uint8_t *u;
        mha_attention_args a = p.a;
        a.mask.bool_mask = bool_mask(&r, B, H, Lq, Lk, mask_shapes[s].fb, mask_shapes[s].fh, mask_shapes[s].fq,
                                     mask_shapes[s].pad, 0.35, &u);
        char what[96];
        snprintf(what, sizeof what, "bool mask %s", mask_shapes[s].name);
        float *o = check_attention(&a, TOL, what, NULL);
        /* Nonzero means attend whatever its value: the same mask written with 1s
         * gives the same bits. */
        size_t n;
        mask_layout(B, H, Lq, Lk, mask_shapes[s].fb, mask_shapes[s].fh, mask_shapes[s].fq, mask_shapes[s].pad, &n);
        uint8_t *ones = xmalloc(n);
        for (size_t i = 0; i < n; i++)
            ones[i] = u[i] != 0;
        a.mask.bool_mask.data = ones;
        float *o1 = check_attention(&a, TOL, what, NULL);
        require(memcmp(o, o1, (size_t)(B * H * Lq * d) * sizeof(float)) == 0,
                      "[%s] %s: values 7/255/2 do not act as 1", isa_now(), what);
        /* Every row fully masked where its mask row is all 0. */
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < Lq; i++) {
                    const uint8_t *row = mask_row(&a.mask.bool_mask, 1, b, h, i);
                    int any = 0;
                    for (int64_t j = 0; j < Lk; j++)
                        any |= row[j];
                    if (!any)
                        require(row_is_zero(o + ((b * H + h) * Lq + i) * d, d), "%s: masked row not 0", what);
                }
        free(ones);
        free(o);
        free(o1);
        free(u);
        prob_free(&p);
    }
    /* An all-ones mask is no mask. */
    prob p;
    prob_init(&p, 420, B, H, 0, Lq, Lk, d, d, L_DENSE, L_DENSE, L_DENSE);
    float *none = check_attention(&p.a, TOL, "no mask", NULL);
    uint8_t ones[11];
    memset(ones, 1, sizeof ones);
    mha_attention_args a = p.a;
    a.mask.bool_mask = (mha_mask_tensor){ones, 0, 0, 0};
    float *o = check_attention(&a, TOL, "all-ones bool mask", NULL);
    compare(o, none, B, H, Lq, d, 1e-6, TOL, "all-ones bool mask vs none");
    free(o);
    free(none);
    prob_free(&p);
}
END_TEST

START_TEST(test_float_masks)
{
    const int64_t B = 2, H = 3, Lq = 7, Lk = 11, d = 8;
    for (size_t s = 0; s < N_MASK_SHAPES; s++) {
        prob p;
        prob_init(&p, 500 + s, B, H, 0, Lq, Lk, d, d, L_DENSE, L_DENSE, L_DENSE);
        test_rng r = test_rng_seed(510 + s);
        float *f;
        mha_attention_args a = p.a;
        a.mask.float_mask = float_mask(&r, B, H, Lq, Lk, mask_shapes[s].fb, mask_shapes[s].fh, mask_shapes[s].fq,
                                       mask_shapes[s].pad, 0.25, &f);
        /* One mask row entirely -inf: last batch, last head, row 3 (or their
         * broadcast row). */
        float *row = mask_row(&a.mask.float_mask, sizeof(float), B - 1, H - 1, 3);
        for (int64_t j = 0; j < Lk; j++)
            row[j] = -INFINITY;
        char what[96];
        snprintf(what, sizeof what, "float mask %s with -inf", mask_shapes[s].name);
        float *o = check_attention(&a, TOL, what, NULL);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < Lq; i++) {
                    const float *mr = mask_row(&a.mask.float_mask, sizeof(float), b, h, i);
                    int any = 0;
                    for (int64_t j = 0; j < Lk; j++)
                        any |= mr[j] != -INFINITY;
                    if (!any)
                        require(row_is_zero(o + ((b * H + h) * Lq + i) * d, d),
                                      "[%s] %s: all -inf row b=%lld h=%lld i=%lld not 0", isa_now(), what,
                                      (long long)b, (long long)h, (long long)i);
                }
        free(o);
        free(f);
        prob_free(&p);
    }
    /* A zero float mask is no mask; a constant one too (softmax is shift invariant). */
    prob p;
    prob_init(&p, 520, B, H, 0, Lq, Lk, d, d, L_DENSE, L_DENSE, L_DENSE);
    float *none = check_attention(&p.a, TOL, "no mask", NULL);
    float zeros[11] = {0}, consts[11];
    for (int j = 0; j < 11; j++)
        consts[j] = 5.0f;
    mha_attention_args a = p.a;
    a.mask.float_mask = (mha_mask_tensor){zeros, 0, 0, 0};
    float *o = check_attention(&a, TOL, "zero float mask", NULL);
    compare(o, none, B, H, Lq, d, 1e-6, TOL, "zero float mask vs none");
    free(o);
    a.mask.float_mask.data = consts;
    o = check_attention(&a, TOL, "constant float mask", NULL);
    compare(o, none, B, H, Lq, d, 1e-6, TOL, "constant float mask vs none");
    free(o);
    /* -inf in the float mask is the same as 0 in a bool mask. */
    float fm[7 * 11];
    uint8_t bm[7 * 11];
    test_rng r = test_rng_seed(521);
    for (int i = 0; i < 7 * 11; i++) {
        int hide = test_rng_uniform(&r, 0, 1) < 0.4f;
        fm[i] = hide ? -INFINITY : 0.0f;
        bm[i] = (uint8_t)!hide;
    }
    a.mask.float_mask = (mha_mask_tensor){fm, 0, 0, 11};
    o = check_attention(&a, TOL, "float mask of 0/-inf", NULL);
    a.mask.float_mask.data = NULL;
    a.mask.bool_mask = (mha_mask_tensor){bm, 0, 0, 11};
    float *ob = check_attention(&a, TOL, "the same as a bool mask", NULL);
    compare(o, ob, B, H, Lq, d, 1e-6, TOL, "float -inf vs bool 0");
    free(o);
    free(ob);
    free(none);
    prob_free(&p);
}
END_TEST

/* Every kind at once, attention-only and through the forward pass. */
static void combined_case(uint64_t seed, int64_t B, int64_t H, int64_t G, int64_t Lq, int64_t Lk, int64_t d)
{
    prob p;
    prob_init(&p, seed, B, H, G, Lq, Lk, d, d, L_BLHD, L_PADDED, L_DENSE);
    test_rng r = test_rng_seed(seed + 1);
    uint8_t *u;
    float *f;
    int32_t *kl = xmalloc((size_t)B * sizeof(int32_t));
    for (int64_t b = 0; b < B; b++)
        kl[b] = (int32_t)(b == 0 ? Lk : b == 1 ? 0 : (Lk * (b + 1)) / (B + 1));
    mha_attention_args a = p.a;
    a.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
    a.mask.key_lengths = kl;
    a.mask.bool_mask = bool_mask(&r, B, H, Lq, Lk, 1, 0, 1, 3, 0.2, &u);
    a.mask.float_mask = float_mask(&r, B, H, Lq, Lk, 0, 1, 1, 2, 0.1, &f);
    char what[96];
    snprintf(what, sizeof what, "all four masks");
    float *o = check_attention(&a, TOL, what, NULL);
    require(row_is_zero(o + 1 * H * Lq * d, H * Lq * d), "all masks: key_lengths 0 batch not 0");
    free(o);
    a.mask.causal = MHA_CAUSAL_EXPLICIT;
    a.mask.causal_offset = -1;
    a.num_threads = 2;
    o = check_attention(&a, TOL, "all four masks, explicit offset -1, 2 threads", NULL);
    free(o);
    free(u);
    free(f);
    free(kl);
    prob_free(&p);
}

START_TEST(test_all_masks_combined)
{
    combined_case(600, 3, 2, 1, 9, 13, 8);
    combined_case(610, 3, 4, 2, 70, test_quick() ? 140 : 200, 16);
}
END_TEST

/* ---------------------------------------------------- fully masked rows */

START_TEST(test_fully_masked_rows)
{
    /* Attention: a row that sees nothing is exactly 0 (PyTorch gives NaN). */
    const int64_t B = 3, H = 2, Lq = 4, Lk = 5, d = 6;
    prob p;
    prob_init(&p, 800, B, H, 0, Lq, Lk, d, d, L_DENSE, L_DENSE, L_DENSE);
    uint8_t bm[3 * 4 * 5];
    float fm[3 * 4 * 5];
    memset(bm, 1, sizeof bm);
    memset(fm, 0, sizeof fm);
    memset(bm + (1 * Lq + 2) * Lk, 0, (size_t)Lk); /* batch 1, row 2: bool mask all 0 */
    for (int64_t j = 0; j < Lk; j++)
        fm[(2 * Lq + 1) * Lk + j] = -INFINITY;      /* batch 2, row 1: float mask all -inf */
    const int32_t kl[3] = {0, 5, 5};                 /* batch 0: no key at all */
    mha_mask m = {0};
    m.key_lengths = kl;
    m.bool_mask = (mha_mask_tensor){bm, Lq * Lk, 0, Lk};
    m.float_mask = (mha_mask_tensor){fm, Lq * Lk, 0, Lk};
    mha_attention_args a = p.a;
    a.mask = m;
    float *o = check_attention(&a, TOL, "fully masked rows", NULL);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++) {
                int masked = b == 0 || (b == 1 && i == 2) || (b == 2 && i == 1);
                const float *row = o + ((b * H + h) * Lq + i) * d;
                if (masked)
                    require(row_is_zero(row, d), "[%s] fully masked row b=%lld h=%lld i=%lld: %g (not 0)",
                                  isa_now(), (long long)b, (long long)h, (long long)i, (double)row[0]);
                else
                    for (int64_t x = 0; x < d; x++)
                        require(isfinite(row[x]) && row[x] != 0.0f, "row b=%lld i=%lld not finite/nonzero",
                                      (long long)b, (long long)i);
            }
    free(o);
    /* Causal with Lq > Lk: the first Lq - Lk rows. */
    a = p.a;
    a.len_k = 2;
    a.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
    o = check_attention(&a, TOL, "causal Lq > Lk", NULL);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < 2; i++)
                require(row_is_zero(o + ((b * H + h) * Lq + i) * d, d), "causal Lq>Lk row %lld not 0",
                              (long long)i);
    free(o);
    prob_free(&p);

    /* Forward with output projection: concat = 0 for the row, so out = 0 W_o^T + b_o
     * = b_o exactly; without the projection: 0. Both weight layouts. */
    for (int proj = 0; proj < 2; proj++) {
        mha_config cfg = mha_config_default(12, 2);
        cfg.has_out_proj = proj;
        cfg.out_dim = proj ? 10 : 0;
        fixture f;
        fixture_init(&f, &cfg, 0, 810 + proj);
        fixture_create(&f);
        finputs in;
        finputs_init(&in, &f, 820, B, Lq, Lk, 0, 1.0f);
        in.a.mask.key_lengths = kl;
        /* Forward masks have H heads: [B, 1, Lq, Lk] broadcast over heads. */
        in.a.mask.bool_mask = m.bool_mask;
        in.a.mask.float_mask = m.float_mask;
        float *ref;
        float *out = check_forward(&f, &in.a, TOL, proj ? "fully masked rows, out proj" : "fully masked rows",
                                   &ref);
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < Lq; i++) {
                int masked = b == 0 || (b == 1 && i == 2) || (b == 2 && i == 1);
                if (!masked)
                    continue;
                const float *row = out + (b * Lq + i) * f.O, *rrow = ref + (b * Lq + i) * f.O;
                for (int64_t x = 0; x < f.O; x++) {
                    float want = proj ? f.bo[x] : 0.0f;
                    require(row[x] == want, "[%s] forward%s fully masked row b=%lld i=%lld [%lld] = %.9g, want %.9g",
                                  isa_now(), proj ? " (out proj)" : "", (long long)b, (long long)i, (long long)x,
                                  (double)row[x], (double)want);
                    require(rrow[x] == want, "reference forward fully masked row: %.9g, want %.9g",
                                  (double)rrow[x], (double)want);
                }
            }
        free(out);
        free(ref);
        finputs_free(&in);
        fixture_free(&f);
    }
}
END_TEST

/* ------------------------------------------------------------------- NaN */

/* Failed on avx2/avx512 before e845ceb (SIMD rowmax dropped NaN, so an all-NaN
 * score row looked fully masked and gave 0). */
START_TEST(test_nan_propagates)
{
    const int64_t B = 2, H = 3, Lq = 5, Lk = 7, d = 8;
    prob p;
    prob_init(&p, 900, B, H, 0, Lq, Lk, d, d, L_DENSE, L_DENSE, L_DENSE);
    *elem(p.q, p.a.q_stride, 1, 2, 3) = NAN; /* q[b=1, h=2, i=3, 0] */
    float *o = check_attention(&p.a, TOL, "NaN in q", NULL);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++)
                for (int64_t x = 0; x < d; x++) {
                    float v = o[((b * H + h) * Lq + i) * d + x];
                    if (b == 1 && h == 2 && i == 3)
                        require(isnan(v), "[%s] NaN in q row: out[%lld] = %g, not NaN", isa_now(), (long long)x,
                                      (double)v);
                    else
                        require(isfinite(v), "[%s] NaN leaked to row b=%lld h=%lld i=%lld", isa_now(),
                                      (long long)b, (long long)h, (long long)i);
                }
    free(o);
    /* In a causal row too, and across key blocks. */
    prob_free(&p);
    prob_init(&p, 901, 1, 1, 0, 3, 300, d, d, L_DENSE, L_DENSE, L_DENSE);
    p.q[2 * d + 5] = NAN;
    mha_attention_args a = p.a;
    a.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
    o = check_attention(&a, TOL, "NaN in q, causal, 300 keys", NULL);
    for (int64_t x = 0; x < d; x++) {
        require(isnan(o[2 * d + x]), "[%s] NaN in q (causal, long) not propagated", isa_now());
        require(isfinite(o[x]) && isfinite(o[d + x]), "NaN leaked to other rows");
    }
    free(o);
    prob_free(&p);

    /* Forward, cross-attention: NaN in query row (b=1, i=2) reaches only that row. */
    mha_config cfg = mha_config_default(16, 4);
    for (int proj = 0; proj < 2; proj++) {
        cfg.has_out_proj = proj;
        fixture f;
        fixture_init(&f, &cfg, 0, 910);
        fixture_create(&f);
        finputs in;
        finputs_init(&in, &f, 911, 2, 4, 6, 0, 1.0f);
        in.x[(1 * 4 + 2) * 16 + 5] = NAN;
        float *out = check_forward(&f, &in.a, TOL, "NaN in query", NULL);
        for (int64_t r = 0; r < 8; r++)
            for (int64_t x = 0; x < f.O; x++) {
                float v = out[r * f.O + x];
                if (r == 1 * 4 + 2)
                    require(isnan(v), "[%s] forward: NaN in query row not propagated to out[%lld]", isa_now(),
                                  (long long)x);
                else
                    require(isfinite(v), "[%s] forward: NaN leaked to row %lld", isa_now(), (long long)r);
            }
        free(out);
        finputs_free(&in);
        fixture_free(&f);
    }
}
END_TEST


START_TEST(test_forward_configs)
{
    struct {
        int64_t E, H, G, kdim, vdim, dk, dv, out;
        int bias, proj, fused, self;
        int64_t B, Lq, Lk;
    } cases[] = {
        {32, 4, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 9, 9},     /* nn.MultiheadAttention(32, 4), self */
        {32, 4, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 2, 7, 13},    /* separate weights, cross */
        {32, 8, 2, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 11, 11},   /* GQA */
        {24, 6, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 3, 5, 37},    /* MQA */
        {20, 4, 2, 0, 0, 16, 24, 12, 1, 1, 0, 0, 2, 6, 10}, /* d_k != d_v, O != E */
        {16, 2, 0, 12, 7, 0, 0, 0, 1, 1, 0, 0, 2, 5, 8},    /* kdim, vdim != E */
        {16, 4, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 6, 6},     /* no bias */
        {16, 4, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 6, 9},     /* no out projection */
        {33, 3, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 37, 37},   /* odd widths, prime length */
        {7, 7, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1},      /* d = 1, lengths 1 */
        {64, 2, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 131, 131}, /* long self-attention */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mha_config cfg = mha_config_default(cases[c].E, cases[c].H);
        cfg.num_kv_heads = cases[c].G;
        cfg.kdim = cases[c].kdim;
        cfg.vdim = cases[c].vdim;
        cfg.head_dim_qk = cases[c].dk;
        cfg.head_dim_v = cases[c].dv;
        cfg.out_dim = cases[c].out;
        cfg.has_bias = cases[c].bias;
        cfg.has_out_proj = cases[c].proj;
        fixture f;
        fixture_init(&f, &cfg, cases[c].fused, 700 + c);
        fixture_create(&f);
        finputs in;
        finputs_init(&in, &f, 720 + c, cases[c].B, cases[c].Lq, cases[c].Lk, cases[c].self, 1.0f);
        char what[64];
        snprintf(what, sizeof what, "config %zu", c);
        float *o = check_forward(&f, &in.a, TOL, what, NULL);
        free(o);
        /* With masks (heads dimension H): causal + key lengths + bool + float. */
        int64_t B = cases[c].B, Lq = cases[c].Lq, Lk = cases[c].self ? Lq : cases[c].Lk;
        int32_t *kl = xmalloc((size_t)B * sizeof(int32_t));
        for (int64_t b = 0; b < B; b++)
            kl[b] = (int32_t)(Lk - b);
        test_rng r = test_rng_seed(740 + c);
        uint8_t *u;
        float *fm;
        in.a.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
        in.a.mask.key_lengths = kl;
        in.a.mask.bool_mask = bool_mask(&r, B, f.H, Lq, Lk, 1, 1, 1, 0, 0.2, &u);
        in.a.mask.float_mask = float_mask(&r, B, f.H, Lq, Lk, 0, 1, 0, 1, 0.1, &fm);
        in.a.num_threads = c % 4 == 0 ? 2 : 1;
        snprintf(what, sizeof what, "config %zu, all masks, %d threads", c, in.a.num_threads);
        o = check_forward(&f, &in.a, TOL, what, NULL);
        free(o);
        free(u);
        free(fm);
        free(kl);
        finputs_free(&in);
        fixture_free(&f);
    }
}
END_TEST

/* The PyTorch shapes mha.h maps onto mask strides: nn.MultiheadAttention's 3-D
 * attn_mask [B*H, Lq, Lk] (strides {H*Lq*Lk, Lq*Lk, Lk}: head h of batch b reads
 * slice b*H + h), checked against one single-head call per slice; and a key
 * padding mask [B, 1, 1, Lk] (strides {Lk, 0, 0}) against key_lengths cutting the
 * same tails. */
START_TEST(test_pytorch_mask_shapes)
{
    enum { B = 2, H = 3, LQ = 5, LK = 7, D = 4 };
    test_rng r = test_rng_seed(41);
    float *q = test_random(&r, B * H * LQ * D, -1, 1), *k = test_random(&r, B * H * LK * D, -1, 1),
          *v = test_random(&r, B * H * LK * D, -1, 1);
    static float out[B * H * LQ * D], one[LQ * D], ref[B * H * LQ * D];
    static uint8_t m3[B * H * LQ * LK], pad[B * LK];
    for (int i = 0; i < B * H * LQ * LK; i++)
        m3[i] = i % (LK + 1) != 0 && test_rng_uniform(&r, 0, 1) < 0.7f;
    mha_attention_args a = {
        .batch = B, .num_heads = H, .len_q = LQ, .len_k = LK, .head_dim_qk = D, .head_dim_v = D,
        .q = q, .q_stride = {H * LQ * D, LQ * D, D}, .k = k, .k_stride = {H * LK * D, LK * D, D},
        .v = v, .v_stride = {H * LK * D, LK * D, D}, .out = out, .out_stride = {H * LQ * D, LQ * D, D},
        .num_threads = 1,
    };
    a.mask.bool_mask = (mha_mask_tensor){m3, H * LQ * LK, LQ * LK, LK};
    static char ws[1 << 20];
    size_t bytes;
    ck_assert_int_eq(mha_attention_workspace_size(&a, &bytes), MHA_OK);
    require(bytes <= sizeof ws, "workspace %zu bytes", bytes);
    ck_assert_int_eq(mha_attention(&a, ws, sizeof ws), MHA_OK);
    for (int bh = 0; bh < B * H; bh++) {
        mha_attention_args s = a;
        s.batch = 1;
        s.num_heads = 1;
        s.q = q + bh * LQ * D;
        s.k = k + bh * LK * D;
        s.v = v + bh * LK * D;
        s.out = one;
        s.mask.bool_mask = (mha_mask_tensor){m3 + bh * LQ * LK, 0, 0, LK};
        ck_assert_int_eq(mha_attention(&s, ws, sizeof ws), MHA_OK);
        ck_assert_close(out + bh * LQ * D, one, LQ * D, 1e-5, "3-D attn_mask slice b*H + h");
    }
    const int32_t lens[B] = {4, 7};
    for (int b = 0; b < B; b++)
        for (int j = 0; j < LK; j++)
            pad[b * LK + j] = j < lens[b];
    a.mask.bool_mask = (mha_mask_tensor){pad, LK, 0, 0};
    ck_assert_int_eq(mha_attention(&a, ws, sizeof ws), MHA_OK);
    memcpy(ref, out, sizeof out);
    a.mask.bool_mask = (mha_mask_tensor){0};
    a.mask.key_lengths = lens;
    ck_assert_int_eq(mha_attention(&a, ws, sizeof ws), MHA_OK);
    ck_assert_close(out, ref, B * H * LQ * D, 1e-5, "key padding [B, 1, 1, Lk] against key_lengths");
    free(q);
    free(k);
    free(v);
}
END_TEST

Suite *suite_masks(void)
{
    Suite *s = suite_create("masks");
    TCase *tc = tcase_create("masks");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_causal_bottom_right);
    tcase_add_test(tc, test_causal_explicit);
    tcase_add_test(tc, test_causal_offset_extremes);
    tcase_add_test(tc, test_key_lengths);
    tcase_add_test(tc, test_bool_masks);
    tcase_add_test(tc, test_float_masks);
    tcase_add_test(tc, test_all_masks_combined);
    tcase_add_test(tc, test_fully_masked_rows);
    tcase_add_test(tc, test_nan_propagates);
    tcase_add_test(tc, test_forward_configs);
    tcase_add_test(tc, test_pytorch_mask_shapes);
    suite_add_tcase(s, tc);
    return s;
}
