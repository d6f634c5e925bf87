/*
 * Argument checks of every entry: each bad argument gets its specific status, and
 * on any status other than MHA_OK nothing the caller owns has been written
 * (outputs are filled with a sentinel pattern before the call and compared byte
 * for byte after it); the float64 oracle shares the checks, so it must return the
 * same status. No OpenMP and no mha_forward / mha_attention outside START_TEST
 * bodies: Check forks each test and libgomp is not fork-safe.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ------------------------------------------------------- model creation */

static void expect_create(const mha_config *c, const mha_weights *w, mha_status want, const char *what)
{
    mha_model *sentinel = (mha_model *)(uintptr_t)0x5A5A5A5A;
    mha_model *m = sentinel;
    mha_status st = mha_model_create(c, w, &m);
    require(st == want, "create %s: got %d (%s), expected %d (%s)", what, st,
                  mha_status_message(st), want, mha_status_message(want));
    if (st != MHA_OK)
        require(m == sentinel, "create %s: failed but wrote the model out-param", what);
    else
        mha_model_destroy(m);
}

START_TEST(test_create_bad_config)
{
    fixture f;
    mha_config good = mha_config_default(12, 4);
    good.num_kv_heads = 2;
    fixture_init(&f, &good, 0, 4);
    expect_create(&good, &f.w, MHA_OK, "valid");
    mha_model *m = NULL;
    ck_assert_int_eq(mha_model_create(NULL, &f.w, &m), MHA_ERR_NULL_POINTER);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(mha_model_create(&good, NULL, &m), MHA_ERR_NULL_POINTER);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(mha_model_create(&good, &f.w, NULL), MHA_ERR_NULL_POINTER);

    struct {
        const char *what;
        int field; /* index into the int64 fields below */
        int64_t value;
        mha_status want;
    } cases[] = {
        {"embed_dim 0", 0, 0, MHA_ERR_BAD_SIZE},
        {"embed_dim -12", 0, -12, MHA_ERR_BAD_SIZE},
        {"num_heads 0", 1, 0, MHA_ERR_BAD_SIZE},
        {"num_heads -4", 1, -4, MHA_ERR_BAD_SIZE},
        {"num_kv_heads -2", 2, -2, MHA_ERR_BAD_SIZE},
        {"kdim -1", 3, -1, MHA_ERR_BAD_SIZE},
        {"vdim -1", 4, -1, MHA_ERR_BAD_SIZE},
        {"head_dim_qk -3", 5, -3, MHA_ERR_BAD_SIZE},
        {"head_dim_v -3", 6, -3, MHA_ERR_BAD_SIZE},
        {"out_dim -1", 7, -1, MHA_ERR_BAD_SIZE},
        {"G does not divide H", 2, 3, MHA_ERR_HEADS}, /* 4 % 3 */
        {"G > H", 2, 8, MHA_ERR_HEADS},
        {"E*E overflows", 0, (int64_t)1 << 40, MHA_ERR_OVERFLOW}, /* H=4: [E, E] weights */
        {"H*d_k*E beyond any array", 0, (int64_t)1 << 31, MHA_ERR_OVERFLOW}, /* 2^62 elements */
        {"head_dim_qk huge", 5, INT64_MAX / 2, MHA_ERR_OVERFLOW},
        {"head_dim_v huge", 6, (int64_t)1 << 61, MHA_ERR_OVERFLOW},
        {"kdim huge", 3, (int64_t)1 << 60, MHA_ERR_OVERFLOW},
        {"out_dim huge", 7, (int64_t)1 << 60, MHA_ERR_OVERFLOW},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mha_config c = good;
        int64_t *fields[] = {&c.embed_dim, &c.num_heads, &c.num_kv_heads, &c.kdim,
                             &c.vdim,      &c.head_dim_qk, &c.head_dim_v, &c.out_dim};
        *fields[cases[i].field] = cases[i].value;
        expect_create(&c, &f.w, cases[i].want, cases[i].what);
    }

    /* E % H only matters when a head dim is defaulted. */
    mha_config c = mha_config_default(12, 5);
    expect_create(&c, &f.w, MHA_ERR_HEADS, "E % H != 0");
    c = mha_config_default(10, 4);
    c.head_dim_qk = 3;
    expect_create(&c, &f.w, MHA_ERR_HEADS, "E % H with default d_v");
    c = mha_config_default(10, 4);
    c.head_dim_v = 3;
    expect_create(&c, &f.w, MHA_ERR_HEADS, "E % H with default d_k");
    /* H * d_k overflowing int64 itself. */
    c = mha_config_default(8, (int64_t)1 << 32);
    c.head_dim_qk = (int64_t)1 << 32;
    c.head_dim_v = 1;
    expect_create(&c, &f.w, MHA_ERR_OVERFLOW, "H*d_k overflows int64");

    const float bad_scales[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        c = good;
        c.scale = bad_scales[i];
        expect_create(&c, &f.w, MHA_ERR_SCALE, "non-finite scale");
    }
    c = good;
    c.scale = -0.5f; /* finite: allowed */
    expect_create(&c, &f.w, MHA_OK, "negative finite scale");
    fixture_free(&f);
}
END_TEST

START_TEST(test_create_bad_weights)
{
    static const float dummy[4096];
    fixture sep, fus;
    mha_config c = mha_config_default(8, 2);
    fixture_init(&sep, &c, 0, 5);
    fixture_init(&fus, &c, 1, 6);
    expect_create(&c, &sep.w, MHA_OK, "separate");
    expect_create(&c, &fus.w, MHA_OK, "fused");

    mha_weights w = fus.w;
    w.q_weight = dummy;
    expect_create(&c, &w, MHA_ERR_WEIGHTS, "fused + q_weight");
    w = fus.w;
    w.k_bias = dummy;
    expect_create(&c, &w, MHA_ERR_WEIGHTS, "fused + k_bias");
    w = sep.w;
    w.in_proj_weight = dummy;
    expect_create(&c, &w, MHA_ERR_WEIGHTS, "separate + in_proj_weight");
    w = sep.w;
    w.in_proj_bias = dummy;
    expect_create(&c, &w, MHA_ERR_WEIGHTS, "separate + in_proj_bias");
    w = fus.w;
    w.in_proj_bias = NULL;
    expect_create(&c, &w, MHA_ERR_WEIGHTS, "fused, has_bias, no in_proj_bias");
    w = sep.w;
    w.v_bias = NULL;
    expect_create(&c, &w, MHA_ERR_WEIGHTS, "has_bias, no v_bias");
    w = sep.w;
    w.k_weight = NULL;
    expect_create(&c, &w, MHA_ERR_WEIGHTS, "no k_weight");
    w = sep.w;
    w.out_weight = NULL;
    expect_create(&c, &w, MHA_ERR_WEIGHTS, "has_out_proj, no out_weight");
    w = sep.w;
    w.out_bias = NULL;
    expect_create(&c, &w, MHA_ERR_WEIGHTS, "has_bias, no out_bias");
    memset(&w, 0, sizeof w);
    expect_create(&c, &w, MHA_ERR_WEIGHTS, "no weights at all");

    mha_config nb = c;
    nb.has_bias = 0;
    expect_create(&nb, &sep.w, MHA_ERR_WEIGHTS, "has_bias 0 with biases");
    w = fus.w;
    w.out_bias = NULL;
    expect_create(&nb, &w, MHA_ERR_WEIGHTS, "has_bias 0 with in_proj_bias");
    w.in_proj_bias = NULL;
    expect_create(&nb, &w, MHA_OK, "has_bias 0, no biases");
    w.out_bias = dummy;
    expect_create(&nb, &w, MHA_ERR_WEIGHTS, "has_bias 0 with out_bias");
    /* Booleans are 0 or 1: 7 or -1 is a caller's bug, not "true". */
    const int not_bool[] = {7, -1, 2};
    for (int i = 0; i < 3; i++) {
        mha_config bb = c, bp = c;
        bb.has_bias = not_bool[i];
        expect_create(&bb, &sep.w, MHA_ERR_WEIGHTS, "has_bias not 0 or 1");
        bp.has_out_proj = not_bool[i];
        expect_create(&bp, &sep.w, MHA_ERR_WEIGHTS, "has_out_proj not 0 or 1");
    }

    mha_config np = c;
    np.has_out_proj = 0;
    expect_create(&np, &sep.w, MHA_ERR_WEIGHTS, "no out proj but out_weight given");
    w = sep.w;
    w.out_weight = NULL;
    expect_create(&np, &w, MHA_ERR_WEIGHTS, "no out proj but out_bias given");
    w.out_bias = NULL;
    expect_create(&np, &w, MHA_OK, "no out proj");

    mha_config kd = c;
    kd.kdim = 6;
    expect_create(&kd, &fus.w, MHA_ERR_WEIGHTS, "fused with kdim != E");
    kd = c;
    kd.vdim = 5;
    expect_create(&kd, &fus.w, MHA_ERR_WEIGHTS, "fused with vdim != E");
    kd = c;
    kd.kdim = 8; /* explicit, equal to E: fine */
    expect_create(&kd, &fus.w, MHA_OK, "fused with kdim == E");
    fixture_free(&sep);
    fixture_free(&fus);
}
END_TEST

/* ------------------------------------------------------------ forward args */

/* A cross-attention forward call on a small model, with every buffer the call
 * might touch, and a workspace of the queried size. */
typedef struct fcall {
    fixture f;
    int64_t B, Lq, Lk;
    float *x, *key, *value, *out;
    size_t out_bytes;
    void *ws;
    size_t ws_bytes;
    mha_forward_args a;
} fcall;

static void fcall_init(fcall *c)
{
    mha_config cfg = mha_config_default(8, 2);
    fixture_init(&c->f, &cfg, 0, 7);
    fixture_create(&c->f);
    c->B = 2;
    c->Lq = 3;
    c->Lk = 4;
    test_rng r = test_rng_seed(8);
    c->x = test_random(&r, (size_t)(c->B * c->Lq * 8), -1, 1);
    c->key = test_random(&r, (size_t)(c->B * c->Lk * 8), -1, 1);
    c->value = test_random(&r, (size_t)(c->B * c->Lk * 8), -1, 1);
    c->out_bytes = (size_t)(c->B * c->Lq * 8) * sizeof(float);
    c->out = xmalloc(c->out_bytes);
    memset(&c->a, 0, sizeof c->a);
    c->a.batch = c->B;
    c->a.len_q = c->Lq;
    c->a.len_k = c->Lk;
    c->a.query = c->x;
    c->a.key = c->key;
    c->a.value = c->value;
    c->a.out = c->out;
    c->a.num_threads = 1;
    mha_status st = mha_forward_workspace_size(c->f.model, c->B, c->Lq, c->Lk, 1, &c->ws_bytes);
    ck_assert_int_eq(st, MHA_OK);
    c->ws = xmalloc(c->ws_bytes);
}

static void fcall_free(fcall *c)
{
    fixture_free(&c->f);
    free(c->x);
    free(c->key);
    free(c->value);
    free(c->out);
    free(c->ws);
}

/* Runs mha_forward (and, when `ref`, the oracle) on args a, expecting `want`;
 * a failed call must leave the output buffer (a->out when it points into `out`)
 * byte-identical. */
static void expect_forward(fcall *c, const mha_forward_args *a, void *ws, size_t ws_bytes,
                           int ref, mha_status want, const char *what)
{
    fill_sentinel(c->out, c->out_bytes);
    mha_status st = mha_forward(c->f.model, a, ws, ws_bytes);
    require(st == want, "[%s] forward %s: got %d (%s), expected %d (%s)", isa_now(), what, st,
                  mha_status_message(st), want, mha_status_message(want));
    if (st != MHA_OK)
        require(is_sentinel(c->out, c->out_bytes), "[%s] forward %s: failed but wrote the output",
                      isa_now(), what);
    if (!ref)
        return;
    fill_sentinel(c->out, c->out_bytes);
    st = mha_reference_forward(&c->f.cfg, &c->f.w, a);
    require(st == want, "[%s] reference forward %s: got %d (%s), expected %d", isa_now(), what,
                  st, mha_status_message(st), want);
    if (st != MHA_OK)
        require(is_sentinel(c->out, c->out_bytes),
                      "reference forward %s: failed but wrote the output", what);
}

START_TEST(test_forward_bad_args)
{
    fcall c;
    fcall_init(&c);
    mha_forward_args a;
    uint8_t bmask[2 * 2 * 3 * 4];
    float fmask[2 * 2 * 3 * 4];
    memset(bmask, 1, sizeof bmask);
    memset(fmask, 0, sizeof fmask);

    expect_forward(&c, &c.a, c.ws, c.ws_bytes, 1, MHA_OK, "valid");

    fill_sentinel(c.out, c.out_bytes);
    ck_assert_int_eq(mha_forward(NULL, &c.a, c.ws, c.ws_bytes), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_forward(c.f.model, NULL, c.ws, c.ws_bytes), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_reference_forward(NULL, &c.f.w, &c.a), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_reference_forward(&c.f.cfg, NULL, &c.a), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_reference_forward(&c.f.cfg, &c.f.w, NULL), MHA_ERR_NULL_POINTER);
    require(is_sentinel(c.out, c.out_bytes), "NULL model/args: output written");

#define CASE(what, want, ...)                                                                     \
    do {                                                                                          \
        a = c.a;                                                                                  \
        __VA_ARGS__;                                                                              \
        expect_forward(&c, &a, c.ws, c.ws_bytes, 1, want, what);                                  \
    } while (0)

    CASE("query NULL", MHA_ERR_NULL_POINTER, a.query = NULL);
    CASE("out NULL", MHA_ERR_NULL_POINTER, a.out = NULL);
    CASE("key without value", MHA_ERR_NULL_POINTER, a.value = NULL);
    CASE("value without key", MHA_ERR_NULL_POINTER, a.key = NULL);
    CASE("batch 0", MHA_ERR_BAD_SIZE, a.batch = 0);
    CASE("batch -1", MHA_ERR_BAD_SIZE, a.batch = -1);
    CASE("len_q 0", MHA_ERR_BAD_SIZE, a.len_q = 0);
    CASE("len_q -3", MHA_ERR_BAD_SIZE, a.len_q = -3);
    CASE("len_k 0", MHA_ERR_BAD_SIZE, a.len_k = 0);
    CASE("len_k -2", MHA_ERR_BAD_SIZE, a.len_k = -2);
    CASE("threads -1", MHA_ERR_THREADS, a.num_threads = -1);
    CASE("threads MHA_MAX_THREADS + 1", MHA_ERR_THREADS, a.num_threads = MHA_MAX_THREADS + 1);
    CASE("threads 100000", MHA_ERR_THREADS, a.num_threads = 100000);
    CASE("threads INT_MAX", MHA_ERR_THREADS, a.num_threads = 0x7fffffff);
    CASE("batch 2^40: overflow, not alias", MHA_ERR_OVERFLOW, a.batch = (int64_t)1 << 40);
    CASE("batch*Lq*E overflows int64", MHA_ERR_OVERFLOW, a.batch = INT64_MAX / 4);
    CASE("batch*Lq*E beyond size_t", MHA_ERR_OVERFLOW, a.batch = (int64_t)1 << 59);
    CASE("batch*Lk*kdim overflows", MHA_ERR_OVERFLOW, a.len_k = INT64_MAX / 8);
    CASE("len_q huge", MHA_ERR_OVERFLOW, a.len_q = (int64_t)1 << 62);
    CASE("causal kind 3", MHA_ERR_MASK, a.mask.causal = (mha_causal)3);
    CASE("causal kind -1", MHA_ERR_MASK, a.mask.causal = (mha_causal)-1);

    int32_t kl[2] = {4, -1};
    CASE("key_lengths -1", MHA_ERR_MASK, a.mask.key_lengths = kl);
    int32_t kl2[2] = {5, 1};
    CASE("key_lengths Lk+1", MHA_ERR_MASK, a.mask.key_lengths = kl2);
    int32_t kl3[2] = {4, 0};
    CASE("key_lengths {Lk, 0}", MHA_OK, a.mask.key_lengths = kl3);

    /* Mask tensors [B=2, H=2, Lq=3, Lk=4], dense strides {24, 12, 4}. */
    const mha_mask_tensor dense_b = {bmask, 24, 12, 4}, dense_f = {fmask, 24, 12, 4};
    CASE("bool mask dense", MHA_OK, a.mask.bool_mask = dense_b);
    CASE("float mask dense", MHA_OK, a.mask.float_mask = dense_f);
    const mha_mask_tensor bad[] = {
        {bmask, 24, 12, 3},  /* stride_q < Lk */
        {bmask, 24, 12, -4}, /* negative */
        {bmask, 24, -12, 4}, {bmask, -24, 12, 4},
        {bmask, 24, 11, 4}, /* heads overlap: one head spans 2*4+4 = 12 */
        {bmask, 23, 12, 4}, /* batches overlap: one batch spans 12+12 = 24 */
        {bmask, 11, 0, 4},  /* broadcast heads, batches overlap: one batch spans 12 */
        {bmask, 0, 3, 0},   /* broadcast rows, heads overlap: one head spans 4 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char what[96];
        snprintf(what, sizeof what, "bool mask strides {%lld,%lld,%lld}", (long long)bad[i].stride_b,
                 (long long)bad[i].stride_h, (long long)bad[i].stride_q);
        CASE(what, MHA_ERR_MASK, a.mask.bool_mask = bad[i]);
        mha_mask_tensor ft = bad[i];
        ft.data = fmask;
        snprintf(what, sizeof what, "float mask strides {%lld,%lld,%lld}", (long long)ft.stride_b,
                 (long long)ft.stride_h, (long long)ft.stride_q);
        CASE(what, MHA_ERR_MASK, a.mask.float_mask = ft);
    }
    /* Broadcast shapes are fine. */
    CASE("bool mask [1,1,Lq,Lk]", MHA_OK, a.mask.bool_mask = ((mha_mask_tensor){bmask, 0, 0, 4}));
    CASE("bool mask [B,1,1,Lk]", MHA_OK, a.mask.bool_mask = ((mha_mask_tensor){bmask, 4, 0, 0}));
    CASE("float mask [1,H,1,Lk]", MHA_OK, a.mask.float_mask = ((mha_mask_tensor){fmask, 0, 4, 0}));
    /* Strides beyond the buffer are not checkable, but a mask whose strides make
     * its extent overflow must be rejected, not read. */
    CASE("mask stride overflow", MHA_ERR_OVERFLOW,
         a.mask.bool_mask = ((mha_mask_tensor){bmask, INT64_MAX / 2, 12, 4}));

    /* Aliasing: the output overlapping any input. */
    float *big = xmalloc(c.out_bytes * 4);
    memcpy(big, c.x, (size_t)(c.B * c.Lq * 8) * sizeof(float));
    const int32_t valid_kl[2] = {4, 4}; /* read as key_lengths below: must be valid */
    memcpy(big + 47, valid_kl, sizeof valid_kl);
    float *snap = xmalloc(c.out_bytes * 4);
    memcpy(snap, big, c.out_bytes * 4);
    a = c.a;
    a.query = big;
    a.out = big + 5; /* overlaps the query's tail */
    ck_assert_int_eq(mha_forward(c.f.model, &a, c.ws, c.ws_bytes), MHA_ERR_ALIAS);
    ck_assert_int_eq(mha_reference_forward(&c.f.cfg, &c.f.w, &a), MHA_ERR_ALIAS);
    require(memcmp(big, snap, c.out_bytes * 4) == 0, "alias: query/output buffer written");
    a.out = big;
    ck_assert_int_eq(mha_forward(c.f.model, &a, c.ws, c.ws_bytes), MHA_ERR_ALIAS);
    a = c.a;
    a.out = c.key + 1;
    ck_assert_int_eq(mha_forward(c.f.model, &a, c.ws, c.ws_bytes), MHA_ERR_ALIAS);
    a = c.a;
    a.out = c.value;
    ck_assert_int_eq(mha_reference_forward(&c.f.cfg, &c.f.w, &a), MHA_ERR_ALIAS);
    a = c.a;
    a.mask.float_mask = dense_f;
    a.mask.float_mask.data = big + 40; /* output = big[0..48) */
    a.out = big;
    a.query = c.x;
    ck_assert_int_eq(mha_forward(c.f.model, &a, c.ws, c.ws_bytes), MHA_ERR_ALIAS);
    a = c.a;
    a.mask.key_lengths = (const int32_t *)(void *)(big + 47);
    a.out = big;
    ck_assert_int_eq(mha_forward(c.f.model, &a, c.ws, c.ws_bytes), MHA_ERR_ALIAS);
    require(memcmp(big, snap, c.out_bytes * 4) == 0, "alias: buffer written");

    /* Workspace: NULL, one byte short, overlapping the output or an input. */
    expect_forward(&c, &c.a, NULL, c.ws_bytes, 0, MHA_ERR_WORKSPACE, "workspace NULL");
    expect_forward(&c, &c.a, c.ws, c.ws_bytes - 1, 0, MHA_ERR_WORKSPACE, "workspace 1 byte short");
    expect_forward(&c, &c.a, c.ws, 0, 0, MHA_ERR_WORKSPACE, "workspace 0 bytes");
    char *wsbig = xmalloc(c.ws_bytes + c.out_bytes + 256);
    a = c.a;
    a.out = (float *)(void *)(wsbig + c.ws_bytes - 64); /* the output's head inside the workspace */
    ck_assert_int_eq(mha_forward(c.f.model, &a, wsbig, c.ws_bytes), MHA_ERR_ALIAS);
    a = c.a;
    memcpy(wsbig + 128, c.x, (size_t)(c.B * c.Lq * 8) * sizeof(float));
    a.query = (const float *)(void *)(wsbig + 128);
    ck_assert_int_eq(mha_forward(c.f.model, &a, wsbig, c.ws_bytes), MHA_ERR_ALIAS);
    a = c.a;
    a.key = (const float *)(void *)(wsbig + c.ws_bytes - 4);
    memset(wsbig, 0, c.ws_bytes + c.out_bytes + 256);
    expect_forward(&c, &a, wsbig, c.ws_bytes, 0, MHA_ERR_ALIAS, "workspace overlapping the key");
    free(wsbig);
    free(big);
    free(snap);
#undef CASE
    fcall_free(&c);
}
END_TEST

START_TEST(test_forward_self_attention_args)
{
    fcall c;
    fcall_init(&c);
    mha_forward_args a = c.a;
    a.key = a.value = NULL;
    a.len_k = -5; /* ignored for self-attention */
    size_t bytes;
    ck_assert_int_eq(mha_forward_workspace_size(c.f.model, c.B, c.Lq, c.Lq, 1, &bytes), MHA_OK);
    /* len_k 0 means self-attention in the size query too, as mha_forward sees it. */
    size_t self_bytes = 0;
    ck_assert_int_eq(mha_forward_workspace_size(c.f.model, c.B, c.Lq, 0, 1, &self_bytes), MHA_OK);
    require(self_bytes == bytes, "len_k 0 sized %zu bytes, len_k = len_q %zu", self_bytes, bytes);
    void *ws = xmalloc(bytes);
    expect_forward(&c, &a, ws, bytes, 1, MHA_OK, "self-attention, len_k ignored");
    a.len_k = 0;
    expect_forward(&c, &a, ws, bytes, 1, MHA_OK, "self-attention, len_k 0 ignored");
    /* key_lengths are checked against Lk = Lq. */
    int32_t kl[2] = {3, 4};
    a.mask.key_lengths = kl;
    expect_forward(&c, &a, ws, bytes, 1, MHA_ERR_MASK, "self-attention, key_lengths Lq+1");
    kl[1] = 3;
    expect_forward(&c, &a, ws, bytes, 1, MHA_OK, "self-attention, key_lengths Lq");
    free(ws);
    fcall_free(&c);

    /* A model with kdim != E needs explicit key/value sources. */
    mha_config cfg = mha_config_default(8, 2);
    cfg.kdim = 6;
    fcall d;
    fcall_init(&d);
    fixture f2;
    fixture_init(&f2, &cfg, 0, 9);
    fixture_create(&f2);
    a = d.a;
    a.key = a.value = NULL;
    fill_sentinel(d.out, d.out_bytes);
    mha_status st = mha_forward(f2.model, &a, d.ws, d.ws_bytes);
    require(st == MHA_ERR_NULL_POINTER, "self-attention with kdim != E: %s", mha_status_message(st));
    st = mha_reference_forward(&f2.cfg, &f2.w, &a);
    require(st == MHA_ERR_NULL_POINTER, "reference self-attention with kdim != E: %s",
                  mha_status_message(st));
    require(is_sentinel(d.out, d.out_bytes), "self-attention with kdim != E: output written");
    fixture_free(&f2);

    cfg = mha_config_default(8, 2);
    cfg.vdim = 4;
    fixture_init(&f2, &cfg, 0, 10);
    fixture_create(&f2);
    st = mha_forward(f2.model, &a, d.ws, d.ws_bytes);
    require(st == MHA_ERR_NULL_POINTER, "self-attention with vdim != E: %s", mha_status_message(st));
    require(is_sentinel(d.out, d.out_bytes), "self-attention with vdim != E: output written");
    fixture_free(&f2);
    fcall_free(&d);
}
END_TEST

START_TEST(test_forward_workspace_size_args)
{
    fcall c;
    fcall_init(&c);
    size_t bytes = 12345, one, two;
    const mha_model *m = c.f.model;
    ck_assert_int_eq(mha_forward_workspace_size(NULL, 1, 1, 1, 1, &bytes), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_forward_workspace_size(m, 1, 1, 1, 1, NULL), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_forward_workspace_size(m, 0, 1, 1, 1, &bytes), MHA_ERR_BAD_SIZE);
    ck_assert_int_eq(mha_forward_workspace_size(m, 1, -1, 1, 1, &bytes), MHA_ERR_BAD_SIZE);
    ck_assert_int_eq(mha_forward_workspace_size(m, 1, 1, -1, 1, &bytes), MHA_ERR_BAD_SIZE);
    ck_assert_int_eq(mha_forward_workspace_size(m, 1, 1, 1, -1, &bytes), MHA_ERR_THREADS);
    ck_assert_int_eq(mha_forward_workspace_size(m, 1, 1, 1, MHA_MAX_THREADS + 1, &bytes),
                     MHA_ERR_THREADS);
    ck_assert_int_eq(mha_forward_workspace_size(m, 1, 1, 1, 100000, &bytes), MHA_ERR_THREADS);
    ck_assert_int_eq(mha_forward_workspace_size(m, INT64_MAX / 2, 4, 4, 1, &bytes), MHA_ERR_OVERFLOW);
    ck_assert_int_eq(mha_forward_workspace_size(m, 4, (int64_t)1 << 60, 4, 1, &bytes), MHA_ERR_OVERFLOW);
    ck_assert_int_eq(mha_forward_workspace_size(m, 4, 4, (int64_t)1 << 60, 1, &bytes), MHA_ERR_OVERFLOW);
    require(bytes == 12345, "failed size query wrote *bytes");
    /* Monotone in the shape and the thread count. */
    ck_assert_int_eq(mha_forward_workspace_size(m, 2, 3, 4, 1, &one), MHA_OK);
    ck_assert_int_eq(mha_forward_workspace_size(m, 2, 3, 4, 2, &two), MHA_OK);
    require(one > 0 && two >= one, "workspace 1 thread %zu, 2 threads %zu", one, two);
    ck_assert_int_eq(mha_forward_workspace_size(m, 3, 3, 4, 1, &two), MHA_OK);
    require(two >= one, "workspace grows with batch: %zu < %zu", two, one);
    fcall_free(&c);
}
END_TEST

/* --------------------------------------------------------- attention args */

/* q [2,4,5,8], k/v [2,2,6,8|4], out [2,4,5,4], dense. */
typedef struct acall {
    float *q, *k, *v, *out;
    size_t out_bytes;
    void *ws;
    size_t ws_bytes;
    mha_attention_args a;
} acall;

static void acall_init(acall *c)
{
    test_rng r = test_rng_seed(11);
    memset(&c->a, 0, sizeof c->a);
    mha_attention_args *a = &c->a;
    a->batch = 2;
    a->num_heads = 4;
    a->num_kv_heads = 2;
    a->len_q = 5;
    a->len_k = 6;
    a->head_dim_qk = 8;
    a->head_dim_v = 4;
    c->q = test_random(&r, 2 * 4 * 5 * 8, -1, 1);
    c->k = test_random(&r, 2 * 2 * 6 * 8, -1, 1);
    c->v = test_random(&r, 2 * 2 * 6 * 4, -1, 1);
    c->out_bytes = 2 * 4 * 5 * 4 * sizeof(float);
    c->out = xmalloc(c->out_bytes);
    a->q = c->q;
    a->k = c->k;
    a->v = c->v;
    a->out = c->out;
    const int64_t qs[3] = {4 * 5 * 8, 5 * 8, 8}, ks[3] = {2 * 6 * 8, 6 * 8, 8},
                  vs[3] = {2 * 6 * 4, 6 * 4, 4}, os[3] = {4 * 5 * 4, 5 * 4, 4};
    memcpy(a->q_stride, qs, sizeof qs);
    memcpy(a->k_stride, ks, sizeof ks);
    memcpy(a->v_stride, vs, sizeof vs);
    memcpy(a->out_stride, os, sizeof os);
    a->num_threads = 1;
    ck_assert_int_eq(mha_attention_workspace_size(a, &c->ws_bytes), MHA_OK);
    c->ws = xmalloc(c->ws_bytes);
}

static void acall_free(acall *c)
{
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->out);
    free(c->ws);
}

static void expect_attention(acall *c, const mha_attention_args *a, void *ws, size_t ws_bytes,
                             int ref, mha_status want, const char *what)
{
    fill_sentinel(c->out, c->out_bytes);
    mha_status st = mha_attention(a, ws, ws_bytes);
    require(st == want, "[%s] attention %s: got %d (%s), expected %d (%s)", isa_now(), what, st,
                  mha_status_message(st), want, mha_status_message(want));
    if (st != MHA_OK)
        require(is_sentinel(c->out, c->out_bytes),
                      "[%s] attention %s: failed but wrote the output", isa_now(), what);
    if (!ref)
        return;
    size_t bytes = 777;
    st = mha_attention_workspace_size(a, &bytes);
    if (want != MHA_OK && want != MHA_ERR_WORKSPACE) {
        require(st == want, "attention workspace size %s: got %d (%s), expected %d", what, st,
                      mha_status_message(st), want);
        require(bytes == 777, "attention workspace size %s: failed but wrote *bytes", what);
    }
    fill_sentinel(c->out, c->out_bytes);
    st = mha_reference_attention(a);
    require(st == want, "reference attention %s: got %d (%s), expected %d", what, st,
                  mha_status_message(st), want);
    if (st != MHA_OK)
        require(is_sentinel(c->out, c->out_bytes),
                      "reference attention %s: failed but wrote the output", what);
}

START_TEST(test_attention_bad_args)
{
    acall c;
    acall_init(&c);
    mha_attention_args a;
    uint8_t bmask[2 * 4 * 5 * 6];
    memset(bmask, 1, sizeof bmask);

    expect_attention(&c, &c.a, c.ws, c.ws_bytes, 1, MHA_OK, "valid");
    size_t bytes;
    ck_assert_int_eq(mha_attention_workspace_size(NULL, &bytes), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_attention_workspace_size(&c.a, NULL), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_attention(NULL, c.ws, c.ws_bytes), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_reference_attention(NULL), MHA_ERR_NULL_POINTER);

#define CASE(what, want, ...)                                                                     \
    do {                                                                                          \
        a = c.a;                                                                                  \
        __VA_ARGS__;                                                                              \
        expect_attention(&c, &a, c.ws, c.ws_bytes, 1, want, what);                                \
    } while (0)

    CASE("q NULL", MHA_ERR_NULL_POINTER, a.q = NULL);
    CASE("k NULL", MHA_ERR_NULL_POINTER, a.k = NULL);
    CASE("v NULL", MHA_ERR_NULL_POINTER, a.v = NULL);
    CASE("out NULL", MHA_ERR_NULL_POINTER, a.out = NULL);
    CASE("batch 0", MHA_ERR_BAD_SIZE, a.batch = 0);
    CASE("batch -2", MHA_ERR_BAD_SIZE, a.batch = -2);
    CASE("heads 0", MHA_ERR_BAD_SIZE, a.num_heads = 0);
    CASE("kv heads -1", MHA_ERR_BAD_SIZE, a.num_kv_heads = -1);
    CASE("len_q 0", MHA_ERR_BAD_SIZE, a.len_q = 0);
    CASE("len_k -1", MHA_ERR_BAD_SIZE, a.len_k = -1);
    CASE("d_k 0", MHA_ERR_BAD_SIZE, a.head_dim_qk = 0);
    CASE("d_v -4", MHA_ERR_BAD_SIZE, a.head_dim_v = -4);
    CASE("G does not divide H", MHA_ERR_HEADS, a.num_kv_heads = 3);
    CASE("G > H", MHA_ERR_HEADS, a.num_kv_heads = 8);
    CASE("scale NaN", MHA_ERR_SCALE, a.scale = NAN);
    CASE("scale +inf", MHA_ERR_SCALE, a.scale = INFINITY);
    CASE("scale -inf", MHA_ERR_SCALE, a.scale = -INFINITY);
    CASE("threads -1", MHA_ERR_THREADS, a.num_threads = -1);
    CASE("threads MHA_MAX_THREADS + 1", MHA_ERR_THREADS, a.num_threads = MHA_MAX_THREADS + 1);
    CASE("threads 100000", MHA_ERR_THREADS, a.num_threads = 100000);
    /* Dense strides: out spans 2^40 batches, a range that covers q. The size is
     * the error, checked before the overlap. */
    CASE("batch 2^40: overflow, not alias", MHA_ERR_OVERFLOW, a.batch = (int64_t)1 << 40);
    CASE("batch 2^40, inputs broadcast", MHA_ERR_OVERFLOW, a.batch = (int64_t)1 << 40;
         a.q_stride[0] = a.k_stride[0] = a.v_stride[0] = 0);
    CASE("q stride[0] -1", MHA_ERR_STRIDE, a.q_stride[0] = -1);
    CASE("k stride[1] -48", MHA_ERR_STRIDE, a.k_stride[1] = -48);
    CASE("v stride[2] -4", MHA_ERR_STRIDE, a.v_stride[2] = -4);
    CASE("out stride[2] -4", MHA_ERR_STRIDE, a.out_stride[2] = -4);
    CASE("out rows overlap", MHA_ERR_STRIDE, a.out_stride[2] = 3);
    CASE("out rows alias", MHA_ERR_STRIDE, a.out_stride[2] = 0);
    CASE("out heads overlap", MHA_ERR_STRIDE, a.out_stride[1] = 16);
    CASE("out batches overlap", MHA_ERR_STRIDE, a.out_stride[0] = 79);
    CASE("out batches alias", MHA_ERR_STRIDE, a.out_stride[0] = 0);
    /* [B, L, H, d] out layout: heads interleaved within rows, no overlap. */
    CASE("out [B,L,H,d]", MHA_OK, a.out_stride[0] = 5 * 4 * 4; a.out_stride[1] = 4; a.out_stride[2] = 16);
    /* Interleaved but colliding: heads step 4, rows step 8 < H*d. */
    CASE("out [B,L,H,d] rows too close", MHA_ERR_STRIDE, a.out_stride[1] = 4; a.out_stride[2] = 8);
    CASE("q extent overflows", MHA_ERR_OVERFLOW, a.q_stride[0] = INT64_MAX / 2);
    CASE("k extent overflows", MHA_ERR_OVERFLOW, a.k_stride[2] = INT64_MAX / 3);
    CASE("causal kind 7", MHA_ERR_MASK, a.mask.causal = (mha_causal)7);
    int32_t kl[2] = {6, 7};
    CASE("key_lengths Lk+1", MHA_ERR_MASK, a.mask.key_lengths = kl);
    int32_t kl2[2] = {INT32_MIN, 0};
    CASE("key_lengths INT32_MIN", MHA_ERR_MASK, a.mask.key_lengths = kl2);
    CASE("bool mask stride_q 5 < Lk", MHA_ERR_MASK,
         a.mask.bool_mask = ((mha_mask_tensor){bmask, 120, 30, 5}));
    CASE("bool mask heads overlap", MHA_ERR_MASK,
         a.mask.bool_mask = ((mha_mask_tensor){bmask, 120, 29, 6}));
    CASE("bool mask batches overlap", MHA_ERR_MASK,
         a.mask.bool_mask = ((mha_mask_tensor){bmask, 119, 30, 6}));
    CASE("float mask negative stride_h", MHA_ERR_MASK,
         a.mask.float_mask = ((mha_mask_tensor){bmask, 0, -1, 0}));
    CASE("bool mask dense", MHA_OK, a.mask.bool_mask = ((mha_mask_tensor){bmask, 120, 30, 6}));

    /* Aliasing. */
    a = c.a;
    a.out = c.q + 3;
    float *qsnap = xmalloc(2 * 4 * 5 * 8 * sizeof(float));
    memcpy(qsnap, c.q, 2 * 4 * 5 * 8 * sizeof(float));
    ck_assert_int_eq(mha_attention(&a, c.ws, c.ws_bytes), MHA_ERR_ALIAS);
    ck_assert_int_eq(mha_reference_attention(&a), MHA_ERR_ALIAS);
    ck_assert_int_eq(mha_attention_workspace_size(&a, &bytes), MHA_ERR_ALIAS);
    require(memcmp(qsnap, c.q, 2 * 4 * 5 * 8 * sizeof(float)) == 0, "alias: q written");
    free(qsnap);
    a = c.a;
    a.out = c.v + 10;
    ck_assert_int_eq(mha_attention(&a, c.ws, c.ws_bytes), MHA_ERR_ALIAS);
    a = c.a;
    a.mask.bool_mask = (mha_mask_tensor){c.out, 120, 30, 6};
    ck_assert_int_eq(mha_attention(&a, c.ws, c.ws_bytes), MHA_ERR_ALIAS);
    /* q/k/v may overlap each other (they are only read). */
    a = c.a;
    a.k = c.q;
    a.v = c.q;
    a.head_dim_v = 8;
    a.v_stride[0] = a.k_stride[0];
    a.v_stride[1] = a.k_stride[1];
    a.v_stride[2] = a.k_stride[2];
    a.out_stride[0] = 4 * 5 * 8;
    a.out_stride[1] = 5 * 8;
    a.out_stride[2] = 8;
    float *out8 = xmalloc(2 * 4 * 5 * 8 * sizeof(float));
    a.out = out8;
    ck_assert_int_eq(mha_attention_workspace_size(&a, &bytes), MHA_OK);
    void *ws8 = xmalloc(bytes);
    ck_assert_int_eq(mha_attention(&a, ws8, bytes), MHA_OK);
    free(ws8);
    free(out8);

    /* Workspace. */
    expect_attention(&c, &c.a, NULL, c.ws_bytes, 0, MHA_ERR_WORKSPACE, "workspace NULL");
    expect_attention(&c, &c.a, c.ws, c.ws_bytes - 1, 0, MHA_ERR_WORKSPACE, "workspace 1 byte short");
    char *wsbig = xmalloc(c.ws_bytes + c.out_bytes);
    a = c.a;
    a.out = (float *)(void *)(wsbig + c.ws_bytes - 4);
    ck_assert_int_eq(mha_attention(&a, wsbig, c.ws_bytes), MHA_ERR_ALIAS);
    a = c.a;
    a.k = (const float *)(void *)wsbig;
    memset(wsbig, 0, c.ws_bytes + c.out_bytes);
    expect_attention(&c, &a, wsbig + 4, c.ws_bytes, 0, MHA_ERR_ALIAS, "workspace overlapping k");
    free(wsbig);
#undef CASE
    acall_free(&c);
}
END_TEST

/* K/V broadcast through zero strides cost no memory, so the checks on the
 * tensors' extents do not bound Lk * d_k: the workspace size (packed K and V for
 * every key) must still be computed without overflow, or the call refused. */
START_TEST(test_attention_broadcast_overflow)
{
    static float q[8], k[8], v[8], out[8];
    mha_attention_args a;
    memset(&a, 0, sizeof a);
    a.batch = 1;
    a.num_heads = 1;
    a.len_q = 1;
    a.len_k = (int64_t)1 << 61;
    a.head_dim_qk = 8;
    a.head_dim_v = 8;
    a.q = q;
    a.k = k;
    a.v = v;
    a.out = out;
    a.q_stride[2] = 8;
    a.out_stride[2] = 8;
    /* k, v: every stride 0, so every key is the same 8 floats. */
    size_t bytes = 0;
    mha_status st = mha_attention_workspace_size(&a, &bytes);
    require(st != MHA_OK, "Lk = 2^61 broadcast keys: workspace size %zu bytes reported OK", bytes);
    require(st == MHA_ERR_OVERFLOW || st == MHA_ERR_STRIDE, "Lk = 2^61 broadcast keys: %s",
                  mha_status_message(st));
}
END_TEST

/* Failed against the engine of 8ccafd5 (only q/k/v/out were checked against the
 * workspace); passes with the working tree's engine/forward.c + attention.c. */
/* The workspace "must not overlap inputs or output" (mha.h), and the entries
 * refuse a workspace overlapping q/k/v/query/key/value with MHA_ERR_ALIAS. The
 * masks and key lengths are inputs too: the call writes scratch over them and
 * then reads them, so it must refuse them the same way. */
START_TEST(test_workspace_overlapping_mask)
{
    fcall c;
    fcall_init(&c);
    char *wsbig = xmalloc(c.ws_bytes + 4096);
    memset(wsbig, 1, c.ws_bytes + 4096); /* all-ones bytes: a valid bool mask */
    mha_forward_args a = c.a;
    a.mask.bool_mask = (mha_mask_tensor){wsbig + 256, 24, 12, 4}; /* inside the workspace */
    expect_forward(&c, &a, wsbig, c.ws_bytes, 0, MHA_ERR_ALIAS, "workspace overlapping the bool mask");
    a = c.a;
    memset(wsbig, 0, c.ws_bytes + 4096); /* zeros: a valid float mask */
    a.mask.float_mask = (mha_mask_tensor){wsbig + c.ws_bytes - 8, 24, 12, 4};
    expect_forward(&c, &a, wsbig, c.ws_bytes, 0, MHA_ERR_ALIAS, "workspace overlapping the float mask");
    a = c.a;
    const int32_t kl[2] = {4, 4};
    memcpy(wsbig + 64, kl, sizeof kl);
    a.mask.key_lengths = (const int32_t *)(void *)(wsbig + 64);
    expect_forward(&c, &a, wsbig, c.ws_bytes, 0, MHA_ERR_ALIAS, "workspace overlapping key_lengths");
    free(wsbig);
    fcall_free(&c);

    acall d;
    acall_init(&d);
    wsbig = xmalloc(d.ws_bytes + 4096);
    memset(wsbig, 1, d.ws_bytes + 4096);
    mha_attention_args b = d.a;
    b.mask.bool_mask = (mha_mask_tensor){wsbig + 128, 120, 30, 6};
    expect_attention(&d, &b, wsbig, d.ws_bytes, 0, MHA_ERR_ALIAS, "workspace overlapping the bool mask");
    b = d.a;
    const int32_t kl2[2] = {6, 6};
    memcpy(wsbig + 64, kl2, sizeof kl2);
    b.mask.key_lengths = (const int32_t *)(void *)(wsbig + 64);
    expect_attention(&d, &b, wsbig, d.ws_bytes, 0, MHA_ERR_ALIAS, "workspace overlapping key_lengths");
    free(wsbig);
    acall_free(&d);
}
END_TEST

Suite *suite_validate(void)
{
    Suite *s = suite_create("validation");
    TCase *tc = tcase_create("validation");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_create_bad_config);
    tcase_add_test(tc, test_create_bad_weights);
    tcase_add_test(tc, test_forward_bad_args);
    tcase_add_test(tc, test_forward_self_attention_args);
    tcase_add_test(tc, test_forward_workspace_size_args);
    tcase_add_test(tc, test_attention_bad_args);
    tcase_add_test(tc, test_attention_broadcast_overflow);
    tcase_add_test(tc, test_workspace_overlapping_mask);
    suite_add_tcase(s, tc);
    return s;
}
