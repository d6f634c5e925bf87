/*
 * Limits a server relies on: the thread count (bounded default, MHA_MAX_THREADS,
 * never more threads than work) and the version the library reports. OpenMP is
 * only touched inside START_TEST bodies (Check forks each test; libgomp is not
 * fork-safe).
 */
#include <dirent.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "serve_prob.h"
#include "testutil.h"

/* One small attention call, dense [B, H, L, d] tensors. */
typedef struct small_attn {
    float *q, *k, *v, *out;
    size_t out_bytes;
    mha_attention_args a;
} small_attn;

static void small_attn_init(small_attn *c, int64_t lq, int64_t lk)
{
    const int64_t B = 1, H = 2, d = 8;
    test_rng r = test_rng_seed(21);
    c->q = test_random(&r, (size_t)(B * H * lq * d), -1, 1);
    c->k = test_random(&r, (size_t)(B * H * lk * d), -1, 1);
    c->v = test_random(&r, (size_t)(B * H * lk * d), -1, 1);
    c->out_bytes = (size_t)(B * H * lq * d) * sizeof(float);
    c->out = xmalloc(c->out_bytes);
    c->a = (mha_attention_args){
        .batch = B, .num_heads = H, .len_q = lq, .len_k = lk, .head_dim_qk = d, .head_dim_v = d,
        .q = c->q, .q_stride = {H * lq * d, lq * d, d},
        .k = c->k, .k_stride = {H * lk * d, lk * d, d},
        .v = c->v, .v_stride = {H * lk * d, lk * d, d},
        .out = c->out, .out_stride = {H * lq * d, lq * d, d},
    };
}

static void small_attn_free(small_attn *c)
{
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->out);
}

/* Runs the call with its own workspace; returns the status. */
static mha_status small_attn_run(small_attn *c, int threads)
{
    c->a.num_threads = threads;
    size_t bytes;
    mha_status st = mha_attention_workspace_size(&c->a, &bytes);
    if (st != MHA_OK)
        return st;
    void *ws = xmalloc(bytes);
    st = mha_attention(&c->a, ws, bytes);
    free(ws);
    return st;
}

static int expected_default(void)
{
    int n = omp_get_num_procs();
    return n < MHA_MAX_THREADS ? n : MHA_MAX_THREADS;
}

/* OMP_NUM_THREADS=100000 (set here through its API twin) made num_threads = 0
 * start 100000 threads, and the size query answer 100000 threads' scratch. */
START_TEST(test_default_threads_bounded)
{
    omp_set_num_threads(100000);
    small_attn c;
    small_attn_init(&c, 37, 53);
    size_t dflt, bound;
    c.a.num_threads = 0;
    ck_assert_int_eq(mha_attention_workspace_size(&c.a, &dflt), MHA_OK);
    c.a.num_threads = expected_default();
    ck_assert_int_eq(mha_attention_workspace_size(&c.a, &bound), MHA_OK);
    require(dflt == bound, "num_threads 0 under a huge OpenMP default sized %zu bytes, %d threads %zu",
            dflt, expected_default(), bound);
    ck_assert_int_eq(small_attn_run(&c, 1), MHA_OK);
    float *serial = xmalloc(c.out_bytes);
    memcpy(serial, c.out, c.out_bytes);
    ck_assert_int_eq(small_attn_run(&c, 0), MHA_OK);
    require(memcmp(serial, c.out, c.out_bytes) == 0, "num_threads 0 changed the result");
    ck_assert_int_eq(small_attn_run(&c, MHA_MAX_THREADS), MHA_OK);
    require(memcmp(serial, c.out, c.out_bytes) == 0, "MHA_MAX_THREADS changed the result");
    free(serial);
    small_attn_free(&c);

    /* The forward's size query resolves 0 the same way. */
    fixture f;
    mha_config cfg = mha_config_default(16, 2);
    fixture_init(&f, &cfg, 0, 22);
    fixture_create(&f);
    ck_assert_int_eq(mha_forward_workspace_size(f.model, 2, 9, 9, 0, &dflt), MHA_OK);
    ck_assert_int_eq(mha_forward_workspace_size(f.model, 2, 9, 9, expected_default(), &bound), MHA_OK);
    require(dflt == bound, "forward: num_threads 0 sized %zu bytes, %d threads %zu", dflt,
            expected_default(), bound);
    fixture_free(&f);
}
END_TEST

/* Threads of this process, from /proc (0 where it cannot tell). */
static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* libgomp keeps a team's threads alive after the region, so the process's thread
 * count tells how many a call started. A call with 5 query rows has at most 5
 * tasks per head group; asking for 64 threads must not start 64. */
START_TEST(test_threads_capped_by_work)
{
    int before = count_threads();
    if (before == 0)
        return; /* no /proc: nothing to count */
    small_attn c;
    small_attn_init(&c, 5, 7);
    ck_assert_int_eq(small_attn_run(&c, 64), MHA_OK);
    int started = count_threads() - before;
    require(started <= 2 * 5, "attention with at most 10 tasks started %d threads", started);
    small_attn_free(&c);

    fixture f;
    mha_config cfg = mha_config_default(8, 2);
    fixture_init(&f, &cfg, 0, 23);
    fixture_create(&f);
    float x[2 * 8], out[2 * 8];
    memset(x, 0, sizeof x);
    mha_forward_args a = {.batch = 1, .len_q = 2, .query = x, .out = out, .num_threads = 64};
    size_t bytes;
    ck_assert_int_eq(mha_forward_workspace_size(f.model, 1, 2, 0, 64, &bytes), MHA_OK);
    void *ws = xmalloc(bytes);
    ck_assert_int_eq(mha_forward(f.model, &a, ws, bytes), MHA_OK);
    started = count_threads() - before;
    require(started <= 8, "a 2-token forward started %d threads", started);
    free(ws);
    fixture_free(&f);
}
END_TEST

/* The default divides the processors among the calls in flight (engine/threads.c):
 * 4 server threads each asking for all of 2 cores doubled the median latency. */
START_TEST(test_default_shared_by_calls_in_flight)
{
    const int all = mha_threads(0);
    ck_assert_int_eq(mha_threads_enter(0), all);
    mha_threads_leave();
    int first = mha_threads_enter(0);  /* one call running... */
    int second = mha_threads_enter(0); /* ...when a second starts */
    int third = mha_threads_enter(3);  /* an explicit count is kept, and counted */
    int fourth = mha_threads_enter(0);
    mha_threads_leave();
    mha_threads_leave();
    mha_threads_leave();
    mha_threads_leave();
    ck_assert_int_eq(first, all);
    ck_assert_int_eq(second, all / 2 > 0 ? all / 2 : 1);
    ck_assert_int_eq(third, 3);
    ck_assert_int_eq(fourth, all / 4 > 0 ? all / 4 : 1);
    ck_assert_int_eq(mha_threads_enter(0), all); /* every call left: all again */
    mha_threads_leave();
}
END_TEST

/* A call made from inside the caller's own active parallel region (nested
 * parallelism enabled) runs on its thread alone instead of starting a team per
 * outer thread, and still computes the same result. */
START_TEST(test_default_inside_parallel_region)
{
    omp_set_max_active_levels(2);
    small_attn c[2];
    small_attn_init(&c[0], 64, 64);
    small_attn_init(&c[1], 64, 64);
    ck_assert_int_eq(small_attn_run(&c[0], 1), MHA_OK);
    float *serial = xmalloc(c[0].out_bytes);
    memcpy(serial, c[0].out, c[0].out_bytes);
    int inner[2] = {0, 0};
    mha_status st[2] = {MHA_OK, MHA_OK};
#pragma omp parallel num_threads(2)
    {
        int me = omp_get_thread_num() % 2;
        inner[me] = mha_threads_enter(0);
        mha_threads_leave();
        st[me] = small_attn_run(&c[me], 0);
    }
    if (omp_get_num_procs() > 1) /* else the outer region had 1 thread, inactive */
        require(inner[0] == 1 && inner[1] == 1, "inside a parallel region, num_threads 0 gave %d and %d threads",
                inner[0], inner[1]);
    require(st[0] == MHA_OK && st[1] == MHA_OK, "attention inside a parallel region failed");
    require(memcmp(serial, c[0].out, c[0].out_bytes) == 0 && memcmp(serial, c[1].out, c[1].out_bytes) == 0,
            "attention inside a parallel region changed the result");
    free(serial);
    small_attn_free(&c[0]);
    small_attn_free(&c[1]);
}
END_TEST

/* The serving run shares the default like every other entry: with another call
 * in flight on a 2-core machine, a num_threads 0 plan runs on 1 thread (starts
 * none), and on both once that call left; the result is the same bits. */
START_TEST(test_serve_shares_default)
{
    if (mha_threads(0) < 2)
        return; /* one processor: nothing to share */
    const int32_t ql[2] = {40, 1}, kl[2] = {600, 3000};
    serve_prob p;
    serve_prob_init(&p, 7, 2, 4, 2, 32, 32, ql, kl, SP_PAGED_2D, 16);
    int before = count_threads();
    mha_threads_enter(0); /* another call running */
    float *shared = serve_run(&p, 0, 0.0f, NULL);
    int during = count_threads() - before;
    mha_threads_leave();
    float *alone = serve_run(&p, 0, 0.0f, NULL);
    int after = count_threads() - before;
    require(during == 0, "serve with a call in flight started %d threads", during);
    require(after > 0, "serve alone started no threads");
    require(memcmp(shared, alone, (size_t)(p.T * p.H * p.dv) * sizeof(float)) == 0,
            "serve on 1 and 2 threads differ");
    free(shared);
    free(alone);
    serve_prob_free(&p);
}
END_TEST

START_TEST(test_version)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", MHA_VERSION_MAJOR, MHA_VERSION_MINOR, MHA_VERSION_PATCH);
    ck_assert_str_eq(mha_version(), want);
    /* The build's own version (meson project()), so the header cannot lag behind. */
    ck_assert_str_eq(mha_version(), MHA_PROJECT_VERSION);
    ck_assert_int_eq(mha_version_number(), MHA_VERSION_NUMBER);
    ck_assert_int_eq(MHA_VERSION_NUMBER,
                     MHA_VERSION_MAJOR * 10000 + MHA_VERSION_MINOR * 100 + MHA_VERSION_PATCH);
}
END_TEST

Suite *suite_limits(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_default_threads_bounded);
    tcase_add_test(tc, test_threads_capped_by_work);
    tcase_add_test(tc, test_default_shared_by_calls_in_flight);
    tcase_add_test(tc, test_default_inside_parallel_region);
    tcase_add_test(tc, test_serve_shares_default);
    tcase_add_test(tc, test_version);
    suite_add_tcase(s, tc);
    return s;
}
