/*
 * The public API's contract (engine/include/mha.h) outside the numerics and the
 * argument checks (test_validate.c):
 *   - status messages, ISA names, config defaults and their resolution;
 *   - the sinusoidal positional encoding against its formula, computed here;
 *   - workspace reuse across shapes and thread-count independence.
 * No OpenMP and no mha_forward / mha_attention outside START_TEST bodies: Check
 * forks each test and libgomp is not fork-safe.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ------------------------------------------------------------ model fixture */

/* ------------------------------------------------------- statuses, names */

START_TEST(test_status_messages)
{
    const int n = MHA_ERR_PLAN + 1; /* the last status */
    for (int i = 0; i < n; i++) {
        const char *m = mha_status_message((mha_status)i);
        require(m != NULL && strlen(m) > 3, "status %d: empty message", i);
        for (int j = 0; j < i; j++)
            require(strcmp(m, mha_status_message((mha_status)j)) != 0,
                          "statuses %d and %d share the message \"%s\"", j, i, m);
    }
    /* Out of range: still a sentence, and never the success message. */
    const int bad[] = {-1, n, 1000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *m = mha_status_message((mha_status)bad[i]);
        require(m != NULL && *m, "status %d: NULL or empty message", bad[i]);
        require(strcmp(m, mha_status_message(MHA_OK)) != 0,
                      "out-of-range status %d reads as success", bad[i]);
    }
}
END_TEST

START_TEST(test_isa_names)
{
    ck_assert_str_eq(mha_isa_name(MHA_ISA_SCALAR), "scalar");
    ck_assert_str_eq(mha_isa_name(MHA_ISA_AVX2), "avx2");
    ck_assert_str_eq(mha_isa_name(MHA_ISA_AVX512), "avx512");
    ck_assert_str_eq(mha_isa_name(MHA_ISA_NEON), "neon");
    ck_assert_str_eq(mha_isa_name((mha_isa)4), "unknown");
    ck_assert_str_eq(mha_isa_name((mha_isa)-1), "unknown");
    mha_runtime_info info;
    mha_get_runtime_info(&info);
    ck_assert_int_eq(info.active_isa, mha_active_isa());
    ck_assert_str_ne(mha_isa_name(info.active_isa), "unknown");
    ck_assert_str_ne(mha_isa_name(info.best_isa), "unknown");
    require(memchr(info.cpu_name, 0, sizeof info.cpu_name) && info.cpu_name[0],
                  "cpu_name empty or unterminated");
    require(memchr(info.choice, 0, sizeof info.choice) && info.choice[0],
                  "choice empty or unterminated");
    require(memchr(info.features, 0, sizeof info.features) != NULL, "features unterminated");
}
END_TEST

START_TEST(test_config_default)
{
    mha_config c = mha_config_default(48, 6);
    ck_assert_int_eq(c.embed_dim, 48);
    ck_assert_int_eq(c.num_heads, 6);
    ck_assert_int_eq(c.num_kv_heads, 0);
    ck_assert_int_eq(c.kdim, 0);
    ck_assert_int_eq(c.vdim, 0);
    ck_assert_int_eq(c.head_dim_qk, 0);
    ck_assert_int_eq(c.head_dim_v, 0);
    ck_assert_int_eq(c.out_dim, 0);
    ck_assert_int_eq(c.has_bias, 1);
    ck_assert_int_eq(c.has_out_proj, 1);
    require(c.scale == 0.0f, "default scale %g, expected 0 (= 1/sqrt(d_k))", (double)c.scale);
}
END_TEST

START_TEST(test_model_config_resolves_defaults)
{
    mha_config got;
    fixture f;

    /* nn.MultiheadAttention(12, 3): G = H, d = E/H = 4, scale 1/2, kdim = vdim = O = E. */
    mha_config c = mha_config_default(12, 3);
    fixture_init(&f, &c, 1, 1);
    fixture_create(&f);
    ck_assert_int_eq(mha_model_config(f.model, &got), MHA_OK);
    ck_assert_int_eq(got.embed_dim, 12);
    ck_assert_int_eq(got.num_heads, 3);
    ck_assert_int_eq(got.num_kv_heads, 3);
    ck_assert_int_eq(got.kdim, 12);
    ck_assert_int_eq(got.vdim, 12);
    ck_assert_int_eq(got.head_dim_qk, 4);
    ck_assert_int_eq(got.head_dim_v, 4);
    ck_assert_int_eq(got.out_dim, 12);
    ck_assert_int_eq(got.has_bias, 1);
    ck_assert_int_eq(got.has_out_proj, 1);
    require(got.scale == 0.5f, "scale %.9g, expected 0.5", (double)got.scale);
    fixture_free(&f);

    /* Everything explicit, GQA, no out projection: out_dim is H*d_v, scale kept. */
    c = mha_config_default(10, 4);
    c.num_kv_heads = 2;
    c.kdim = 7;
    c.vdim = 5;
    c.head_dim_qk = 3;
    c.head_dim_v = 6;
    c.has_bias = 0;
    c.has_out_proj = 0;
    c.scale = 0.25f;
    fixture_init(&f, &c, 0, 2);
    fixture_create(&f);
    ck_assert_int_eq(mha_model_config(f.model, &got), MHA_OK);
    ck_assert_int_eq(got.num_kv_heads, 2);
    ck_assert_int_eq(got.kdim, 7);
    ck_assert_int_eq(got.vdim, 5);
    ck_assert_int_eq(got.head_dim_qk, 3);
    ck_assert_int_eq(got.head_dim_v, 6);
    ck_assert_int_eq(got.out_dim, 4 * 6);
    ck_assert_int_eq(got.has_bias, 0);
    ck_assert_int_eq(got.has_out_proj, 0);
    require(got.scale == 0.25f, "scale %.9g, expected 0.25", (double)got.scale);
    fixture_free(&f);

    /* Explicit head dims with E not divisible by H; out_dim != E; scale 1/sqrt(d_k). */
    c = mha_config_default(10, 3);
    c.head_dim_qk = 9;
    c.head_dim_v = 2;
    c.out_dim = 5;
    fixture_init(&f, &c, 0, 3);
    fixture_create(&f);
    ck_assert_int_eq(mha_model_config(f.model, &got), MHA_OK);
    ck_assert_int_eq(got.out_dim, 5);
    ck_assert_int_eq(got.head_dim_qk, 9);
    require(fabsf(got.scale - 1.0f / 3.0f) <= 1e-7f, "scale %.9g, expected 1/3", (double)got.scale);
    ck_assert_int_eq(mha_model_config(NULL, &got), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_model_config(f.model, NULL), MHA_ERR_NULL_POINTER);
    fixture_free(&f);

    mha_model_destroy(NULL); /* a no-op */
}
END_TEST

/* ---------------------------------------------------- positional encoding */

static double pe_formula(int64_t pos, int64_t col, int64_t dim)
{
    double two_i = (double)(col / 2 * 2);
    double angle = (double)pos / pow(10000.0, two_i / (double)dim);
    return col % 2 == 0 ? sin(angle) : cos(angle);
}

START_TEST(test_positional_encoding_table)
{
    const int64_t dims[] = {1, 2, 7, 64, 3, 33};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        for (int64_t len = 1; len <= 50; len += (len < 5 ? 1 : 9)) {
            int64_t d = dims[di];
            size_t n = (size_t)(len * d);
            float *t = xmalloc((n + 1) * sizeof(float));
            fill_sentinel(t, (n + 1) * sizeof(float));
            ck_assert_int_eq(mha_positional_encoding(len, d, t), MHA_OK);
            /* The value is a float rounding of a double, so within one float ulp of
             * 1 (every entry is in [-1, 1]). */
            for (int64_t p = 0; p < len; p++)
                for (int64_t cidx = 0; cidx < d; cidx++) {
                    double want = pe_formula(p, cidx, d), got = t[p * d + cidx];
                    require(fabs(got - want) <= 1.2e-7, "PE[len=%lld, D=%lld][%lld, %lld] = %.9g, want %.9g",
                                  (long long)len, (long long)d, (long long)p, (long long)cidx, got, want);
                }
            require(is_sentinel(t + n, sizeof(float)), "PE D=%lld L=%lld wrote past the table",
                          (long long)d, (long long)len);
            free(t);
        }
    }
    /* A few landmarks. */
    float t[2 * 4];
    ck_assert_int_eq(mha_positional_encoding(2, 4, t), MHA_OK);
    require(t[0] == 0.0f && t[1] == 1.0f && t[2] == 0.0f && t[3] == 1.0f, "PE row 0 is not (0,1,0,1)");
    require(fabsf(t[4] - sinf(1.0f)) < 1e-7f && fabsf(t[5] - cosf(1.0f)) < 1e-7f, "PE[1, 0..1]");
    require(fabs(t[6] - sin(0.01)) < 1e-8 && fabs(t[7] - cos(0.01)) < 1e-7, "PE[1, 2..3]");
}
END_TEST

START_TEST(test_positional_encoding_add)
{
    const int64_t B = 3, dims[] = {1, 7, 64};
    for (int di = 0; di < 3; di++) {
        int64_t D = dims[di], L = 11;
        size_t n = (size_t)(B * L * D);
        test_rng r = test_rng_seed(20 + (uint64_t)di);
        float *x = test_random(&r, n, -2, 2), *orig = xmalloc(n * sizeof(float));
        float *tab = xmalloc((size_t)(L * D) * sizeof(float));
        memcpy(orig, x, n * sizeof(float));
        ck_assert_int_eq(mha_positional_encoding(L, D, tab), MHA_OK);
        ck_assert_int_eq(mha_add_positional_encoding(x, B, L, D), MHA_OK);
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < L * D; i++) {
                float want = orig[b * L * D + i] + tab[i];
                require(x[b * L * D + i] == want, "add PE D=%lld b=%lld elem %lld: %.9g != %.9g",
                              (long long)D, (long long)b, (long long)i, (double)x[b * L * D + i],
                              (double)want);
            }
        free(x);
        free(orig);
        free(tab);
    }

    float buf[16];
    fill_sentinel(buf, sizeof buf);
    ck_assert_int_eq(mha_positional_encoding(4, 4, NULL), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_positional_encoding(0, 4, buf), MHA_ERR_BAD_SIZE);
    ck_assert_int_eq(mha_positional_encoding(4, 0, buf), MHA_ERR_BAD_SIZE);
    ck_assert_int_eq(mha_positional_encoding(-4, 4, buf), MHA_ERR_BAD_SIZE);
    ck_assert_int_eq(mha_positional_encoding(4, -1, buf), MHA_ERR_BAD_SIZE);
    ck_assert_int_eq(mha_positional_encoding(INT64_MAX / 2, 4, buf), MHA_ERR_OVERFLOW);
    ck_assert_int_eq(mha_positional_encoding((int64_t)1 << 40, (int64_t)1 << 30, buf), MHA_ERR_OVERFLOW);
    ck_assert_int_eq(mha_add_positional_encoding(NULL, 1, 4, 4), MHA_ERR_NULL_POINTER);
    ck_assert_int_eq(mha_add_positional_encoding(buf, 0, 4, 4), MHA_ERR_BAD_SIZE);
    ck_assert_int_eq(mha_add_positional_encoding(buf, 1, -4, 4), MHA_ERR_BAD_SIZE);
    ck_assert_int_eq(mha_add_positional_encoding(buf, 1, 4, 0), MHA_ERR_BAD_SIZE);
    ck_assert_int_eq(mha_add_positional_encoding(buf, INT64_MAX / 3, 4, 4), MHA_ERR_OVERFLOW);
    ck_assert_int_eq(mha_add_positional_encoding(buf, (int64_t)1 << 30, (int64_t)1 << 30, 4),
                     MHA_ERR_OVERFLOW);
    require(is_sentinel(buf, sizeof buf), "failed positional encoding call wrote the buffer");
}
END_TEST

/* ------------------------------------------ workspace reuse, thread count */

/* Forward for one model and shape; output into a fresh buffer (caller frees). */
static float *run_forward(const fixture *f, const float *x, const float *kv, int64_t B, int64_t Lq,
                          int64_t Lk, int threads, const mha_mask *mask, void *ws, size_t ws_bytes)
{
    size_t n = (size_t)(B * Lq * f->O);
    float *out = xmalloc(n * sizeof(float));
    fill_sentinel(out, n * sizeof(float));
    mha_forward_args a;
    memset(&a, 0, sizeof a);
    a.batch = B;
    a.len_q = Lq;
    a.len_k = Lk;
    a.query = x;
    a.key = kv;
    a.value = kv;
    a.out = out;
    a.num_threads = threads;
    if (mask)
        a.mask = *mask;
    int own = ws == NULL;
    if (own) {
        ck_assert_int_eq(mha_forward_workspace_size(f->model, B, Lq, Lk, threads, &ws_bytes), MHA_OK);
        ws = xmalloc(ws_bytes);
    }
    mha_status st = mha_forward(f->model, &a, ws, ws_bytes);
    require(st == MHA_OK, "[%s] forward B=%lld Lq=%lld Lk=%lld threads=%d: %s", isa_now(),
                  (long long)B, (long long)Lq, (long long)Lk, threads, mha_status_message(st));
    if (own)
        free(ws);
    return out;
}

/* The size queries are monotone: a workspace sized for a shape serves every shape
 * that is no larger in any dimension (mha.h promises it), across the regimes of
 * the tiling (few rows, long keys, K/V rounds larger than one unit). */
START_TEST(test_workspace_size_monotone)
{
    const int64_t bs[] = {1, 2, 5}, lqs[] = {1, 7, 64, 300, 2500}, lks[] = {1, 40, 6000, 9000};
    const int ths[] = {1, 2, 3};
    for (int with_proj = 0; with_proj < 2; with_proj++) {
        mha_config cfg = mha_config_default(64, 8);
        cfg.num_kv_heads = 2;
        cfg.has_out_proj = with_proj;
        fixture f;
        fixture_init(&f, &cfg, 0, 40 + (uint64_t)with_proj);
        fixture_create(&f);
        size_t sz[3][5][4][3];
        for (int b = 0; b < 3; b++)
            for (int q = 0; q < 5; q++)
                for (int k = 0; k < 4; k++)
                    for (int t = 0; t < 3; t++)
                        ck_assert_int_eq(mha_forward_workspace_size(f.model, bs[b], lqs[q], lks[k], ths[t],
                                                                    &sz[b][q][k][t]),
                                         MHA_OK);
        for (int b = 0; b < 3; b++)
            for (int q = 0; q < 5; q++)
                for (int k = 0; k < 4; k++)
                    for (int t = 0; t < 3; t++) {
                        size_t here = sz[b][q][k][t];
                        require((b == 0 || sz[b - 1][q][k][t] <= here) && (q == 0 || sz[b][q - 1][k][t] <= here) &&
                                    (k == 0 || sz[b][q][k - 1][t] <= here) && (t == 0 || sz[b][q][k][t - 1] <= here),
                                "forward workspace not monotone at B=%lld Lq=%lld Lk=%lld threads=%d (out proj %d)",
                                (long long)bs[b], (long long)lqs[q], (long long)lks[k], ths[t], with_proj);
                    }
        fixture_free(&f);
    }
}
END_TEST

/* One model shared by concurrent calls (mha.h: immutable, safe to share), each
 * call with its own workspace, from several application threads at once: every
 * result equals the serial one bitwise. */
typedef struct shared_call {
    const fixture *f;
    const float *x;
    float *out;
    int64_t B, L;
    int repeats;
    mha_status st;
} shared_call;

static void *shared_call_run(void *arg)
{
    shared_call *c = arg;
    mha_forward_args a;
    memset(&a, 0, sizeof a);
    a.batch = c->B;
    a.len_q = c->L;
    a.query = c->x;
    a.out = c->out;
    a.num_threads = 1;
    size_t bytes;
    c->st = mha_forward_workspace_size(c->f->model, c->B, c->L, c->L, 1, &bytes);
    void *ws = c->st == MHA_OK ? malloc(bytes) : NULL;
    for (int r = 0; r < c->repeats && c->st == MHA_OK; r++)
        c->st = mha_forward(c->f->model, &a, ws, bytes);
    free(ws);
    return NULL;
}

START_TEST(test_model_shared_by_threads)
{
    mha_config cfg = mha_config_default(32, 4);
    fixture f;
    fixture_init(&f, &cfg, 1, 60);
    fixture_create(&f);
    enum { T = 4 };
    const int64_t B = 2, L = 29;
    test_rng r = test_rng_seed(61);
    shared_call calls[T];
    pthread_t tid[T];
    for (int t = 0; t < T; t++) {
        calls[t] = (shared_call){&f, test_random(&r, (size_t)(B * L * 32), -1, 1),
                                 xmalloc((size_t)(B * L * 32) * sizeof(float)), B, L, 20, MHA_OK};
        ck_assert_int_eq(pthread_create(&tid[t], NULL, shared_call_run, &calls[t]), 0);
    }
    for (int t = 0; t < T; t++)
        ck_assert_int_eq(pthread_join(tid[t], NULL), 0);
    for (int t = 0; t < T; t++) {
        ck_assert_msg(calls[t].st == MHA_OK, "thread %d: %s", t, mha_status_message(calls[t].st));
        float *serial = run_forward(&f, calls[t].x, NULL, B, L, L, 1, NULL, NULL, 0);
        ck_assert_msg(memcmp(serial, calls[t].out, (size_t)(B * L * 32) * sizeof(float)) == 0,
                      "[%s] thread %d: concurrent result differs from the serial one", isa_now(), t);
        free(serial);
        free(calls[t].out);
        free((void *)calls[t].x);
    }
    fixture_free(&f);
}
END_TEST

START_TEST(test_workspace_reuse)
{
    mha_config cfg = mha_config_default(16, 4);
    cfg.num_kv_heads = 2;
    fixture f;
    fixture_init(&f, &cfg, 0, 30);
    fixture_create(&f);
    test_rng r = test_rng_seed(31);
    float *x = test_random(&r, 3 * 9 * 16, -1, 1), *kv = test_random(&r, 3 * 11 * 16, -1, 1);

    size_t big;
    ck_assert_int_eq(mha_forward_workspace_size(f.model, 3, 9, 11, 2, &big), MHA_OK);
    char *ws = xmalloc(big);
    const int64_t shapes[][3] = {{3, 9, 11}, {2, 5, 7}, {1, 1, 1}, {3, 9, 1}, {1, 9, 11}};
    for (int s = 0; s < 5; s++)
        for (int threads = 1; threads <= 2; threads++) {
            int64_t B = shapes[s][0], Lq = shapes[s][1], Lk = shapes[s][2];
            memset(ws, 0xFF, big); /* stale contents (NaN patterns) must not matter */
            float *a = run_forward(&f, x, kv, B, Lq, Lk, threads, NULL, ws, big);
            float *b = run_forward(&f, x, kv, B, Lq, Lk, threads, NULL, NULL, 0);
            require(memcmp(a, b, (size_t)(B * Lq * 16) * sizeof(float)) == 0,
                          "[%s] forward with a workspace for a larger shape differs: B=%lld Lq=%lld Lk=%lld threads=%d",
                          isa_now(), (long long)B, (long long)Lq, (long long)Lk, threads);
            free(a);
            free(b);
        }

    /* Attention: workspace for [3, 4, 2, 40, 50, 8, 8] serves smaller calls. */
    mha_attention_args a;
    memset(&a, 0, sizeof a);
    float *q = test_random(&r, 3 * 4 * 40 * 8, -1, 1), *k = test_random(&r, 3 * 2 * 50 * 8, -1, 1),
          *v = test_random(&r, 3 * 2 * 50 * 8, -1, 1), *o1 = xmalloc(3 * 4 * 40 * 8 * sizeof(float)),
          *o2 = xmalloc(3 * 4 * 40 * 8 * sizeof(float));
    a.batch = 3;
    a.num_heads = 4;
    a.num_kv_heads = 2;
    a.len_q = 40;
    a.len_k = 50;
    a.head_dim_qk = a.head_dim_v = 8;
    a.q = q;
    a.k = k;
    a.v = v;
    a.num_threads = 2;
    a.q_stride[0] = 4 * 40 * 8;
    a.q_stride[1] = 40 * 8;
    a.q_stride[2] = 8;
    a.k_stride[0] = a.v_stride[0] = 2 * 50 * 8;
    a.k_stride[1] = a.v_stride[1] = 50 * 8;
    a.k_stride[2] = a.v_stride[2] = 8;
    memcpy(a.out_stride, a.q_stride, sizeof a.q_stride);
    a.out = o1;
    size_t abig, asmall;
    ck_assert_int_eq(mha_attention_workspace_size(&a, &abig), MHA_OK);
    char *aws = xmalloc(abig);
    a.batch = 2;
    a.len_q = 17;
    a.len_k = 23;
    for (int threads = 1; threads <= 2; threads++) {
        a.num_threads = threads;
        ck_assert_int_eq(mha_attention_workspace_size(&a, &asmall), MHA_OK);
        require(asmall <= abig, "attention workspace for a smaller shape is larger: %zu > %zu", asmall, abig);
        void *ws2 = xmalloc(asmall);
        a.out = o1;
        memset(aws, 0xFF, abig);
        ck_assert_int_eq(mha_attention(&a, aws, abig), MHA_OK);
        a.out = o2;
        ck_assert_int_eq(mha_attention(&a, ws2, asmall), MHA_OK);
        for (int64_t b = 0; b < 2; b++)
            for (int64_t h = 0; h < 4; h++)
                require(memcmp(o1 + b * a.out_stride[0] + h * a.out_stride[1],
                                     o2 + b * a.out_stride[0] + h * a.out_stride[1],
                                     17 * 8 * sizeof(float)) == 0,
                              "[%s] attention with a larger workspace differs (b=%lld h=%lld, %d threads)",
                              isa_now(), (long long)b, (long long)h, threads);
        free(ws2);
    }
    free(aws);
    free(ws);
    free(q);
    free(k);
    free(v);
    free(o1);
    free(o2);
    free(x);
    free(kv);
    fixture_free(&f);
}
END_TEST

/*
 * mha.h promises that results do not depend on num_threads ("results do not
 * depend on it"): every task's arithmetic is fixed by the shape alone, so the
 * outputs must be bitwise identical for 1, 2, 3 threads and OpenMP's default.
 * The shapes span several query blocks and key blocks and GEMM tiles so that the
 * work is really split.
 */
START_TEST(test_thread_count_independence)
{
    const int quick = test_quick();
    const int64_t B = 2, Lq = quick ? 70 : 150, Lk = quick ? 140 : 300;
    mha_config cfg = mha_config_default(32, 4);
    cfg.num_kv_heads = 2;
    fixture f;
    fixture_init(&f, &cfg, 1, 40);
    fixture_create(&f);
    test_rng r = test_rng_seed(41);
    float *x = test_random(&r, (size_t)(B * Lq * 32), -1, 1), *kv = test_random(&r, (size_t)(B * Lk * 32), -1, 1);
    int32_t kl[2] = {(int32_t)Lk, (int32_t)(Lk / 2)};
    mha_mask mask = {0};
    mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
    mask.key_lengths = kl;
    const int threads[] = {1, 2, 3, 0};
    for (int masked = 0; masked < 2; masked++) {
        float *base = run_forward(&f, x, kv, B, Lq, Lk, 1, masked ? &mask : NULL, NULL, 0);
        for (int t = 1; t < 4; t++) {
            float *o = run_forward(&f, x, kv, B, Lq, Lk, threads[t], masked ? &mask : NULL, NULL, 0);
            require(memcmp(base, o, (size_t)(B * Lq * 32) * sizeof(float)) == 0,
                          "[%s] forward output differs between 1 and %d threads (masked=%d)", isa_now(),
                          threads[t], masked);
            free(o);
        }
        free(base);
    }

    /* Attention only, GQA, [B, L, H, d] layout. */
    const int64_t H = 4, G = 2, d = 16;
    float *q = test_random(&r, (size_t)(B * Lq * H * d), -1, 1), *k = test_random(&r, (size_t)(B * Lk * G * d), -1, 1),
          *v = test_random(&r, (size_t)(B * Lk * G * d), -1, 1);
    size_t on = (size_t)(B * Lq * H * d);
    float *o[4];
    for (int t = 0; t < 4; t++) {
        mha_attention_args a;
        memset(&a, 0, sizeof a);
        a.batch = B;
        a.num_heads = H;
        a.num_kv_heads = G;
        a.len_q = Lq;
        a.len_k = Lk;
        a.head_dim_qk = a.head_dim_v = d;
        a.q = q;
        a.k = k;
        a.v = v;
        const int64_t qs[3] = {Lq * H * d, d, H * d}, ks[3] = {Lk * G * d, d, G * d};
        memcpy(a.q_stride, qs, sizeof qs);
        memcpy(a.out_stride, qs, sizeof qs);
        memcpy(a.k_stride, ks, sizeof ks);
        memcpy(a.v_stride, ks, sizeof ks);
        a.mask = mask;
        a.num_threads = threads[t];
        o[t] = xmalloc(on * sizeof(float));
        a.out = o[t];
        size_t bytes;
        ck_assert_int_eq(mha_attention_workspace_size(&a, &bytes), MHA_OK);
        void *ws = xmalloc(bytes);
        mha_status st = mha_attention(&a, ws, bytes);
        require(st == MHA_OK, "attention %d threads: %s", threads[t], mha_status_message(st));
        free(ws);
        if (t > 0)
            require(memcmp(o[0], o[t], on * sizeof(float)) == 0,
                          "[%s] attention output differs between 1 and %d threads", isa_now(), threads[t]);
    }
    for (int t = 0; t < 4; t++)
        free(o[t]);
    free(q);
    free(k);
    free(v);
    free(x);
    free(kv);
    fixture_free(&f);
}
END_TEST

Suite *suite_api(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("names");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_status_messages);
    tcase_add_test(tc, test_isa_names);
    tcase_add_test(tc, test_config_default);
    tcase_add_test(tc, test_model_config_resolves_defaults);
    suite_add_tcase(s, tc);

    tc = tcase_create("posenc");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_positional_encoding_table);
    tcase_add_test(tc, test_positional_encoding_add);
    suite_add_tcase(s, tc);

    tc = tcase_create("workspace_threads");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_workspace_reuse);
    tcase_add_test(tc, test_workspace_size_monotone);
    tcase_add_test(tc, test_model_shared_by_threads);
    tcase_add_test(tc, test_thread_count_independence);
    suite_add_tcase(s, tc);
    return s;
}
