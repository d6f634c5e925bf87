/* `mha run`: multi-head attention on a folder of .npy files named as in a PyTorch
 * state dict (see cli_usage): the flags, the timed calls, and the order that keeps a
 * failed run from writing anything. */
#define _POSIX_C_SOURCE 200809L

#include <float.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run.h"

/* ------------------------------------------------------------- compute */

/* One untimed call first (it pays for starting OpenMP's threads and faulting in the
 * workspace), then o->iters timed ones; their times go to t. */
static int forward_fast(const run_opts *o, const problem *p, double *t)
{
    mha_model *model = NULL;
    void *ws = NULL;
    size_t bytes = 0;
    int rc = cli_check("run", "mha_model_create", mha_model_create(&p->cfg, &p->w, &model)) ||
             cli_check("run", "mha_forward_workspace_size",
                       mha_forward_workspace_size(model, p->d.B, p->d.Lq, p->d.Lk,
                                                  p->args.num_threads, &bytes));
    if (!rc && !(ws = malloc(bytes ? bytes : 1))) {
        fprintf(stderr, "mha run: no memory for a %zu-byte workspace\n", bytes);
        rc = 1;
    }
    for (int i = -1; i < o->iters && !rc; i++) {
        double t0 = cli_now_ms();
        rc = cli_check("run", "mha_forward", mha_forward(model, &p->args, ws, bytes));
        if (i >= 0)
            t[i] = cli_now_ms() - t0;
    }
    free(ws);
    mha_model_destroy(model);
    return rc ? -1 : 0;
}

static int forward_reference(const run_opts *o, const problem *p, double *t)
{
    for (int i = -1; i < o->iters; i++) {
        double t0 = cli_now_ms();
        if (cli_check("run", "mha_reference_forward",
                      mha_reference_forward(&p->cfg, &p->w, &p->args)))
            return -1;
        if (i >= 0)
            t[i] = cli_now_ms() - t0;
    }
    return 0;
}

static void print_times(const run_opts *o, double *t)
{
    int n = o->iters;
    double median = cli_median(t, n); /* sorts t */
    printf("isa %s, threads %d: ", o->reference ? "float64 reference" : mha_isa_name(mha_active_isa()),
           o->reference ? 1 : cli_threads(o->threads));
    if (n == 1)
        printf("%.3f ms (one call after a warm-up call)\n", median);
    else
        printf("median %.3f ms, min %.3f, max %.3f over %d calls after a warm-up call\n", median,
               t[0], t[n - 1], n);
}

/* Everything that can fail without computing is checked first (the folder's names,
 * the --expect file, the output path), then the output is compared, and only a
 * run that passed writes it. */
static int run_problem(const run_opts *o, const run_files *fs, const problem *p)
{
    char path[PATH_MAX], err[PATH_MAX + 256], shape_text[160];
    const int64_t shape[3] = {p->d.B, p->d.Lq, p->d.out_width};
    if (o->out)
        snprintf(path, sizeof path, "%s", o->out);
    else
        run_join(path, sizeof path, o->dir, RUN_OUT_NAME);
    npy_array e = {0};
    double *t = malloc((size_t)o->iters * sizeof *t);
    int rc = -1;
    if (!t)
        fprintf(stderr, "mha run: out of memory\n");
    else if (run_check_output(path, fs, o->expect) ||
             (o->expect && run_load_expect(o->expect, shape, &e)) ||
             (o->reference ? forward_reference(o, p, t) : forward_fast(o, p, t)) ||
             (o->expect && run_compare_expect(&e, p, o->tol)))
        ; /* reported */
    else if (npy_save_f32(path, p->out, 3, shape, err, sizeof err))
        fprintf(stderr, "mha run: --out %s\n", err);
    else {
        printf("%s %s\n", path, run_fmt_shape(shape_text, sizeof shape_text, 3, shape));
        print_times(o, t);
        rc = 0;
    }
    if (rc)
        fprintf(stderr, "mha run: nothing written\n");
    npy_free(&e);
    free(t);
    return rc;
}

/* ------------------------------------------------------------ arguments */

typedef enum { V_HEADS, V_THREADS, V_ITERS, V_OFFSET, V_SCALE, V_TOL, V_PATH } value_kind;

static int set_value(const char *f, const char *v, value_kind kind, void *dst)
{
    int n;
    switch (kind) {
    case V_HEADS:
        return cli_parse_int("run", f, v, 1, INT_MAX, dst);
    case V_THREADS:
        return cli_parse_int("run", f, v, 0, MHA_MAX_THREADS, dst);
    case V_ITERS:
        return cli_parse_int("run", f, v, 1, 1000000, dst);
    case V_OFFSET:
        if (cli_parse_int("run", f, v, INT_MIN, INT_MAX, &n))
            return -1;
        *(int64_t *)dst = n;
        return 0;
    case V_SCALE:
        return cli_parse_double("run", f, v, -FLT_MAX, FLT_MAX, dst);
    case V_TOL:
        return cli_parse_double("run", f, v, 0, DBL_MAX, dst);
    case V_PATH:
        *(const char **)dst = v;
    }
    return 0;
}

/* The causal flags: at most one of them (checked in check_opts). */
static int parse_causal(const char *f, run_opts *o)
{
    if (strcmp(f, "--causal") == 0)
        o->causal = MHA_CAUSAL_BOTTOM_RIGHT;
    else if (strcmp(f, "--causal-top-left") == 0)
        o->causal = MHA_CAUSAL_EXPLICIT, o->causal_offset = 0;
    else if (strcmp(f, "--causal-offset") == 0)
        o->causal = MHA_CAUSAL_EXPLICIT;
    else
        return 0;
    o->causal_kinds++;
    return 1;
}

static int parse_flag(int argc, char **argv, int *i, run_opts *o)
{
    const struct {
        const char *name;
        value_kind kind;
        void *dst;
    } valued[] = {
        {"--heads", V_HEADS, &o->heads},       {"--kv-heads", V_HEADS, &o->kv_heads},
        {"--threads", V_THREADS, &o->threads}, {"--iters", V_ITERS, &o->iters},
        {"--causal-offset", V_OFFSET, &o->causal_offset},
        {"--scale", V_SCALE, &o->scale},       {"--tol", V_TOL, &o->tol},
        {"--out", V_PATH, &o->out},            {"--expect", V_PATH, &o->expect},
    };
    const char *f = argv[*i];
    int causal = parse_causal(f, o);
    if (strcmp(f, "--reference") == 0)
        o->reference = 1;
    else if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0)
        o->help = 1;
    else {
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) {
            if (strcmp(f, valued[k].name) != 0)
                continue;
            const char *v = cli_flag_value("run", argc, argv, i);
            return v && !set_value(f, v, valued[k].kind, valued[k].dst) ? CLI_OK : CLI_USAGE;
        }
        if (!causal)
            return cli_bad_arg("run", f);
    }
    return CLI_OK;
}

static int check_opts(run_opts *o)
{
    if (!o->dir) {
        fprintf(stderr, "mha run: missing DIR (see mha --help)\n");
        return CLI_USAGE;
    }
    if (!o->heads) {
        fprintf(stderr, "mha run: --heads H is required: the weight files do not record the "
                        "head count (it is num_heads of nn.MultiheadAttention(E, num_heads))\n");
        return CLI_USAGE;
    }
    if (o->causal_kinds > 1) {
        fprintf(stderr, "mha run: give at most one of --causal, --causal-top-left and "
                        "--causal-offset N\n");
        return CLI_USAGE;
    }
    if (o->tol >= 0 && !o->expect) {
        fprintf(stderr, "mha run: --tol needs --expect\n");
        return CLI_USAGE;
    }
    if (o->tol < 0)
        o->tol = 2e-5;
    if (o->kv_heads && o->heads % o->kv_heads) {
        fprintf(stderr, "mha run: --kv-heads %d does not divide --heads %d\n", o->kv_heads,
                o->heads);
        return CLI_USAGE;
    }
    return CLI_OK;
}

static int parse_args(int argc, char **argv, run_opts *o)
{
    for (int i = 1; i < argc; i++) {
        int rc = argv[i][0] == '-' && argv[i][1] ? parse_flag(argc, argv, &i, o)
                 : o->dir                        ? cli_bad_arg("run", argv[i])
                                                 : (o->dir = argv[i], CLI_OK);
        if (rc != CLI_OK)
            return rc;
    }
    return o->help ? CLI_OK : check_opts(o);
}

int cli_run(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) /* the seq2seq attention modules: cli_additive.c */
        if (strcmp(argv[i], "--module") == 0)
            return cli_additive(argc, argv);
    run_opts o = {.tol = -1, .iters = 1}; /* tol < 0: not given */
    int rc = parse_args(argc, argv, &o);
    if (rc != CLI_OK || o.help) {
        if (o.help && rc == CLI_OK)
            cli_usage(stdout);
        return rc;
    }
    run_files fs = {.dir = o.dir};
    problem p = {0};
    rc = run_check_folder(o.dir, o.out, o.expect) || run_load_files(&fs) ||
                 run_build_problem(&fs, &o, &p) || run_problem(&o, &fs, &p)
             ? CLI_FAIL
             : CLI_OK;
    for (int id = 0; id < F_COUNT; id++)
        npy_free(&fs.a[id]);
    free(p.key_lengths);
    free(p.out);
    return rc;
}
