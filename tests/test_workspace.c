/*
 * Workspace sizes: the growth laws mha.h states (decoding packs nothing, longer
 * queries pack one (batch, kv head) group's K and V), and the shape-only bounds
 * (mha_attention_workspace_bound, mha_forward_workspace_size) covering every
 * smaller call. K and V are broadcast with zero strides, so a million keys cost a
 * few bytes of tensors. No OpenMP outside START_TEST bodies (Check forks).
 */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "testutil.h"

/* Attention arguments with every input broadcast (zero strides: one row each) and
 * a dense [B, H, Lq, d_v] output at out. */
static mha_attention_args broadcast_args(const mha_attention_shape *sh, const float *in, float *out)
{
    mha_attention_args a = {
        .batch = sh->batch, .num_heads = sh->num_heads, .num_kv_heads = sh->num_kv_heads,
        .len_q = sh->len_q, .len_k = sh->len_k, .head_dim_qk = sh->head_dim_qk,
        .head_dim_v = sh->head_dim_v, .q = in, .k = in, .v = in, .out = out,
        .num_threads = sh->num_threads,
    };
    a.out_stride[2] = sh->head_dim_v;
    a.out_stride[1] = sh->len_q * sh->head_dim_v;
    a.out_stride[0] = sh->num_heads * a.out_stride[1];
    return a;
}

static size_t exact_size(const mha_attention_shape *sh, const float *in, float *out)
{
    mha_attention_args a = broadcast_args(sh, in, out);
    size_t bytes = 0;
    mha_status st = mha_attention_workspace_size(&a, &bytes);
    require(st == MHA_OK, "workspace size B%lld H%lld G%lld Lq%lld Lk%lld: %s", (long long)sh->batch,
            (long long)sh->num_heads, (long long)sh->num_kv_heads, (long long)sh->len_q,
            (long long)sh->len_k, mha_status_message(st));
    return bytes;
}

static int64_t round_up(int64_t n, int64_t m)
{
    return (n + m - 1) / m * m;
}

/* The per-thread bound S of mha.h. */
static int64_t per_thread_bound(int64_t dk, int64_t dv)
{
    int64_t nr = (int64_t)mha_kernels_active()->gemm_nr;
    return 4 * (33000 + 288 * dk + 64 * round_up(dv, nr));
}

/* Decoding, H = 8, G = 2, d = 64 (the case: 67 MB at 131072 keys where
 * 0.3 MB are touched): the chunk states only, 4*B*H*Lq*ceil(Lk/1024)*(d_v'+2). */
START_TEST(test_decode_workspace_law)
{
    static float in[64], out[8 * 4 * 64];
    const int64_t nr = (int64_t)mha_kernels_active()->gemm_nr;
    for (int64_t lq = 1; lq <= 4; lq += 3) {
        mha_attention_shape sh = {.batch = 1, .num_heads = 8, .num_kv_heads = 2, .len_q = lq,
                                  .head_dim_qk = 64, .head_dim_v = 64, .num_threads = 2};
        int64_t sizes[2], lens[2] = {131072, 1 << 20};
        for (int i = 0; i < 2; i++) {
            sh.len_k = lens[i];
            sizes[i] = (int64_t)exact_size(&sh, in, out);
            int64_t states = 4 * 8 * lq * ((lens[i] + 1023) / 1024) * (round_up(64, nr) + 2);
            require(sizes[i] >= states && sizes[i] <= states + 2 * per_thread_bound(64, 64) + 64,
                    "decode Lq %lld Lk %lld: %lld bytes, law %lld + threads", (long long)lq,
                    (long long)lens[i], (long long)sizes[i], (long long)states);
        }
        int64_t growth = 4 * 8 * lq * (1024 - 128) * (round_up(64, nr) + 2);
        require(sizes[1] - sizes[0] == growth, "decode Lq %lld: grew %lld bytes from 2^17 to 2^20 keys, law %lld",
                (long long)lq, (long long)(sizes[1] - sizes[0]), (long long)growth);
    }
}
END_TEST

/* Longer queries: one group's packed K and V, P = 4*(Lk'*d_k + Lk*d_v'), once it
 * exceeds the 4 MiB round budget; below it, every group up to the budget. */
START_TEST(test_prefill_workspace_law)
{
    static float in[64], out[8 * 16 * 64];
    const int64_t nr = (int64_t)mha_kernels_active()->gemm_nr, dv = 48, dk = 64;
    mha_attention_shape sh = {.batch = 1, .num_heads = 8, .num_kv_heads = 2, .len_q = 16,
                              .head_dim_qk = dk, .head_dim_v = dv, .num_threads = 2};
    const int64_t lens[] = {1000, 3001, 131072, 262144};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        sh.len_k = lens[i];
        int64_t p = round_up(4 * (round_up(lens[i], nr) * dk + lens[i] * round_up(dv, nr)), 64);
        int64_t all = 2 * p, budget = (int64_t)4 << 20;
        int64_t kv = all < (p > budget ? p : budget) ? all : (p > budget ? p : budget);
        int64_t size = (int64_t)exact_size(&sh, in, out);
        require(size >= kv + 64 && size <= kv + 64 + 2 * per_thread_bound(dk, dv),
                "prefill Lk %lld: %lld bytes, law %lld + threads", (long long)lens[i], (long long)size,
                (long long)kv);
    }
    /* Past the budget it grows by 4*(d_k + d_v') bytes per key, one group's worth. */
    sh.len_k = 131072;
    int64_t a = (int64_t)exact_size(&sh, in, out);
    sh.len_k = 262144;
    int64_t b = (int64_t)exact_size(&sh, in, out);
    require(b - a == 4 * (dk + round_up(dv, nr)) * 131072, "prefill grew %lld bytes over 131072 keys",
            (long long)(b - a));
}
END_TEST

static int64_t pick(test_rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(test_rng_uniform(r, 0.0f, 1.0f) * (float)(hi - lo + 1)) % (hi - lo + 1);
}

/* The shape-only bound covers the exact need of every smaller call: random shapes
 * (query rows past the point where the tiles stop changing, decoding and longer
 * queries), each against random smaller ones. */
START_TEST(test_shape_bound_covers_smaller)
{
    test_rng r = test_rng_seed(31);
    static float in[128];
    const int64_t heads[][2] = {{1, 1}, {2, 1}, {4, 2}, {8, 8}, {8, 1}, {12, 4}};
    float *out = xmalloc((size_t)3 * 12 * 2600 * 80 * sizeof(float));
    int trials = test_quick() ? 30 : 150;
    for (int t = 0; t < trials; t++) {
        const int64_t *hg = heads[pick(&r, 0, 5)];
        mha_attention_shape big = {
            .batch = pick(&r, 1, 3), .num_heads = hg[0], .num_kv_heads = hg[1],
            .len_q = t % 3 == 0 ? pick(&r, 1, 6) : pick(&r, 1, 2600), .len_k = pick(&r, 1, 9000),
            .head_dim_qk = pick(&r, 1, 80), .head_dim_v = pick(&r, 1, 80),
            .masks = (unsigned)pick(&r, 0, MHA_MASK_ALL), .num_threads = (int)pick(&r, 0, 6),
        };
        size_t bound;
        ck_assert_int_eq(mha_attention_workspace_bound(&big, &bound), MHA_OK);
        for (int u = 0; u < 12; u++) {
            mha_attention_shape small = big;
            small.batch = pick(&r, 1, big.batch);
            small.len_q = u == 0 ? big.len_q : pick(&r, 1, big.len_q);
            small.len_k = u == 0 ? big.len_k : pick(&r, 1, big.len_k);
            small.head_dim_qk = pick(&r, 1, big.head_dim_qk);
            small.head_dim_v = pick(&r, 1, big.head_dim_v);
            small.num_threads = big.num_threads ? (int)pick(&r, 1, big.num_threads) : 0;
            size_t need = exact_size(&small, in, out);
            require(need <= bound,
                    "bound of B%lld H%lld G%lld Lq%lld Lk%lld dk%lld dv%lld T%d: %zu bytes; "
                    "B%lld Lq%lld Lk%lld dk%lld dv%lld T%d needs %zu",
                    (long long)big.batch, (long long)big.num_heads, (long long)big.num_kv_heads,
                    (long long)big.len_q, (long long)big.len_k, (long long)big.head_dim_qk,
                    (long long)big.head_dim_v, big.num_threads, bound, (long long)small.batch,
                    (long long)small.len_q, (long long)small.len_k, (long long)small.head_dim_qk,
                    (long long)small.head_dim_v, small.num_threads, need);
        }
    }
    free(out);
}
END_TEST

/* Real calls in a workspace of exactly the bound's size: attention (decoding and
 * not, with masks) and the forward (its size query is shape-only too). */
START_TEST(test_bound_serves_real_calls)
{
    test_rng r = test_rng_seed(32);
    const int64_t B = 2, H = 4, G = 2, LQ = 9, LK = 37, D = 8;
    mha_attention_shape big = {.batch = B, .num_heads = H, .num_kv_heads = G, .len_q = LQ, .len_k = LK,
                               .head_dim_qk = D, .head_dim_v = D, .masks = MHA_MASK_ALL, .num_threads = 2};
    size_t bound;
    ck_assert_int_eq(mha_attention_workspace_bound(&big, &bound), MHA_OK);
    void *ws = xmalloc(bound);
    float *q = test_random(&r, (size_t)(B * H * LQ * D), -1, 1);
    float *k = test_random(&r, (size_t)(B * G * LK * D), -1, 1);
    float *v = test_random(&r, (size_t)(B * G * LK * D), -1, 1);
    float *out = xmalloc((size_t)(B * H * LQ * D) * sizeof(float));
    uint8_t *bm = xmalloc((size_t)(LQ * LK));
    memset(bm, 1, (size_t)(LQ * LK));
    const int32_t lens[2] = {30, 37};
    const int64_t lqs[] = {1, 3, 4, 5, 9}, lks[] = {1, 20, 37};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 3; j++) {
            int64_t lq = lqs[i], lk = lks[j];
            mha_attention_args a = {
                .batch = B, .num_heads = H, .num_kv_heads = G, .len_q = lq, .len_k = lk,
                .head_dim_qk = D, .head_dim_v = D, .num_threads = 2,
                .q = q, .q_stride = {H * LQ * D, LQ * D, D},
                .k = k, .k_stride = {G * LK * D, LK * D, D},
                .v = v, .v_stride = {G * LK * D, LK * D, D},
                .out = out, .out_stride = {H * lq * D, lq * D, D},
            };
            a.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
            a.mask.bool_mask = (mha_mask_tensor){bm, 0, 0, lk};
            int32_t kl[2] = {lens[0] < lk ? lens[0] : (int32_t)lk, (int32_t)lk};
            a.mask.key_lengths = kl;
            mha_status st = mha_attention(&a, ws, bound);
            require(st == MHA_OK, "attention Lq %lld Lk %lld in the bound's workspace: %s", (long long)lq,
                    (long long)lk, mha_status_message(st));
        }
    free(bm);
    free(out);
    free(q);
    free(k);
    free(v);
    free(ws);

    fixture f;
    mha_config cfg = mha_config_default(16, 4);
    cfg.num_kv_heads = 2;
    fixture_init(&f, &cfg, 0, 33);
    fixture_create(&f);
    size_t fbytes;
    ck_assert_int_eq(mha_forward_workspace_size(f.model, 2, 40, 40, 2, &fbytes), MHA_OK);
    ws = xmalloc(fbytes);
    float *x = test_random(&r, 2 * 40 * 16, -1, 1), *y = xmalloc(2 * 40 * 16 * sizeof(float));
    const int64_t flq[] = {1, 2, 4, 5, 17, 40};
    for (size_t i = 0; i < 6; i++)
        for (int64_t b = 1; b <= 2; b++) {
            mha_forward_args a = {.batch = b, .len_q = flq[i], .len_k = 40, .query = x, .key = x,
                                  .value = x, .out = y, .num_threads = 2};
            mha_status st = mha_forward(f.model, &a, ws, fbytes);
            require(st == MHA_OK, "forward B%lld Lq %lld in the size query's workspace: %s", (long long)b,
                    (long long)flq[i], mha_status_message(st));
        }
    free(x);
    free(y);
    free(ws);
    fixture_free(&f);
}
END_TEST

START_TEST(test_shape_bound_args)
{
    const mha_attention_shape good = {.batch = 2, .num_heads = 4, .num_kv_heads = 2, .len_q = 5,
                                      .len_k = 6, .head_dim_qk = 8, .head_dim_v = 4};
    size_t bytes = 777;
    ck_assert_int_eq(mha_attention_workspace_bound(NULL, &bytes), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_attention_workspace_bound(&good, NULL), MHA_ERR_NULL_POINTER);
    struct {
        const char *what;
        mha_status want;
        mha_attention_shape s;
    } cases[] = {
        {"batch 0", MHA_ERR_BAD_SIZE, good}, {"len_k -1", MHA_ERR_BAD_SIZE, good},
        {"d_v 0", MHA_ERR_BAD_SIZE, good},   {"kv heads -1", MHA_ERR_BAD_SIZE, good},
        {"G 3", MHA_ERR_HEADS, good},        {"threads -1", MHA_ERR_THREADS, good},
        {"threads 257", MHA_ERR_THREADS, good}, {"mask bit 16", MHA_ERR_MASK, good},
        {"batch 2^40", MHA_ERR_OVERFLOW, good}, {"len_k 2^61", MHA_ERR_OVERFLOW, good},
    };
    cases[0].s.batch = 0;
    cases[1].s.len_k = -1;
    cases[2].s.head_dim_v = 0;
    cases[3].s.num_kv_heads = -1;
    cases[4].s.num_kv_heads = 3;
    cases[5].s.num_threads = -1;
    cases[6].s.num_threads = MHA_MAX_THREADS + 1;
    cases[7].s.masks = 16;
    cases[8].s.batch = (int64_t)1 << 40;
    cases[9].s.len_k = (int64_t)1 << 61;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mha_status st = mha_attention_workspace_bound(&cases[i].s, &bytes);
        require(st == cases[i].want, "bound %s: got %s, expected %s", cases[i].what,
                mha_status_message(st), mha_status_message(cases[i].want));
        require(bytes == 777, "bound %s: failed but wrote *bytes", cases[i].what);
    }
    mha_attention_shape max = good;
    max.num_threads = MHA_MAX_THREADS;
    ck_assert_int_eq(mha_attention_workspace_bound(&max, &bytes), MHA_OK);
}
END_TEST

Suite *suite_workspace(void)
{
    Suite *s = suite_create("workspace");
    TCase *tc = tcase_create("workspace");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_decode_workspace_law);
    tcase_add_test(tc, test_prefill_workspace_law);
    tcase_add_test(tc, test_shape_bound_covers_smaller);
    tcase_add_test(tc, test_bound_serves_real_calls);
    tcase_add_test(tc, test_shape_bound_args);
    suite_add_tcase(s, tc);
    return s;
}
