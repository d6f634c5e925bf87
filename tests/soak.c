/*
 * Soak: application threads share two models and run a mixed stream of calls
 * (forward self- and cross-attention, attention prefill on strided tensors,
 * decoding Lq <= 4 against a key/value cache, every mask kind) with per-call
 * thread counts of 0, 1, 2 and 3, for a bounded time. Every result must be
 * bitwise equal to the same call run serially (num_threads = 1) before the
 * threads start, and the resident set must not grow between the end of a warm-up
 * and the end of the run (calls allocate nothing).
 *
 *   MHA_SOAK_SECONDS  run time (default 30)
 *   MHA_SOAK_THREADS  application threads (default 4)
 *
 * Prints threads, calls, minutes, mismatches and RSS before/after; exits 1 on
 * any mismatch, failed call or RSS growth above RSS_BOUND.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* Allowed RSS growth: a few pages of libc/libgomp bookkeeping, far below one
 * workspace or output buffer per call (which is what a leak per call would add
 * over thousands of calls). */
#define RSS_BOUND ((long)2 << 20)

/* Under ASan the RSS grows with every thread libgomp creates (a team that shrinks
 * ends its surplus workers, one that grows starts new ones, and ASan keeps
 * per-thread state): there the figure is printed, not checked. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_CHECKED 0
#else
#define RSS_CHECKED 1
#endif

enum kind { FORWARD, ATTENTION, DECODE, N_KINDS };
static const char *const kind_name[N_KINDS] = {"forward", "attention", "decode"};

typedef struct soak_case {
    const char *name;
    enum kind kind;
    const mha_model *model;   /* FORWARD */
    mha_forward_args fa;      /* FORWARD */
    mha_attention_args aa;    /* ATTENTION, DECODE */
    size_t out_elems;
    float *expected;          /* the serial result */
} soak_case;

#define MAX_CASES 16
static soak_case cases[MAX_CASES];
static int n_cases;
static const int thread_choices[] = {0, 1, 2, 3};
#define N_CHOICES ((int)(sizeof thread_choices / sizeof thread_choices[0]))

static mha_status workspace_size(const soak_case *c, int threads, size_t *bytes)
{
    if (c->kind == FORWARD)
        return mha_forward_workspace_size(c->model, c->fa.batch, c->fa.len_q,
                                          c->fa.key ? c->fa.len_k : c->fa.len_q, threads, bytes);
    mha_attention_args a = c->aa;
    a.num_threads = threads;
    return mha_attention_workspace_size(&a, bytes);
}

static mha_status run_case(const soak_case *c, float *out, int threads, void *ws, size_t bytes)
{
    if (c->kind == FORWARD) {
        mha_forward_args a = c->fa;
        a.out = out;
        a.num_threads = threads;
        return mha_forward(c->model, &a, ws, bytes);
    }
    mha_attention_args a = c->aa;
    a.out = out;
    a.num_threads = threads;
    return mha_attention(&a, ws, bytes);
}

/* ------------------------------------------------------------------ cases */

static test_rng rng;
#define MAX_BLOCKS 64
static void *blocks[MAX_BLOCKS]; /* inputs, freed at the end */
static int n_blocks;

static void *keep(void *p)
{
    if (n_blocks == MAX_BLOCKS)
        abort();
    return blocks[n_blocks++] = p;
}

static float *input(size_t n)
{
    return keep(test_random(&rng, n, -1, 1));
}

/* The case's output pointer is its expected buffer, so the size queries see a
 * complete call; the soak's calls write to their own buffers. */
static void add(soak_case c)
{
    if (n_cases == MAX_CASES)
        abort();
    c.expected = keep(xmalloc(c.out_elems * sizeof(float)));
    if (c.kind == FORWARD)
        c.fa.out = c.expected;
    else
        c.aa.out = c.expected;
    cases[n_cases++] = c;
}

static uint8_t *bool_mask(size_t n, int period)
{
    uint8_t *m = keep(xmalloc(n));
    for (size_t i = 0; i < n; i++)
        m[i] = (uint8_t)(i % (size_t)period != 0 || i == 0);
    return m;
}

/* Forward cases on a self-attention model (E=64, H=4) and a cross-attention GQA
 * model (E=48, H=6, G=2, kdim 40, vdim 56, separate weights). */
static void forward_cases(const mha_model *self, const mha_model *cross)
{
    static const int32_t lens[2] = {33, 20};
    float *x = input(2 * 33 * 64);
    add((soak_case){.name = "forward self B=2 L=33", .kind = FORWARD, .model = self,
                    .fa = {.batch = 2, .len_q = 33, .query = x}, .out_elems = 2 * 33 * 64});
    soak_case c = {.name = "forward self causal + key lengths", .kind = FORWARD, .model = self,
                   .fa = {.batch = 2, .len_q = 33, .query = x}, .out_elems = 2 * 33 * 64};
    c.fa.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
    c.fa.mask.key_lengths = lens;
    add(c);

    float *q = input(2 * 17 * 48), *k = input(2 * 29 * 40), *v = input(2 * 29 * 56);
    c = (soak_case){.name = "forward cross Lq=17 Lk=29 bool mask [B,1,Lq,Lk]", .kind = FORWARD,
                    .model = cross, .fa = {.batch = 2, .len_q = 17, .len_k = 29, .query = q, .key = k,
                                           .value = v},
                    .out_elems = 2 * 17 * 48};
    c.fa.mask.bool_mask = (mha_mask_tensor){bool_mask(2 * 17 * 29, 5), 17 * 29, 0, 29};
    add(c);

    float *q1 = input(3 * 2 * 48), *k1 = input(3 * 1100 * 40), *v1 = input(3 * 1100 * 56);
    float *fm = input(1100);
    c = (soak_case){.name = "forward decode Lq=2 Lk=1100 float mask", .kind = FORWARD, .model = cross,
                    .fa = {.batch = 3, .len_q = 2, .len_k = 1100, .query = q1, .key = k1, .value = v1},
                    .out_elems = 3 * 2 * 48};
    c.fa.mask.float_mask = (mha_mask_tensor){fm, 0, 0, 0};
    add(c);
}

/* Attention-only cases: prefill on [B, L, H, d] buffers (heads not transposed), and
 * decoding against a [B, L_max, G, d] cache filled up to Lk (several key chunks). */
static void attention_cases(void)
{
    const int64_t B = 2, H = 4, G = 2, L = 65, d = 32;
    float *q = input((size_t)(B * L * H * d)), *kv = input((size_t)(B * L * G * d * 2));
    soak_case c = {.name = "attention prefill L=65 [B,L,H,d] causal", .kind = ATTENTION,
                   .out_elems = (size_t)(B * H * L * d)};
    c.aa = (mha_attention_args){.batch = B, .num_heads = H, .num_kv_heads = G, .len_q = L, .len_k = L,
                                .head_dim_qk = d, .head_dim_v = d, .q = q,
                                .q_stride = {L * H * d, d, H * d}, .k = kv,
                                .k_stride = {L * G * 2 * d, 2 * d, G * 2 * d}, .v = kv + d,
                                .v_stride = {L * G * 2 * d, 2 * d, G * 2 * d},
                                .out_stride = {H * L * d, L * d, d}};
    c.aa.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
    add(c);

    const int64_t Lq2 = 100, Lk2 = 700;
    float *q2 = input((size_t)(1 * 2 * Lq2 * 48)), *k2 = input((size_t)(Lk2 * 48)),
          *v2 = input((size_t)(Lk2 * 40));
    static const int32_t lens2[1] = {611};
    c = (soak_case){.name = "attention Lq=100 Lk=700 MQA key lengths + bool mask", .kind = ATTENTION,
                    .out_elems = (size_t)(2 * Lq2 * 40)};
    c.aa = (mha_attention_args){.batch = 1, .num_heads = 2, .num_kv_heads = 1, .len_q = Lq2,
                                .len_k = Lk2, .head_dim_qk = 48, .head_dim_v = 40, .q = q2,
                                .q_stride = {2 * Lq2 * 48, Lq2 * 48, 48}, .k = k2,
                                .k_stride = {Lk2 * 48, 0, 48}, .v = v2, .v_stride = {Lk2 * 40, 0, 40},
                                .out_stride = {2 * Lq2 * 40, Lq2 * 40, 40}};
    c.aa.mask.key_lengths = lens2;
    c.aa.mask.bool_mask = (mha_mask_tensor){bool_mask((size_t)(Lq2 * Lk2), 7), 0, 0, Lk2};
    add(c);

    /* The cache: [B=2, L_max=2600, G=2, d=24], filled to 2500 (three 1024-key chunks). */
    const int64_t Lmax = 2600, Lk = 2500, Gc = 2, dc = 24, Hc = 8;
    float *kc = input((size_t)(2 * Lmax * Gc * dc)), *vc = input((size_t)(2 * Lmax * Gc * dc));
    float *qd = input((size_t)(2 * Hc * 4 * dc)), *fmd = input((size_t)Lk);
    static const int32_t lens_d[2] = {2499, 1500};
    for (int64_t lq = 1; lq <= 4; lq++) {
        static const char *const names[] = {
            "decode Lq=1 cache, key lengths", "decode Lq=2 cache, explicit causal offset",
            "decode Lq=3 cache, bool mask + causal", "decode Lq=4 cache, float mask"};
        c = (soak_case){.name = names[lq - 1], .kind = DECODE, .out_elems = (size_t)(2 * Hc * lq * dc)};
        c.aa = (mha_attention_args){.batch = 2, .num_heads = Hc, .num_kv_heads = Gc, .len_q = lq,
                                    .len_k = Lk, .head_dim_qk = dc, .head_dim_v = dc, .q = qd,
                                    .q_stride = {Hc * lq * dc, lq * dc, dc}, .k = kc,
                                    .k_stride = {Lmax * Gc * dc, dc, Gc * dc}, .v = vc,
                                    .v_stride = {Lmax * Gc * dc, dc, Gc * dc},
                                    .out_stride = {Hc * lq * dc, lq * dc, dc}};
        if (lq == 1)
            c.aa.mask.key_lengths = lens_d;
        if (lq == 2) {
            c.aa.mask.causal = MHA_CAUSAL_EXPLICIT;
            c.aa.mask.causal_offset = 1030;
        }
        if (lq == 3) {
            c.aa.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
            c.aa.mask.bool_mask = (mha_mask_tensor){bool_mask((size_t)(lq * Lk), 3), 0, 0, Lk};
        }
        if (lq == 4)
            c.aa.mask.float_mask = (mha_mask_tensor){fmd, 0, 0, 0};
        add(c);
    }
}

/* The serial results, each checked against the float64 oracle so that the soak
 * compares against something right. */
static int prepare(const fixture *fs, size_t *ws_bytes)
{
    *ws_bytes = 1;
    for (int i = 0; i < n_cases; i++) {
        soak_case *c = &cases[i];
        for (int t = 0; t < N_CHOICES; t++) {
            size_t b;
            mha_status st = workspace_size(c, thread_choices[t], &b);
            if (st != MHA_OK) {
                printf("FAIL %s: workspace size: %s\n", c->name, mha_status_message(st));
                return 0;
            }
            *ws_bytes = b > *ws_bytes ? b : *ws_bytes;
        }
    }
    void *ws = xmalloc(*ws_bytes);
    int ok = 1;
    for (int i = 0; i < n_cases && ok; i++) {
        soak_case *c = &cases[i];
        float *ref = xmalloc(c->out_elems * sizeof(float));
        mha_status st = run_case(c, c->expected, 1, ws, *ws_bytes);
        if (st == MHA_OK && c->kind == FORWARD) {
            const fixture *f = c->model == fs[0].model ? &fs[0] : &fs[1];
            mha_forward_args a = c->fa;
            a.out = ref;
            st = mha_reference_forward(&f->cfg, &f->w, &a);
        } else if (st == MHA_OK) {
            mha_attention_args a = c->aa;
            a.out = ref;
            st = mha_reference_attention(&a);
        }
        double err = st == MHA_OK ? test_rel_err(c->expected, ref, c->out_elems, 1e-3) : NAN;
        if (st != MHA_OK || !(err < 1e-4)) {
            printf("FAIL %s: serial call %s, relative error vs float64 %.3g\n", c->name,
                   mha_status_message(st), err);
            ok = 0;
        }
        free(ref);
    }
    free(ws);
    return ok;
}

/* ---------------------------------------------------------------- workers */

static atomic_int stop;

typedef struct worker {
    pthread_t tid;
    int index;
    void *ws;
    size_t ws_bytes;
    float *out;
    long calls[N_KINDS];
    long mismatches, failures;
} worker;

static void *work(void *p)
{
    worker *w = p;
    test_rng r = test_rng_seed(1000 + (uint64_t)w->index);
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        int pick = (int)(test_rng_uniform(&r, 0, 1) * (float)(n_cases * N_CHOICES));
        if (pick >= n_cases * N_CHOICES)
            pick = n_cases * N_CHOICES - 1;
        const soak_case *c = &cases[pick / N_CHOICES];
        int threads = thread_choices[pick % N_CHOICES];
        mha_status st = run_case(c, w->out, threads, w->ws, w->ws_bytes);
        w->calls[c->kind]++;
        if (st != MHA_OK) {
            if (w->failures++ < 5)
                printf("FAIL thread %d, %s, %d threads: %s\n", w->index, c->name, threads,
                       mha_status_message(st));
        } else if (memcmp(w->out, c->expected, c->out_elems * sizeof(float)) != 0) {
            if (w->mismatches++ < 5)
                printf("FAIL thread %d, %s, %d threads: differs from the serial result\n", w->index,
                       c->name, threads);
        }
    }
    return NULL;
}

/* Resident set in bytes, from /proc/self/statm (second field, pages). */
static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = -1;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            resident = -1;
        fclose(f);
    }
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void sleep_until(double t)
{
    for (double d = t - now(); d > 0; d = t - now()) {
        struct timespec s = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        nanosleep(&s, NULL);
    }
}

static long env_long(const char *name, long def, long lo, long hi)
{
    const char *s = getenv(name);
    char *end;
    long v = s && *s ? strtol(s, &end, 10) : def;
    if (s && *s && (*end || v < lo || v > hi)) {
        fprintf(stderr, "soak: %s must be an integer in [%ld, %ld]\n", name, lo, hi);
        exit(2);
    }
    return v;
}

int main(void)
{
    const long seconds = env_long("MHA_SOAK_SECONDS", 30, 2, 7 * 24 * 3600);
    const int n_threads = (int)env_long("MHA_SOAK_THREADS", 4, 1, 64);
    rng = test_rng_seed(42);

    fixture fs[2];
    mha_config self = mha_config_default(64, 4);
    fixture_init(&fs[0], &self, 1, 1);
    mha_config cross = mha_config_default(48, 6);
    cross.num_kv_heads = 2;
    cross.kdim = 40;
    cross.vdim = 56;
    fixture_init(&fs[1], &cross, 0, 2);
    for (int i = 0; i < 2; i++)
        if (mha_model_create(&fs[i].cfg, &fs[i].w, &fs[i].model) != MHA_OK) {
            puts("FAIL: mha_model_create");
            return EXIT_FAILURE;
        }
    forward_cases(fs[0].model, fs[1].model);
    attention_cases();
    size_t ws_bytes;
    if (!prepare(fs, &ws_bytes))
        return EXIT_FAILURE;
    size_t out_elems = 0;
    for (int i = 0; i < n_cases; i++)
        out_elems = cases[i].out_elems > out_elems ? cases[i].out_elems : out_elems;

    worker *ws = calloc((size_t)n_threads, sizeof *ws);
    if (!ws)
        abort();
    printf("soak: %d application threads x %d cases x num_threads {0,1,2,3} on isa %s for %ld s\n",
           n_threads, n_cases, isa_now(), seconds);
    double t0 = now();
    for (int i = 0; i < n_threads; i++) {
        ws[i].index = i;
        ws[i].ws_bytes = ws_bytes;
        ws[i].ws = xmalloc(ws_bytes);
        ws[i].out = xmalloc(out_elems * sizeof(float));
        if (pthread_create(&ws[i].tid, NULL, work, &ws[i]) != 0) {
            puts("FAIL: pthread_create");
            return EXIT_FAILURE;
        }
    }
    /* Warm-up: every thread has built its OpenMP teams and touched its buffers. */
    double warm = seconds < 10 ? 1.0 : 5.0, step = seconds > 120 ? 30.0 : 5.0;
    sleep_until(t0 + warm);
    long rss0 = rss_bytes();
    for (double t = t0 + warm + step; t < t0 + (double)seconds; t += step) {
        sleep_until(t);
        printf("soak: %5.0f s, RSS %.1f MiB\n", t - t0, (double)rss_bytes() / 1048576.0);
        fflush(stdout);
    }
    sleep_until(t0 + (double)seconds);
    long rss1 = rss_bytes(); /* every thread still running */
    atomic_store(&stop, 1);
    long calls[N_KINDS] = {0}, mismatches = 0, failures = 0, total = 0;
    for (int i = 0; i < n_threads; i++) {
        pthread_join(ws[i].tid, NULL);
        for (int k = 0; k < N_KINDS; k++)
            calls[k] += ws[i].calls[k];
        mismatches += ws[i].mismatches;
        failures += ws[i].failures;
        free(ws[i].ws);
        free(ws[i].out);
    }
    double minutes = (now() - t0) / 60.0;
    for (int k = 0; k < N_KINDS; k++)
        total += calls[k];
    long growth = rss1 - rss0;
    int rss_ok = rss0 > 0 && rss1 > 0 && (growth <= RSS_BOUND || !RSS_CHECKED);
    printf("soak: threads %d, calls %ld (", n_threads, total);
    for (int k = 0; k < N_KINDS; k++)
        printf("%s%s %ld", k ? ", " : "", kind_name[k], calls[k]);
    printf("), minutes %.2f, mismatches %ld, failed calls %ld\n", minutes, mismatches, failures);
    printf("soak: RSS after warm-up (%.0f s) %.1f MiB, at the end %.1f MiB: growth %+ld KiB (bound %ld KiB) %s\n",
           warm, (double)rss0 / 1048576.0, (double)rss1 / 1048576.0, growth / 1024, RSS_BOUND / 1024,
           !RSS_CHECKED ? "not checked under ASan" : rss_ok ? "ok" : "FAIL");

    free(ws);
    for (int i = 0; i < n_blocks; i++)
        free(blocks[i]);
    fixture_free(&fs[0]);
    fixture_free(&fs[1]);
    int ok = mismatches == 0 && failures == 0 && rss_ok && total > 0;
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
