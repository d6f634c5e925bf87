/*
 * Serving attention (mha_serve_attention) against the float64 oracle of each
 * sequence alone: random ragged batches (q_len 1..64 with decodes among them,
 * kv_len up to 5000), GQA, contiguous caches (shuffled rows, padded strides) and
 * paged ones (blocks of 16/32/64 in shuffled order, 2-D and CSR tables); the LSE
 * output; two halves merged by LSE equal the whole; results bitwise independent
 * of the thread count; long prompts over long caches in one sequence. No OpenMP outside START_TEST bodies (Check forks).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_check.h"
#include "serve_prob.h"

/* One random batch of each cache kind. */
START_TEST(test_serve_random_batches)
{
    const int quick = test_quick();
    const struct { int64_t n, H, G, dk, dv; int32_t max_q, max_kv; } shapes[] = {
        {5, 8, 2, 16, 16, 64, 5000}, {6, 4, 4, 24, 40, 64, 2100}, {7, 6, 1, 16, 8, 40, 3000},
        {4, 8, 4, 40, 32, 64, 1500},
    };
    const int64_t block_sizes[] = {16, 32, 64};
    for (int c = 0; c < 4; c++) /* emulated: two kinds per shape, every kind covered */
        for (int kind = quick ? c % 2 : 0; kind < 4; kind += quick ? 2 : 1) {
            test_rng r = test_rng_seed(7000 + (uint64_t)(c * 4 + kind));
            int32_t ql[8], kl[8];
            int32_t max_kv = quick ? shapes[c].max_kv / 4 : shapes[c].max_kv;
            serve_random_lengths(&r, shapes[c].n, shapes[c].max_q, max_kv, quick ? 2000 : 6000, ql, kl);
            kl[1] = max_kv; /* the longest context always in */
            ql[1] = 1;
            serve_prob p;
            int64_t bs = block_sizes[(c + kind) % 3];
            serve_prob_init(&p, 100 + (uint64_t)c, shapes[c].n, shapes[c].H, shapes[c].G, shapes[c].dk,
                            shapes[c].dv, ql, kl, kind, bs);
            float *want = serve_expected(&p, 0.0f);
            float *got = serve_run(&p, 2, 0.0f, NULL);
            char what[128];
            snprintf(what, sizeof what, "[%s] shape %d %s (block %lld)", isa_now(), c, serve_kind_name(kind),
                     (long long)bs);
            compare(got, want, p.T, p.H, 1, p.dv, 1e-3, TOL_BIG, what);
            free(got);
            free(want);
            serve_prob_free(&p);
        }
}
END_TEST

/* Long prompts against long caches: a prompt continued over a long history
 * (several query blocks, its keys packed once for all of them), a fresh prompt,
 * and a decode, in one batch; paged with blocks smaller and larger than the
 * microkernel's key panel, and a strided contiguous cache; V wider than one
 * panel. The random batches above cap q_len x kv_len to keep emulation cheap;
 * this case does not (3 query blocks over 3000 keys: 7 s under qemu-aarch64,
 * 0.3 s native; with MHA_TEST_QUICK shorter). */
START_TEST(test_serve_long_prompts)
{
    const int quick = test_quick();
    const int32_t ql[3] = {quick ? 100 : 160, 70, 1}, kl[3] = {quick ? 1100 : 3000, 70, quick ? 900 : 2500};
    const int kinds[3] = {SP_PAGED_2D, SP_PAGED_CSR, SP_STRIDED};
    const int64_t block_sizes[3] = {16, 64, 0};
    for (int i = quick ? 1 : 0; i < 3; i++) {
        serve_prob p;
        serve_prob_init(&p, 600 + (uint64_t)i, 3, 2, 1, 16, 48, ql, kl, kinds[i], block_sizes[i]);
        float *want = serve_expected(&p, 0.0f);
        float *got = serve_run(&p, 2, 0.0f, NULL);
        char what[96];
        snprintf(what, sizeof what, "[%s] long prompts, %s", isa_now(), serve_kind_name(kinds[i]));
        compare(got, want, p.T, p.H, 1, p.dv, 1e-3, TOL_BIG, what);
        free(got);
        free(want);
        serve_prob_free(&p);
    }
}
END_TEST

/* The public oracle agrees with the per-sequence one, and the LSE output with the
 * oracle's LSE; an explicit scale. */
START_TEST(test_serve_lse_and_oracle)
{
    const int quick = test_quick(); /* emulated: fewer keys, still several chunks */
    const int32_t ql[4] = {1, 37, 3, quick ? 20 : 64}, kl[4] = {quick ? 1100 : 1500, 40, 2049, 300};
    for (int kind = quick ? 2 : 0; kind < 4; kind++) {
        serve_prob p;
        serve_prob_init(&p, 300 + (uint64_t)kind, 4, 8, 2, 32, 16, ql, kl, kind, 32);
        const float scale = 0.3f;
        float *want = serve_expected(&p, scale);
        float *lse = xmalloc((size_t)(p.T * p.H) * sizeof(float));
        float *lse_ref = xmalloc((size_t)(p.T * p.H) * sizeof(float));
        float *ref = xmalloc((size_t)(p.T * p.H * p.dv) * sizeof(float));
        float *got = serve_run(&p, 2, scale, lse);

        mha_serve_plan_args pa = {.num_heads = p.H, .num_kv_heads = p.G, .head_dim_qk = p.dk,
                                  .head_dim_v = p.dv, .batch = &p.batch, .cache = &p.cache};
        size_t pb, wb;
        ck_assert_int_eq(mha_serve_plan_size(&pa, &pb, &wb), MHA_OK);
        void *storage = xmalloc(pb);
        mha_serve_plan *plan;
        ck_assert_int_eq(mha_serve_plan_create(&pa, storage, pb, &plan), MHA_OK);
        mha_serve_attention_args a = {.q = p.q, .out = ref, .lse = lse_ref, .scale = scale};
        ck_assert_int_eq(mha_reference_serve_attention(plan, &p.batch, &p.cache, &a), MHA_OK);
        char what[96];
        snprintf(what, sizeof what, "[%s] %s: public oracle", isa_now(), serve_kind_name(kind));
        compare(ref, want, p.T, p.H, 1, p.dv, 1e-3, 1e-6, what);
        snprintf(what, sizeof what, "[%s] %s: output", isa_now(), serve_kind_name(kind));
        compare(got, want, p.T, p.H, 1, p.dv, 1e-3, TOL_BIG, what);
        for (int64_t i = 0; i < p.T * p.H; i++)
            require(fabsf(lse[i] - lse_ref[i]) <= 1e-4f * (1.0f + fabsf(lse_ref[i])),
                    "[%s] %s: lse[%lld] %g, oracle %g", isa_now(), serve_kind_name(kind), (long long)i,
                    lse[i], lse_ref[i]);
        free(storage);
        free(got);
        free(ref);
        free(lse_ref);
        free(lse);
        free(want);
        serve_prob_free(&p);
    }
}
END_TEST

/* Keys split in two at P: [0, P) non-causal (every row sees all of them, as a
 * shared prefix) and [P, kv_len) causal; merged by LSE they give the whole. */
START_TEST(test_serve_lse_merge_halves)
{
    const int quick = test_quick();
    const int32_t ql[3] = {1, 20, 4}, kl[3] = {quick ? 1500 : 2500, quick ? 300 : 700, 1100},
                  split[3] = {1300, quick ? 250 : 600, 17};
    const int64_t H = 8, G = 2, dk = 32, dv = 24;
    serve_prob whole;
    serve_prob_init(&whole, 400, 3, H, G, dk, dv, ql, kl, SP_PAGED_2D, 16);
    float *lse_w = xmalloc((size_t)(whole.T * H) * sizeof(float));
    float *out_w = serve_run(&whole, 2, 0.0f, lse_w);

    /* The halves as their own problems over the same keys and queries. */
    int32_t kl_a[3], kl_b[3];
    for (int s = 0; s < 3; s++) {
        kl_a[s] = split[s];
        kl_b[s] = kl[s] - split[s];
    }
    serve_prob a, b;
    serve_prob_init(&a, 401, 3, H, G, dk, dv, ql, kl_a, SP_CONTIGUOUS, 0);
    serve_prob_init(&b, 402, 3, H, G, dk, dv, ql, kl_b, SP_PAGED_CSR, 32);
    a.batch.non_causal = 1;
    for (int s = 0; s < 3; s++) {
        memcpy(a.K[s], whole.K[s], (size_t)(kl_a[s] * G * dk) * sizeof(float));
        memcpy(a.V[s], whole.V[s], (size_t)(kl_a[s] * G * dv) * sizeof(float));
        memcpy(b.K[s], whole.K[s] + kl_a[s] * G * dk, (size_t)(kl_b[s] * G * dk) * sizeof(float));
        memcpy(b.V[s], whole.V[s] + kl_a[s] * G * dv, (size_t)(kl_b[s] * G * dv) * sizeof(float));
    }
    memcpy(a.q, whole.q, (size_t)(whole.T * H * dk) * sizeof(float));
    memcpy(b.q, whole.q, (size_t)(whole.T * H * dk) * sizeof(float));
    serve_prob_lay_out(&a);
    serve_prob_lay_out(&b);
    float *lse_a = xmalloc((size_t)(whole.T * H) * sizeof(float));
    float *lse_b = xmalloc((size_t)(whole.T * H) * sizeof(float));
    float *lse_m = xmalloc((size_t)(whole.T * H) * sizeof(float));
    float *out_a = serve_run(&a, 2, 0.0f, lse_a), *out_b = serve_run(&b, 1, 0.0f, lse_b);
    float *merged = xmalloc((size_t)(whole.T * H * dv) * sizeof(float));
    ck_assert_int_eq(mha_lse_merge(whole.T, H, dv, out_a, lse_a, out_b, lse_b, merged, lse_m), MHA_OK);
    char what[64];
    snprintf(what, sizeof what, "[%s] halves merged", isa_now());
    compare(merged, out_w, whole.T, H, 1, dv, 1e-3, TOL, what);
    for (int64_t i = 0; i < whole.T * H; i++)
        require(fabsf(lse_m[i] - lse_w[i]) <= 1e-5f * (1.0f + fabsf(lse_w[i])), "[%s] merged lse[%lld] %g, whole %g",
                isa_now(), (long long)i, lse_m[i], lse_w[i]);
    /* In place, into out_a and lse_a: the same bits. */
    ck_assert_int_eq(mha_lse_merge(whole.T, H, dv, out_a, lse_a, out_b, lse_b, out_a, lse_a), MHA_OK);
    require(memcmp(out_a, merged, (size_t)(whole.T * H * dv) * sizeof(float)) == 0, "in-place merge differs");
    require(memcmp(lse_a, lse_m, (size_t)(whole.T * H) * sizeof(float)) == 0, "in-place merged lse differs");
    free(merged);
    free(out_a);
    free(out_b);
    free(lse_a);
    free(lse_b);
    free(lse_m);
    free(out_w);
    free(lse_w);
    serve_prob_free(&a);
    serve_prob_free(&b);
    serve_prob_free(&whole);
}
END_TEST

/* Empty parts (lse -inf) and NaN in the merge. */
START_TEST(test_lse_merge_edges)
{
    const float oa[4] = {1, 2, NAN, 4}, ob[4] = {5, 6, 7, 8};
    const float la[2] = {-INFINITY, 0.5f}, lb[2] = {0.25f, -INFINITY};
    float o[4], l[2];
    ck_assert_int_eq(mha_lse_merge(2, 1, 2, oa, la, ob, lb, o, l), MHA_OK);
    /* Row 0: only b (a's values ignored); row 1: only a, its NaN kept. */
    ck_assert(o[0] == 5 && o[1] == 6 && isnan(o[2]) && o[3] == 4);
    ck_assert(l[0] == 0.25f && l[1] == 0.5f);
    const float both[2] = {-INFINITY, NAN};
    ck_assert_int_eq(mha_lse_merge(2, 1, 2, oa, both, ob, both, o, l), MHA_OK);
    ck_assert(o[0] == 0 && o[1] == 0 && l[0] == -INFINITY && isnan(o[2]) && isnan(o[3]) && isnan(l[1]));
    ck_assert_int_eq(mha_lse_merge(0, 1, 2, oa, la, ob, lb, o, l), MHA_ERR_BAD_SIZE);
    ck_assert_int_eq(mha_lse_merge(2, 1, 2, NULL, la, ob, lb, o, l), MHA_ERR_NULL_POINTER);
    float buf[6];
    memcpy(buf, oa, sizeof oa);
    ck_assert_int_eq(mha_lse_merge(2, 1, 2, buf, la, ob, lb, buf + 1, l), MHA_ERR_ALIAS);
}
END_TEST

/* 1, 2 and 3 threads: the same bits, for a mixed batch (a long decode split in
 * chunks, prefills in several blocks) on both layouts, with the LSE. */
START_TEST(test_serve_threads_bitwise)
{
    const int quick = test_quick();
    const int32_t ql[4] = {1, quick ? 70 : 130, 2, 7}, kl[4] = {quick ? 2100 : 4100, quick ? 300 : 900, 33, 7};
    for (int kind = 0; kind < 4; kind += 2) {
        serve_prob p;
        serve_prob_init(&p, 500 + (uint64_t)kind, 4, 8, 2, 32, 32, ql, kl, kind, 16);
        float *lse1 = xmalloc((size_t)(p.T * p.H) * sizeof(float));
        float *lse3 = xmalloc((size_t)(p.T * p.H) * sizeof(float));
        float *o1 = serve_run(&p, 1, 0.0f, lse1), *o3 = serve_run(&p, quick ? 2 : 3, 0.0f, lse3);
        float *o2 = quick ? NULL : serve_run(&p, 2, 0.0f, NULL); /* emulated threads are slow */
        const size_t ob = (size_t)(p.T * p.H * p.dv) * sizeof(float);
        require(memcmp(o1, o3, ob) == 0 && (!o2 || memcmp(o1, o2, ob) == 0), "[%s] %s: thread counts differ", isa_now(),
                serve_kind_name(kind));
        require(memcmp(lse1, lse3, (size_t)(p.T * p.H) * sizeof(float)) == 0, "[%s] lse differs by threads",
                isa_now());
        free(o1);
        free(o2);
        free(o3);
        free(lse1);
        free(lse3);
        serve_prob_free(&p);
    }
}
END_TEST

Suite *suite_serve(void)
{
    /* One case per test, so CK_RUN_CASE can pick one. */
    const struct {
        const char *name;
        const TTest *test;
    } tests[] = {{"random batches", test_serve_random_batches}, {"long prompts", test_serve_long_prompts},
                 {"lse and oracle", test_serve_lse_and_oracle},
                 {"merge halves", test_serve_lse_merge_halves}, {"merge edges", test_lse_merge_edges},
                 {"threads", test_serve_threads_bitwise}};
    Suite *s = suite_create("serve");
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        TCase *tc = tcase_create(tests[i].name);
        tcase_set_timeout(tc, 600);
        tcase_add_test(tc, tests[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}
