/* `mha demo`: a ViT-Base self-attention forward on random data, checked against the
 * float64 reference, then timed. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { DEMO_B = 1, DEMO_L = 197, DEMO_E = 768, DEMO_H = 12, WARMUPS = 3 };
#define MAX_REL_ERR 1e-4

typedef struct demo_data {
    float *x, *w_in, *b_in, *w_out, *b_out, *out, *ref;
} demo_data;

/* splitmix64: a fixed seed makes every run see the same data. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static float *uniform(size_t n, float bound, uint64_t *state)
{
    float *a = malloc(n * sizeof *a);
    for (size_t i = 0; a && i < n; i++)
        a[i] = bound * (2.0f * (float)(next_random(state) >> 40) * 0x1p-24f - 1.0f);
    return a;
}

static void demo_free(demo_data *d)
{
    free(d->x), free(d->w_in), free(d->b_in), free(d->w_out), free(d->b_out);
    free(d->out), free(d->ref);
}

static int demo_alloc(demo_data *d)
{
    uint64_t state = 42;
    const size_t e = DEMO_E, tokens = (size_t)DEMO_B * DEMO_L;
    const float w = 1.0f / sqrtf((float)DEMO_E); /* nn.Linear's init range */
    d->x = uniform(tokens * e, 1.0f, &state);
    d->w_in = uniform(3 * e * e, w, &state);
    d->b_in = uniform(3 * e, w, &state);
    d->w_out = uniform(e * e, w, &state);
    d->b_out = uniform(e, w, &state);
    d->out = malloc(tokens * e * sizeof(float));
    d->ref = malloc(tokens * e * sizeof(float));
    if (d->x && d->w_in && d->b_in && d->w_out && d->b_out && d->out && d->ref)
        return 0;
    fprintf(stderr, "mha demo: out of memory\n");
    return -1;
}

/* One forward against the float64 oracle; 0 when within MAX_REL_ERR. */
static int demo_check(const mha_model *model, const mha_config *cfg, const mha_weights *w,
                      mha_forward_args a, void *ws, size_t bytes, const demo_data *d)
{
    if (cli_check("demo", "mha_forward", mha_forward(model, &a, ws, bytes)))
        return -1;
    a.out = d->ref;
    if (cli_check("demo", "mha_reference_forward", mha_reference_forward(cfg, w, &a)))
        return -1;
    double rel = cli_rel_err(d->out, d->ref, (size_t)DEMO_B * DEMO_L * DEMO_E);
    int pass = rel <= MAX_REL_ERR;
    printf("check vs float64 reference: max rel err %.2g %s\n", rel, pass ? "PASS" : "FAIL");
    return pass ? 0 : -1;
}

/* Median time of `iters` forwards in ms, after WARMUPS untimed ones; < 0 on error. */
static double demo_time(const mha_model *model, const mha_forward_args *a, void *ws, size_t bytes,
                        int iters)
{
    double *t = malloc((size_t)iters * sizeof *t), median = -1;
    if (!t) {
        fprintf(stderr, "mha demo: out of memory\n");
        return -1;
    }
    for (int i = -WARMUPS; i < iters; i++) {
        double t0 = cli_now_ms();
        if (cli_check("demo", "mha_forward", mha_forward(model, a, ws, bytes)))
            goto done;
        if (i >= 0)
            t[i] = cli_now_ms() - t0;
    }
    median = cli_median(t, iters);
done:
    free(t);
    return median;
}

static double demo_flops(void)
{
    const double b = DEMO_B, l = DEMO_L, e = DEMO_E, h = DEMO_H, dh = e / h;
    return 2 * b * l * e * (3 * e) + 4 * b * h * l * l * dh + 2 * b * l * e * e;
}

static void print_setup(int threads)
{
    mha_runtime_info info;
    mha_get_runtime_info(&info);
    printf("mha demo: ViT-Base self-attention, B=%d L=%d E=%d H=%d\n", DEMO_B, DEMO_L, DEMO_E,
           DEMO_H);
    printf("isa %s, %s; threads %d\n", mha_isa_name(info.active_isa), info.choice,
           cli_threads(threads));
}

static int demo_run(const demo_data *d, int threads, int iters)
{
    mha_config cfg = mha_config_default(DEMO_E, DEMO_H);
    mha_weights w = {.in_proj_weight = d->w_in, .in_proj_bias = d->b_in,
                     .out_weight = d->w_out, .out_bias = d->b_out};
    mha_forward_args a = {.batch = DEMO_B, .len_q = DEMO_L, .query = d->x, .out = d->out,
                          .num_threads = threads};
    mha_model *model = NULL;
    size_t bytes = 0;
    void *ws = NULL;
    print_setup(threads);
    int rc = cli_check("demo", "mha_model_create", mha_model_create(&cfg, &w, &model)) ||
             cli_check("demo", "mha_forward_workspace_size",
                       mha_forward_workspace_size(model, DEMO_B, DEMO_L, DEMO_L, threads, &bytes));
    if (!rc && !(ws = malloc(bytes ? bytes : 1))) {
        fprintf(stderr, "mha demo: out of memory\n");
        rc = 1;
    }
    rc = rc || demo_check(model, &cfg, &w, a, ws, bytes, d);
    double ms = rc ? -1 : demo_time(model, &a, ws, bytes, iters);
    if (ms >= 0)
        printf("forward: median %.3f ms over %d runs, %.1f GFLOP/s\n", ms, iters,
               demo_flops() / (ms * 1e6));
    free(ws);
    mha_model_destroy(model);
    return ms >= 0 ? CLI_OK : CLI_FAIL;
}

int cli_demo(int argc, char **argv)
{
    int threads = 0, iters = 50;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v;
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            cli_usage(stdout);
            return CLI_OK;
        }
        int *dst = strcmp(f, "--threads") == 0 ? &threads
                   : strcmp(f, "--iters") == 0 ? &iters
                                                 : NULL;
        if (!dst)
            return cli_bad_arg("demo", f);
        if (!(v = cli_flag_value("demo", argc, argv, &i)) ||
            cli_parse_int("demo", f, v, dst == &iters ? 1 : 0,
                          dst == &iters ? INT_MAX : MHA_MAX_THREADS, dst))
            return CLI_USAGE;
    }
    demo_data d = {0};
    int rc = demo_alloc(&d) ? CLI_FAIL : demo_run(&d, threads, iters);
    demo_free(&d);
    return rc;
}
