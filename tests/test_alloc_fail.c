/* Allocation-failure injection: every allocation made by mha_model_create and the
 * mha_reference_* oracles fails in turn, and each call must return
 * MHA_ERR_NO_MEMORY, leave its outputs (*model, out) untouched and free whatever it
 * had allocated. The binary is linked with -Wl,--wrap for the allocator functions,
 * so the library's calls reach the wrappers below without any hook inside the
 * library; the wrappers fail the n-th allocation of a call and track the blocks
 * the call still holds. Under ASan, LeakSanitizer checks the same at exit. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void __real_free(void *p);

/* Injection state: only armed around the call under test (single-threaded). */
static int armed;
static long calls, fail_at;
#define MAX_LIVE 256
static void *live[MAX_LIVE]; /* blocks allocated while armed and not yet freed */
static int n_live, live_overflow;

/* 1 if this allocation must fail. */
static int inject(void)
{
    return armed && calls++ == fail_at;
}

static void *track(void *p)
{
    if (armed && p) {
        if (n_live < MAX_LIVE)
            live[n_live++] = p;
        else
            live_overflow = 1;
    }
    return p;
}

static void untrack(void *p)
{
    for (int i = 0; i < n_live; i++)
        if (live[i] == p) {
            live[i] = live[--n_live];
            return;
        }
}

void *__wrap_malloc(size_t n)
{
    return inject() ? NULL : track(__real_malloc(n));
}

void *__wrap_calloc(size_t n, size_t m)
{
    return inject() ? NULL : track(__real_calloc(n, m));
}

void *__wrap_realloc(void *p, size_t n)
{
    if (inject())
        return NULL;
    void *q = __real_realloc(p, n);
    if (q)
        untrack(p);
    return track(q);
}

void *__wrap_aligned_alloc(size_t a, size_t n)
{
    return inject() ? NULL : track(__real_aligned_alloc(a, n));
}

int __wrap_posix_memalign(void **p, size_t a, size_t n)
{
    if (inject())
        return 12; /* ENOMEM */
    int r = __real_posix_memalign(p, a, n);
    if (r == 0)
        track(*p);
    return r;
}

void __wrap_free(void *p)
{
    untrack(p);
    __real_free(p);
}

static int failures;

#define expect(cond, ...)                                                                         \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                           \
            printf(__VA_ARGS__);                                                                  \
            printf("\n");                                                                         \
            failures++;                                                                           \
        }                                                                                         \
    } while (0)

/* One entry under test: runs the call with allocation `fail_at` failing (-1: none),
 * returns its status and reports in *allocations how many it attempted. `ctx`
 * holds the arguments; `undo` releases what a successful call created. */
typedef struct entry {
    const char *name;
    mha_status (*call)(void *ctx);
    int (*untouched)(void *ctx); /* 1 if the call wrote nothing the caller owns */
    void (*undo)(void *ctx);
    void *ctx;
} entry;

static mha_status run(const entry *e, long fail, long *allocations)
{
    calls = 0;
    fail_at = fail;
    n_live = 0;
    live_overflow = 0;
    armed = 1;
    mha_status st = e->call(e->ctx);
    armed = 0;
    *allocations = calls;
    return st;
}

/* Fails each allocation of the entry in turn, then checks the successful call. */
static void inject_all(const entry *e, long min_sites)
{
    long total;
    mha_status st = run(e, -1, &total);
    expect(st == MHA_OK, "%s without injection: %s", e->name, mha_status_message(st));
    if (st == MHA_OK)
        e->undo(e->ctx);
    expect(total >= min_sites, "%s: %ld allocations seen, expected at least %ld (wrappers not linked?)",
           e->name, total, min_sites);
    for (long n = 0; n < total; n++) {
        long seen;
        st = run(e, n, &seen);
        expect(st == MHA_ERR_NO_MEMORY, "%s, allocation %ld of %ld failing: %s", e->name, n + 1, total,
               mha_status_message(st));
        expect(e->untouched(e->ctx), "%s, allocation %ld failing: output written", e->name, n + 1);
        expect(n_live == 0 && !live_overflow, "%s, allocation %ld failing: %d blocks leaked", e->name,
               n + 1, n_live);
        if (st == MHA_OK)
            e->undo(e->ctx);
    }
    /* After a success, destroying the model must free every block creation made. */
    st = run(e, -1, &total);
    if (st == MHA_OK)
        e->undo(e->ctx);
    expect(n_live == 0, "%s: %d blocks still allocated after undo", e->name, n_live);
    printf("%-40s %ld allocation sites, each failed in turn: NO_MEMORY, untouched, nothing leaked\n",
           e->name, total);
}

/* ------------------------------------------------------------ mha_model_create */

#define MODEL_SENTINEL ((mha_model *)(uintptr_t)0x5A5A5A5A)

typedef struct create_ctx {
    fixture f;
    mha_model *model;
} create_ctx;

static mha_status create_call(void *p)
{
    create_ctx *c = p;
    c->model = MODEL_SENTINEL;
    return mha_model_create(&c->f.cfg, &c->f.w, &c->model);
}

static int create_untouched(void *p)
{
    return ((create_ctx *)p)->model == MODEL_SENTINEL;
}

static void create_undo(void *p)
{
    create_ctx *c = p;
    mha_model_destroy(c->model);
    c->model = MODEL_SENTINEL;
}

/* ------------------------------------------------------- mha_reference_forward */

typedef struct forward_ctx {
    fixture f;
    mha_forward_args a;
    size_t out_bytes;
} forward_ctx;

static mha_status forward_call(void *p)
{
    forward_ctx *c = p;
    fill_sentinel(c->a.out, c->out_bytes);
    return mha_reference_forward(&c->f.cfg, &c->f.w, &c->a);
}

static int forward_untouched(void *p)
{
    forward_ctx *c = p;
    return is_sentinel(c->a.out, c->out_bytes);
}

static void nothing(void *p)
{
    (void)p;
}

/* ----------------------------------------------------- mha_reference_attention */

typedef struct attention_ctx {
    mha_attention_args a;
    size_t out_bytes;
} attention_ctx;

static mha_status attention_call(void *p)
{
    attention_ctx *c = p;
    fill_sentinel(c->a.out, c->out_bytes);
    return mha_reference_attention(&c->a);
}

static int attention_untouched(void *p)
{
    attention_ctx *c = p;
    return is_sentinel(c->a.out, c->out_bytes);
}

int main(void)
{
    test_rng r = test_rng_seed(9);

    /* Model creation: fused and separate weights, with and without biases and the
     * output projection, GQA with d_k != d_v. At least the model and one panel per
     * projection are allocated. */
    struct {
        const char *name;
        int64_t E, H, G, dk, dv;
        int bias, out_proj, fused;
        long min_sites;
    } models[] = {
        {"mha_model_create fused, bias, out_proj", 32, 4, 0, 0, 0, 1, 1, 1, 9},
        {"mha_model_create separate, no bias", 24, 4, 2, 8, 4, 0, 1, 0, 5},
        {"mha_model_create fused, no out_proj", 16, 2, 1, 0, 0, 1, 0, 1, 7},
    };
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        create_ctx c;
        mha_config cfg = mha_config_default(models[i].E, models[i].H);
        cfg.num_kv_heads = models[i].G;
        cfg.head_dim_qk = models[i].dk;
        cfg.head_dim_v = models[i].dv;
        cfg.has_bias = models[i].bias;
        cfg.has_out_proj = models[i].out_proj;
        fixture_init(&c.f, &cfg, models[i].fused, 100 + i);
        entry e = {models[i].name, create_call, create_untouched, create_undo, &c};
        inject_all(&e, models[i].min_sites);
        fixture_free(&c.f);
    }

    /* The float64 oracles, cross-attention with every mask kind. */
    {
        forward_ctx c;
        mha_config cfg = mha_config_default(16, 2);
        cfg.kdim = 12;
        cfg.vdim = 20;
        fixture_init(&c.f, &cfg, 0, 7);
        const int64_t B = 2, Lq = 5, Lk = 7;
        float *x = test_random(&r, (size_t)(B * Lq * 16), -1, 1);
        float *k = test_random(&r, (size_t)(B * Lk * 12), -1, 1);
        float *v = test_random(&r, (size_t)(B * Lk * 20), -1, 1);
        c.out_bytes = (size_t)(B * Lq * 16) * sizeof(float);
        float *out = xmalloc(c.out_bytes);
        const int32_t lens[2] = {7, 3};
        c.a = (mha_forward_args){.batch = B, .len_q = Lq, .len_k = Lk, .query = x, .key = k,
                                 .value = v, .out = out};
        c.a.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
        c.a.mask.key_lengths = lens;
        entry e = {"mha_reference_forward", forward_call, forward_untouched, nothing, &c};
        inject_all(&e, 5);
        free(out);
        free(v);
        free(k);
        free(x);
        fixture_free(&c.f);
    }
    {
        attention_ctx c;
        const int64_t B = 2, H = 4, G = 2, Lq = 3, Lk = 9, d = 8;
        float *q = test_random(&r, (size_t)(B * H * Lq * d), -1, 1);
        float *kv = test_random(&r, (size_t)(B * G * Lk * d), -1, 1);
        float *fm = test_random(&r, (size_t)(Lq * Lk), -1, 1);
        c.out_bytes = (size_t)(B * H * Lq * d) * sizeof(float);
        float *out = xmalloc(c.out_bytes);
        c.a = (mha_attention_args){.batch = B, .num_heads = H, .num_kv_heads = G, .len_q = Lq,
                                   .len_k = Lk, .head_dim_qk = d, .head_dim_v = d, .q = q,
                                   .q_stride = {H * Lq * d, Lq * d, d}, .k = kv,
                                   .k_stride = {G * Lk * d, Lk * d, d}, .v = kv,
                                   .v_stride = {G * Lk * d, Lk * d, d}, .out = out,
                                   .out_stride = {H * Lq * d, Lq * d, d}};
        c.a.mask.float_mask = (mha_mask_tensor){fm, 0, 0, Lk};
        entry e = {"mha_reference_attention", attention_call, attention_untouched, nothing, &c};
        inject_all(&e, 5);
        free(out);
        free(fm);
        free(kv);
        free(q);
    }

    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
