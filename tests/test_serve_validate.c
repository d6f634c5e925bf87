/*
 * Argument checks of the serving entries: every descriptor field that can be
 * wrong gets its status, and then nothing is written: neither the output, the
 * LSE nor any cache slot (all compared byte for byte with a snapshot). The
 * oracle shares the checks and must return the same status. No OpenMP outside
 * START_TEST bodies (Check forks).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve_prob.h"

/* A snapshot of every buffer a call could write. */
typedef struct snap {
    const void *p[4];
    size_t n[4];
    void *copy[4];
} snap;

static snap snap_take(const void *a, size_t an, const void *b, size_t bn, const void *c, size_t cn,
                      const void *d, size_t dn)
{
    snap s = {{a, b, c, d}, {an, bn, cn, dn}, {0}};
    for (int i = 0; i < 4; i++) {
        s.copy[i] = xmalloc(s.n[i]);
        if (s.p[i])
            memcpy(s.copy[i], s.p[i], s.n[i]);
    }
    return s;
}

static void snap_check(snap *s, const char *what)
{
    static const char *names[4] = {"output", "lse", "k cache", "v cache"};
    for (int i = 0; i < 4; i++) {
        if (s->p[i])
            require(memcmp(s->copy[i], s->p[i], s->n[i]) == 0, "[%s] %s: failed but wrote the %s", isa_now(),
                    what, names[i]);
        free(s->copy[i]);
    }
}

typedef struct attn_case {
    serve_prob p;
    mha_serve_plan *plan;
    void *storage, *ws;
    size_t pb, wb;
    float *out, *lse;
} attn_case;

static void attn_case_init(attn_case *c, int kind)
{
    const int32_t ql[3] = {1, 5, 2}, kl[3] = {40, 20, 17};
    serve_prob_init(&c->p, 77 + (uint64_t)kind, 3, 4, 2, 16, 8, ql, kl, kind, 16);
    mha_serve_plan_args pa = {.num_heads = 4, .num_kv_heads = 2, .head_dim_qk = 16, .head_dim_v = 8,
                              .batch = &c->p.batch, .cache = &c->p.cache, .num_threads = 2};
    ck_assert_int_eq(mha_serve_plan_size(&pa, &c->pb, &c->wb), MHA_OK);
    c->storage = xmalloc(c->pb);
    c->ws = xmalloc(c->wb);
    ck_assert_int_eq(mha_serve_plan_create(&pa, c->storage, c->pb, &c->plan), MHA_OK);
    c->out = xmalloc((size_t)(c->p.T * 4 * 8) * sizeof(float));
    c->lse = xmalloc((size_t)(c->p.T * 4) * sizeof(float));
    fill_sentinel(c->out, (size_t)(c->p.T * 4 * 8) * sizeof(float));
    fill_sentinel(c->lse, (size_t)(c->p.T * 4) * sizeof(float));
}

static void attn_case_free(attn_case *c)
{
    free(c->out);
    free(c->lse);
    free(c->ws);
    free(c->storage);
    serve_prob_free(&c->p);
}

static void expect_attn(attn_case *c, const mha_serve_plan *plan, const mha_batch *b, const mha_kv_cache *kv,
                        const mha_serve_attention_args *a, void *ws, size_t wb, mha_status want, const char *what)
{
    snap s = snap_take(c->out, (size_t)(c->p.T * 32) * sizeof(float), c->lse, (size_t)(c->p.T * 4) * sizeof(float),
                       c->p.cache.k, c->p.k_bytes, c->p.cache.v, c->p.v_bytes);
    mha_status st = mha_serve_attention(plan, b, kv, a, ws, wb);
    require(st == want, "[%s] %s: got %d (%s), expected %d (%s)", isa_now(), what, st, mha_status_message(st),
            want, mha_status_message(want));
    if (ws == c->ws && wb == c->wb) { /* the oracle: same checks, workspace aside */
        st = mha_reference_serve_attention(plan, b, kv, a);
        require(st == want, "[%s] %s: oracle got %d (%s)", isa_now(), what, st, mha_status_message(st));
    }
    if (want != MHA_OK)
        snap_check(&s, what);
    else
        for (int i = 0; i < 4; i++)
            free(s.copy[i]);
}

START_TEST(test_serve_attention_checks)
{
    for (int kind = 0; kind < 4; kind++) {
        attn_case c;
        attn_case_init(&c, kind);
        const mha_serve_attention_args good = {.q = c.p.q, .out = c.out, .lse = c.lse};
        const int paged = kind >= SP_PAGED_2D;
        mha_batch b;
        mha_kv_cache kv;
        mha_serve_attention_args a;
#define RESET() (b = c.p.batch, kv = c.p.cache, a = good)
#define EXPECT(want, what) expect_attn(&c, c.plan, &b, &kv, &a, c.ws, c.wb, want, what)
        int32_t q_start[4], kv_len[3];
        memcpy(q_start, c.p.q_start, sizeof q_start);
        memcpy(kv_len, c.p.kv_len, sizeof kv_len);

        RESET(); b.num_seqs = 2; EXPECT(MHA_ERR_PLAN, "fewer sequences than planned");
        RESET(); kv_len[0]++; b.kv_len = kv_len; EXPECT(MHA_ERR_PLAN, "kv_len other than planned");
        kv_len[0]--;
        RESET(); q_start[1]++; b.q_start = q_start; EXPECT(MHA_ERR_PLAN, "q_start other than planned");
        q_start[1]--;
        RESET(); b.non_causal = 1; EXPECT(MHA_ERR_PLAN, "non_causal other than planned");
        RESET(); b.q_start = NULL; EXPECT(MHA_ERR_NULL_POINTER, "q_start NULL");
        RESET(); kv.dtype = (mha_dtype)1; EXPECT(MHA_ERR_CACHE, "dtype unknown");
        RESET(); kv.num_kv_heads = 1; EXPECT(MHA_ERR_CACHE, "cache with other kv heads");
        RESET(); kv.head_dim_qk = 8; EXPECT(MHA_ERR_CACHE, "cache with other d_k");
        RESET(); kv.head_dim_v = 16; EXPECT(MHA_ERR_CACHE, "cache with other d_v");
        RESET(); kv.k = NULL; EXPECT(MHA_ERR_NULL_POINTER, "k pool NULL");
        RESET(); kv.layout = paged ? MHA_KV_CONTIGUOUS : MHA_KV_PAGED; EXPECT(MHA_ERR_PLAN, "other layout than planned");
        RESET(); a.q = NULL; EXPECT(MHA_ERR_NULL_POINTER, "q NULL");
        RESET(); a.out = NULL; EXPECT(MHA_ERR_NULL_POINTER, "out NULL");
        RESET(); a.scale = NAN; EXPECT(MHA_ERR_SCALE, "scale NaN");
        RESET(); a.out_stride[1] = 4; EXPECT(MHA_ERR_STRIDE, "heads of out overlapping");
        RESET(); a.q_stride[0] = -1; EXPECT(MHA_ERR_STRIDE, "negative q stride");
        RESET(); a.lse = c.out + 3; EXPECT(MHA_ERR_ALIAS, "lse over out");
        RESET(); a.out = (float *)c.p.cache.k; EXPECT(MHA_ERR_ALIAS, "out over the k pool");
        RESET(); a.out = c.p.q + 8; EXPECT(MHA_ERR_ALIAS, "out over q");
        RESET(); expect_attn(&c, c.plan, &b, &kv, &a, c.ws, c.wb - 1, MHA_ERR_WORKSPACE, "workspace short");
        RESET(); expect_attn(&c, c.plan, &b, &kv, &a, NULL, c.wb, MHA_ERR_WORKSPACE, "workspace NULL");
        RESET(); expect_attn(&c, c.plan, &b, &kv, &a, c.p.q, c.wb, MHA_ERR_ALIAS, "workspace over q");
        RESET(); expect_attn(&c, NULL, &b, &kv, &a, c.ws, c.wb, MHA_ERR_NULL_POINTER, "plan NULL");
        RESET(); expect_attn(&c, (const mha_serve_plan *)c.ws, &b, &kv, &a, c.ws, c.wb, MHA_ERR_PLAN, "not a plan");
        if (paged) {
            int32_t *t = c.p.table, saved;
            int64_t e = kind == SP_PAGED_CSR ? c.p.starts[1] : b.block_table_stride; /* sequence 1's first */
            RESET(); saved = t[e]; t[e] = (int32_t)kv.num_blocks; EXPECT(MHA_ERR_CACHE, "block id = num_blocks");
            t[e] = -1; EXPECT(MHA_ERR_CACHE, "block id -1");
            t[e] = saved;
            RESET(); kv.block_size = 32; EXPECT(MHA_ERR_PLAN, "other block size than planned");
            RESET(); kv.num_blocks = 0; EXPECT(MHA_ERR_CACHE, "no blocks");
            RESET(); b.block_table = NULL; EXPECT(MHA_ERR_NULL_POINTER, "block table NULL");
            if (kind == SP_PAGED_CSR) {
                int32_t starts[4];
                memcpy(starts, c.p.starts, sizeof starts);
                RESET(); starts[1]--; b.block_start = starts; EXPECT(MHA_ERR_CACHE, "CSR row 0 shorter than kv_len");
                starts[1] = starts[2] + 1; EXPECT(MHA_ERR_CACHE, "CSR offsets decreasing");
            } else {
                RESET(); b.max_blocks = 2; EXPECT(MHA_ERR_CACHE, "table rows shorter than kv_len (40 keys, 2 blocks)");
                RESET(); b.block_table_stride = b.max_blocks - 1; EXPECT(MHA_ERR_CACHE, "table stride < max_blocks");
                RESET(); b.max_blocks = 0; b.block_table_stride = 0; EXPECT(MHA_ERR_CACHE, "max_blocks 0");
            }
        } else {
            int32_t rows[3];
            memcpy(rows, c.p.rows, sizeof rows);
            RESET(); rows[2] = (int32_t)kv.num_seqs; b.cache_seq = rows; EXPECT(MHA_ERR_CACHE, "cache row out of range");
            rows[2] = -1; EXPECT(MHA_ERR_CACHE, "cache row -1");
            RESET(); kv.max_len = 30; EXPECT(MHA_ERR_CACHE, "max_len below a kv_len");
            RESET(); kv.k_stride[2] = 1; EXPECT(MHA_ERR_STRIDE, "tokens of k overlapping");
            RESET(); kv.v_stride[0] = -3; EXPECT(MHA_ERR_STRIDE, "negative v stride");
        }
        RESET(); EXPECT(MHA_OK, "valid");
#undef EXPECT
#undef RESET
        attn_case_free(&c);
    }
}
END_TEST

/* The planner: lengths, layout and threads. */
START_TEST(test_serve_plan_checks)
{
    int32_t q_start[4] = {0, 1, 6, 8}, kv_len[3] = {40, 20, 17};
    const mha_batch good_b = {.num_seqs = 3, .q_start = q_start, .kv_len = kv_len};
    const mha_kv_cache good_c = {.layout = MHA_KV_PAGED, .num_kv_heads = 2, .head_dim_qk = 16, .head_dim_v = 8,
                                 .num_blocks = 9, .block_size = 16};
    mha_batch b;
    mha_kv_cache c;
    mha_serve_plan_args a;
    size_t pb, wb;
#define RESET() (b = good_b, c = good_c, a = (mha_serve_plan_args){.num_heads = 4, .num_kv_heads = 2, \
    .head_dim_qk = 16, .head_dim_v = 8, .batch = &b, .cache = &c})
#define EXPECT(want, what)                                                                                 \
    do {                                                                                                   \
        mha_status st_ = mha_serve_plan_size(&a, &pb, &wb);                                                \
        require(st_ == (want), "plan %s: got %d (%s)", (what), st_, mha_status_message(st_));             \
    } while (0)
    RESET(); EXPECT(MHA_OK, "valid");
    RESET(); a.batch = NULL; EXPECT(MHA_ERR_NULL_POINTER, "batch NULL");
    RESET(); b.kv_len = NULL; EXPECT(MHA_ERR_NULL_POINTER, "kv_len NULL");
    RESET(); b.num_seqs = 0; EXPECT(MHA_ERR_BAD_SIZE, "no sequences");
    RESET(); q_start[0] = 1; EXPECT(MHA_ERR_BATCH, "q_start[0] = 1");
    q_start[0] = 0;
    RESET(); q_start[2] = 1; EXPECT(MHA_ERR_BATCH, "a sequence without rows");
    q_start[2] = 6;
    RESET(); kv_len[1] = 4; EXPECT(MHA_ERR_BATCH, "q_len 5 > kv_len 4");
    b.non_causal = 1; EXPECT(MHA_OK, "q_len > kv_len, non-causal");
    kv_len[1] = 20;
    RESET(); kv_len[2] = 0; EXPECT(MHA_ERR_BATCH, "kv_len 0");
    kv_len[2] = 17;
    RESET(); c.block_size = 24; EXPECT(MHA_ERR_CACHE, "block size 24");
    RESET(); c.block_size = 0; EXPECT(MHA_ERR_CACHE, "block size 0");
    RESET(); c.layout = (mha_kv_layout)5; EXPECT(MHA_ERR_CACHE, "layout 5");
    RESET(); c.layout = MHA_KV_CONTIGUOUS; c.num_seqs = 3; c.max_len = 39; EXPECT(MHA_ERR_BATCH, "kv_len > max_len");
    c.max_len = 40; EXPECT(MHA_OK, "contiguous");
    RESET(); a.num_threads = -1; EXPECT(MHA_ERR_THREADS, "threads -1");
    RESET(); a.num_threads = MHA_MAX_THREADS + 1; EXPECT(MHA_ERR_THREADS, "threads above the limit");
    RESET(); a.num_kv_heads = 3; EXPECT(MHA_ERR_HEADS, "G does not divide H");
    RESET(); a.head_dim_v = 0; EXPECT(MHA_ERR_BAD_SIZE, "d_v 0");
    RESET();
    ck_assert_int_eq(mha_serve_plan_size(&a, &pb, &wb), MHA_OK);
    void *storage = xmalloc(pb);
    mha_serve_plan *plan = NULL;
    ck_assert_int_eq(mha_serve_plan_create(&a, storage, pb - 1, &plan), MHA_ERR_WORKSPACE);
    ck_assert_ptr_null(plan);
    ck_assert_int_eq(mha_serve_plan_create(&a, storage, pb, &plan), MHA_OK);
    ck_assert_ptr_nonnull(plan);
    free(storage);
#undef EXPECT
#undef RESET
}
END_TEST

/* Appending through a model: slots in range and distinct, plan made for this
 * model; a refused append writes no cache slot. Explicit slots equal to the
 * derived ones store the same bytes as the layer step. */
START_TEST(test_serve_append_checks)
{
    mha_config cfg = mha_config_default(16, 4);
    cfg.num_kv_heads = 2;
    fixture f, other;
    fixture_init(&f, &cfg, 0, 5);
    fixture_create(&f);
    fixture_init(&other, &cfg, 0, 6);
    fixture_create(&other);
    int32_t q_start[3] = {0, 3, 4}, kv_len[2] = {3, 10}, table[4] = {2, 0, 3, 1};
    mha_batch b = {.num_seqs = 2, .q_start = q_start, .kv_len = kv_len, .block_table = table, .max_blocks = 2};
    const int64_t slots_n = 4 * 16, kd = 2 * 4;
    mha_kv_cache kv = {.layout = MHA_KV_PAGED, .num_kv_heads = 2, .head_dim_qk = 4, .head_dim_v = 4,
                       .num_blocks = 4, .block_size = 16};
    kv.k = xmalloc((size_t)(slots_n * kd) * sizeof(float));
    kv.v = xmalloc((size_t)(slots_n * kd) * sizeof(float));
    fill_sentinel(kv.k, (size_t)(slots_n * kd) * sizeof(float));
    fill_sentinel(kv.v, (size_t)(slots_n * kd) * sizeof(float));
    test_rng r = test_rng_seed(3);
    float *x = test_random(&r, 4 * 16, -1, 1), *out = xmalloc(4 * 16 * sizeof(float));
    mha_serve_plan_args pa = {.model = f.model, .batch = &b, .cache = &kv, .num_threads = 2};
    size_t pb, wb;
    ck_assert_int_eq(mha_serve_plan_size(&pa, &pb, &wb), MHA_OK);
    void *storage = xmalloc(pb), *ws = xmalloc(wb), *storage2 = xmalloc(pb);
    mha_serve_plan *plan, *plan_other, *plan_attn;
    ck_assert_int_eq(mha_serve_plan_create(&pa, storage, pb, &plan), MHA_OK);
    pa.model = other.model;
    ck_assert_int_eq(mha_serve_plan_create(&pa, storage2, pb, &plan_other), MHA_OK);
    mha_serve_plan_args pn = {.num_heads = 4, .num_kv_heads = 2, .head_dim_qk = 4, .head_dim_v = 4, .batch = &b,
                              .cache = &kv};
    size_t pb3, wb3;
    ck_assert_int_eq(mha_serve_plan_size(&pn, &pb3, &wb3), MHA_OK);
    void *storage3 = xmalloc(pb3);
    ck_assert_int_eq(mha_serve_plan_create(&pn, storage3, pb3, &plan_attn), MHA_OK);

    /* Rows 0..2 of sequence 0 at positions 0..2 (block 2), row 3 of sequence 1 at 9 (block 3). */
    int64_t slots[4] = {32, 33, 34, 57};
    mha_kv_append_args ap = {.key_src = x, .value_src = x, .slots = slots};
    struct {
        int64_t slot3;
        mha_status want;
        const char *what;
    } cases[] = {{33, MHA_ERR_CACHE, "two rows in one slot"}, {64, MHA_ERR_CACHE, "slot = num_blocks * block_size"},
                 {-1, MHA_ERR_CACHE, "slot -1"}};
    for (int i = 0; i < 3; i++) {
        slots[3] = cases[i].slot3;
        snap s = snap_take(kv.k, (size_t)(slots_n * kd) * sizeof(float), kv.v, (size_t)(slots_n * kd) * sizeof(float),
                           NULL, 1, NULL, 1);
        mha_status st = mha_kv_append(f.model, plan, &b, &kv, &ap, ws, wb);
        require(st == cases[i].want, "append %s: got %s", cases[i].what, mha_status_message(st));
        snap_check(&s, cases[i].what);
    }
    slots[3] = 57;
    mha_serve_layer_args la = {.x = x, .out = out};
    struct {
        const mha_model *m;
        const mha_serve_plan *p;
        const mha_serve_layer_args *la;
        mha_status want;
        const char *what;
    } lc[] = {{f.model, plan_other, &la, MHA_ERR_PLAN, "plan of another model"},
              {f.model, plan_attn, &la, MHA_ERR_PLAN, "plan without a model"},
              {NULL, plan, &la, MHA_ERR_NULL_POINTER, "model NULL"}};
    for (int i = 0; i < 3; i++) {
        snap s = snap_take(kv.k, (size_t)(slots_n * kd) * sizeof(float), kv.v, (size_t)(slots_n * kd) * sizeof(float),
                           out, 4 * 16 * sizeof(float), NULL, 1);
        mha_status st = mha_serve_layer(lc[i].m, lc[i].p, &b, &kv, lc[i].la, ws, wb);
        require(st == lc[i].want, "layer %s: got %s", lc[i].what, mha_status_message(st));
        snap_check(&s, lc[i].what);
    }
    /* Sequences sharing block 0 where both append: refused. */
    int32_t shared[4] = {0, 1, 3, 0};
    b.block_table = shared;
    snap s = snap_take(kv.k, (size_t)(slots_n * kd) * sizeof(float), kv.v, (size_t)(slots_n * kd) * sizeof(float),
                       out, 4 * 16 * sizeof(float), NULL, 1);
    kv_len[1] = 1; /* sequence 1's new row at position 0 of block 0, as sequence 0's first */
    mha_status st = mha_serve_layer(f.model, plan, &b, &kv, &la, ws, wb);
    require(st == MHA_ERR_PLAN, "kv_len changed after planning: %s", mha_status_message(st));
    kv_len[1] = 10;
    shared[2] = 0; /* sequence 1's position 9 is block 0 slot 9; sequence 0 uses block 0 slots 0..2 */
    st = mha_serve_layer(f.model, plan, &b, &kv, &la, ws, wb);
    require(st == MHA_OK, "sharing a block at distinct slots: %s", mha_status_message(st));
    b.block_table = table;
    free(s.copy[0]);
    free(s.copy[1]);
    free(s.copy[2]);
    free(s.copy[3]);

    /* Explicit slots equal to the derived ones: the same cache bytes as the layer. */
    fill_sentinel(kv.k, (size_t)(slots_n * kd) * sizeof(float));
    ck_assert_int_eq(mha_serve_layer(f.model, plan, &b, &kv, &la, ws, wb), MHA_OK);
    void *k1 = xmalloc((size_t)(slots_n * kd) * sizeof(float));
    memcpy(k1, kv.k, (size_t)(slots_n * kd) * sizeof(float));
    fill_sentinel(kv.k, (size_t)(slots_n * kd) * sizeof(float));
    ck_assert_int_eq(mha_kv_append(f.model, plan, &b, &kv, &ap, ws, wb), MHA_OK);
    require(memcmp(k1, kv.k, (size_t)(slots_n * kd) * sizeof(float)) == 0, "append with slots differs from the layer's");
    free(k1);
    free(storage);
    free(storage2);
    free(storage3);
    free(ws);
    free(x);
    free(out);
    free(kv.k);
    free(kv.v);
    fixture_free(&f);
    fixture_free(&other);
}
END_TEST

Suite *suite_serve_validate(void)
{
    Suite *s = suite_create("serve_validate");
    TCase *tc = tcase_create("checks");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_serve_attention_checks);
    tcase_add_test(tc, test_serve_plan_checks);
    tcase_add_test(tc, test_serve_append_checks);
    suite_add_tcase(s, tc);
    return s;
}
