/* Proves that a forward or attention call allocates nothing once its workspace is
 * given: this binary replaces malloc and friends with counting wrappers around
 * glibc's own allocator and counts the allocations made during a call. The first
 * call of a shape is a warm-up (OpenMP creates its thread team then); the
 * second is counted. Sanitizer builds replace malloc themselves: skipped. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha.h"

#if defined(__SANITIZE_ADDRESS__)
#define ALLOC_HOOKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ALLOC_HOOKS 0
#endif
#endif
#ifndef ALLOC_HOOKS
#define ALLOC_HOOKS 1
#endif

static volatile int counting;
static volatile long allocations;

#if ALLOC_HOOKS
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static void note(void)
{
    if (counting)
        __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t n)
{
    note();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    note();
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    note();
    return __libc_realloc(p, n);
}

void *aligned_alloc(size_t a, size_t n)
{
    note();
    return __libc_memalign(a, n);
}

void *memalign(size_t a, size_t n)
{
    note();
    return __libc_memalign(a, n);
}

int posix_memalign(void **p, size_t a, size_t n)
{
    note();
    void *r = __libc_memalign(a, n);
    if (!r)
        return ENOMEM;
    *p = r;
    return 0;
}

void free(void *p)
{
    __libc_free(p);
}
#endif

static float *filled(size_t n, float scale)
{
    float *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < n; i++)
        x[i] = scale * (float)((i * 2654435761u) % 1000) / 1000.0f - scale / 2;
    return x;
}

/* Allocations made by the second of two identical forward calls. */
static long forward_allocations(const mha_config *cfg, int cross, int masked, int threads)
{
    const int64_t E = cfg->embed_dim, B = 2, Lq = 37, Lk = cross ? 53 : Lq;
    mha_model *m;
    float *w = filled((size_t)(4 * E * E), 0.1f), *b = filled((size_t)(4 * E), 0.1f);
    mha_weights wt = {0};
    wt.in_proj_weight = w;
    wt.in_proj_bias = b;
    wt.out_weight = w + 3 * E * E;
    wt.out_bias = b + 3 * E;
    if (!cfg->has_out_proj)
        wt.out_weight = wt.out_bias = NULL;
    ck_assert_int_eq(mha_model_create(cfg, &wt, &m), MHA_OK);

    float *x = filled((size_t)(B * Lq * E), 1.0f), *c = filled((size_t)(B * Lk * E), 1.0f);
    float *out = malloc((size_t)(B * Lq * E) * sizeof *out);
    uint8_t *keep = malloc((size_t)(Lq * Lk));
    for (int64_t i = 0; i < Lq * Lk; i++)
        keep[i] = (uint8_t)(i % 3 != 0);
    const int32_t lens[2] = {(int32_t)Lk, (int32_t)(Lk / 2)};
    mha_forward_args a = {.batch = B, .len_q = Lq, .len_k = Lk, .query = x, .out = out,
                          .num_threads = threads};
    if (cross) {
        a.key = c;
        a.value = c;
    }
    if (masked) {
        a.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
        a.mask.key_lengths = lens;
        a.mask.bool_mask = (mha_mask_tensor){keep, 0, 0, Lk};
    }
    size_t bytes;
    ck_assert_int_eq(mha_forward_workspace_size(m, B, Lq, Lk, threads, &bytes), MHA_OK);
    void *ws = malloc(bytes);
    ck_assert_int_eq(mha_forward(m, &a, ws, bytes), MHA_OK);

    allocations = 0;
    counting = 1;
    mha_status st = mha_forward(m, &a, ws, bytes);
    counting = 0;
    ck_assert_int_eq(st, MHA_OK);

    free(ws);
    free(keep);
    free(out);
    free(c);
    free(x);
    free(b);
    free(w);
    mha_model_destroy(m);
    return allocations;
}

START_TEST(test_counter_works)
{
    /* The wrappers really count: otherwise every zero below would prove nothing. */
    counting = 1;
    allocations = 0;
    void *volatile p = malloc(16); /* volatile: compilers may elide a malloc/free pair */
    counting = 0;
    free(p);
    ck_assert_int_eq(allocations, 1);
}
END_TEST

START_TEST(test_forward_allocates_nothing)
{
    for (int threads = 1; threads <= 2; threads++)
        for (int variant = 0; variant < 4; variant++) {
            mha_config cfg = mha_config_default(24, 4);
            cfg.has_out_proj = variant != 3;
            long n = forward_allocations(&cfg, variant == 1, variant == 2, threads);
            ck_assert_msg(n == 0, "forward variant %d, %d threads: %ld allocations", variant, threads, n);
        }
}
END_TEST

START_TEST(test_attention_allocates_nothing)
{
    const int64_t B = 2, H = 4, G = 2, L = 41, d = 16;
    float *q = filled((size_t)(B * H * L * d), 1.0f), *kv = filled((size_t)(B * G * L * d), 1.0f);
    float *o = malloc((size_t)(B * H * L * d) * sizeof *o);
    mha_attention_args a = {.batch = B, .num_heads = H, .num_kv_heads = G, .len_q = L, .len_k = L,
                            .head_dim_qk = d, .head_dim_v = d, .num_threads = 2};
    a.q = q;
    a.k = kv;
    a.v = kv;
    a.out = o;
    const int64_t sq[3] = {H * L * d, L * d, d}, skv[3] = {G * L * d, L * d, d};
    memcpy(a.q_stride, sq, sizeof sq);
    memcpy(a.out_stride, sq, sizeof sq);
    memcpy(a.k_stride, skv, sizeof skv);
    memcpy(a.v_stride, skv, sizeof skv);
    a.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
    size_t bytes;
    ck_assert_int_eq(mha_attention_workspace_size(&a, &bytes), MHA_OK);
    void *ws = malloc(bytes);
    ck_assert_int_eq(mha_attention(&a, ws, bytes), MHA_OK);
    allocations = 0;
    counting = 1;
    mha_status st = mha_attention(&a, ws, bytes);
    counting = 0;
    ck_assert_int_eq(st, MHA_OK);
    ck_assert_msg(allocations == 0, "attention: %ld allocations", allocations);
    free(ws);
    free(o);
    free(kv);
    free(q);
}
END_TEST

/* Serving: plan (into caller storage), append, the layer step and attention with
 * LSE on a paged cache, for a batch of a prefill and two decodes (one split in
 * chunks), each counted on its second call. */
START_TEST(test_serving_allocates_nothing)
{
    mha_config cfg = mha_config_default(32, 4);
    cfg.num_kv_heads = 2;
    mha_model *m;
    float *w = filled(4 * 32 * 32, 0.1f), *b = filled(4 * 32, 0.1f);
    mha_weights wt = {.in_proj_weight = w, .in_proj_bias = b, .out_weight = w + 3 * 32 * 32, .out_bias = b + 96};
    ck_assert_int_eq(mha_model_create(&cfg, &wt, &m), MHA_OK);
    int32_t q_start[4] = {0, 70, 71, 73}, kv_len[3] = {70, 2100, 40}, table[3 * 34];
    for (int i = 0; i < 3 * 34; i++)
        table[i] = i;
    mha_batch batch = {.num_seqs = 3, .q_start = q_start, .kv_len = kv_len, .block_table = table, .max_blocks = 34};
    mha_kv_cache kv = {.layout = MHA_KV_PAGED, .num_kv_heads = 2, .head_dim_qk = 8, .head_dim_v = 8,
                       .num_blocks = 3 * 34, .block_size = 64};
    kv.k = filled(3 * 34 * 64 * 16, 1.0f);
    kv.v = filled(3 * 34 * 64 * 16, 1.0f);
    float *x = filled(73 * 32, 1.0f), *out = malloc(73 * 32 * sizeof(float)), *lse = malloc(73 * 4 * sizeof(float));
    mha_serve_plan_args pa = {.model = m, .batch = &batch, .cache = &kv, .num_threads = 2};
    size_t pb, wb;
    ck_assert_int_eq(mha_serve_plan_size(&pa, &pb, &wb), MHA_OK);
    void *storage = malloc(pb), *ws = malloc(wb);
    mha_serve_plan *plan;
    mha_kv_append_args ap = {.key_src = x, .value_src = x};
    mha_serve_layer_args la = {.x = x, .out = out};
    mha_serve_attention_args aa = {.q = x, .out = out, .lse = lse};
    mha_status st[6];
    for (int round = 0; round < 2; round++) { /* ck_assert allocates: statuses checked after */
        allocations = 0;
        counting = round;
        st[0] = mha_serve_plan_size(&pa, &pb, &wb);
        st[1] = mha_serve_plan_create(&pa, storage, pb, &plan);
        st[2] = mha_kv_append(m, plan, &batch, &kv, &ap, ws, wb);
        st[3] = mha_serve_layer(m, plan, &batch, &kv, &la, ws, wb);
        st[4] = mha_serve_attention(plan, &batch, &kv, &aa, ws, wb);
        st[5] = mha_lse_merge(73, 4, 8, out, lse, out, lse, out, lse);
        counting = 0;
        for (int i = 0; i < 6; i++)
            ck_assert_msg(st[i] == MHA_OK, "serving call %d: %s", i, mha_status_message(st[i]));
    }
    ck_assert_msg(allocations == 0, "serving: %ld allocations", allocations);
    free(storage);
    free(ws);
    free(lse);
    free(out);
    free(x);
    free(kv.k);
    free(kv.v);
    free(w);
    free(b);
    mha_model_destroy(m);
}
END_TEST

/* The additive and concat modules: the second of two calls (every mask, weights
 * output, 2 threads) allocates nothing. */
START_TEST(test_additive_allocates_nothing)
{
    const int64_t B = 2, Lq = 9, Lk = 300, D = 12, h = 40, Dv = 7, L = 11;
    float *w = filled((size_t)(h * D * 2 + h), 0.3f), *x = filled((size_t)(B * Lk * D), 1.0f);
    float *out = malloc((size_t)(B * Lq * Lk) * sizeof *out), *wts = malloc((size_t)(B * Lq * Lk) * sizeof *wts);
    const int32_t lens[2] = {(int32_t)Lk, 5}, rows[18] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    const mha_additive_config ac = {.query_dim = D, .hidden_dim = h};
    const mha_additive_weights aw = {.q_weight = w, .k_weight = w + h * D, .v_weight = w + 2 * h * D};
    mha_additive_model *am;
    ck_assert_int_eq(mha_additive_model_create(&ac, &aw, &am), MHA_OK);
    mha_additive_args a = {.batch = B, .len_q = Lq, .len_k = Lk, .value_dim = Dv, .query = x,
                           .key = x, .value = x, .row_key_lengths = rows, .out = out,
                           .weights = wts, .num_threads = 2};
    a.mask.key_lengths = lens;
    a.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
    size_t bytes;
    ck_assert_int_eq(mha_additive_workspace_size(am, B, Lq, Lk, 2, &bytes), MHA_OK);
    void *ws = malloc(bytes);
    ck_assert_int_eq(mha_additive_forward(am, &a, ws, bytes), MHA_OK);
    allocations = 0;
    counting = 1;
    mha_status st = mha_additive_forward(am, &a, ws, bytes);
    counting = 0;
    ck_assert_int_eq(st, MHA_OK);
    ck_assert_msg(allocations == 0, "additive: %ld allocations", allocations);
    free(ws);
    mha_additive_model_destroy(am);

    const mha_concat_config cc = {.query_dim = D, .max_len = L};
    const mha_concat_weights cw = {.attn_weight = w, .combine_weight = w + L * 2 * D};
    mha_concat_model *cm;
    ck_assert_int_eq(mha_concat_model_create(&cc, &cw, &cm), MHA_OK);
    mha_concat_args c = {.batch = B, .query = x, .key = x, .value = x, .out = out, .weights = wts,
                         .num_threads = 2};
    ck_assert_int_eq(mha_concat_workspace_size(cm, B, 2, &bytes), MHA_OK);
    ws = malloc(bytes);
    ck_assert_int_eq(mha_concat_forward(cm, &c, ws, bytes), MHA_OK);
    allocations = 0;
    counting = 1;
    st = mha_concat_forward(cm, &c, ws, bytes);
    counting = 0;
    ck_assert_int_eq(st, MHA_OK);
    ck_assert_msg(allocations == 0, "concat: %ld allocations", allocations);
    free(ws);
    mha_concat_model_destroy(cm);
    free(wts);
    free(out);
    free(x);
    free(w);
}
END_TEST

int main(void)
{
    if (!ALLOC_HOOKS) {
        puts("SKIP: a sanitizer replaces malloc in this build");
        return 77;
    }
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("no allocation in calls");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_counter_works);
    tcase_add_test(tc, test_forward_allocates_nothing);
    tcase_add_test(tc, test_attention_allocates_nothing);
    tcase_add_test(tc, test_serving_allocates_nothing);
    tcase_add_test(tc, test_additive_allocates_nothing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
