/* `mha run --module additive|concat DIR`: the seq2seq attention modules on a folder
 * of .npy files (additive_folder.h), writing out.npy and weights.npy. */
#define _POSIX_C_SOURCE 200809L

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "additive_folder.h"
#include "cli.h"

static const char usage[] =
    "usage: mha run --module additive|concat [--causal] [--threads N] [--out FILE]\n"
    "               [--weights-out FILE] [--expect FILE] [--expect-weights FILE]\n"
    "               [--tol T] [--weights-tol T] [--reference] DIR\n"
    "  The seq2seq attention modules on the .npy files in DIR (state-dict names, '.' -> '_'):\n"
    "  concat:   query [B,Dq], key [B,Dk], value [B,max_len,Dv], attn_weight [max_len,Dq+Dk],\n"
    "            attn_bias, attn_combine_weight [O,Dq+Dv], attn_combine_bias (biases optional)\n"
    "  additive: query [B,Lq,Dq], key [B,Lk,Dk], value [B,Lk,Dv], W_q_weight [h,Dq],\n"
    "            W_k_weight [h,Dk], w_v_weight [1,h], optional W_q_bias/W_k_bias [h],\n"
    "            valid_lens (int32 [B] or [B,Lq]), bool_mask (uint8 [B,Lq,Lk], nonzero = attend)\n"
    "  Writes out.npy and weights.npy (default in DIR).\n"
    "    --causal             causal mask, bottom-right aligned (additive only)\n"
    "    --threads N          OpenMP threads (default 0 = OpenMP's default)\n"
    "    --expect FILE        out: max |diff| / max |expected| <= --tol (default 2e-5)\n"
    "    --expect-weights F   weights: max |diff| <= --weights-tol (default 1e-6)\n"
    "    --reference          compute with the float64 reference instead\n";

typedef struct add_opts {
    const char *module, *dir, *out, *weights_out, *expect, *expect_weights;
    int causal, threads, reference, help;
    double tol, weights_tol;
} add_opts;

static int parse(int argc, char **argv, add_opts *o)
{
    static const char *const paths[] = {"--module", "--out", "--weights-out", "--expect",
                                        "--expect-weights"};
    const char **dst[] = {&o->module, &o->out, &o->weights_out, &o->expect, &o->expect_weights};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = NULL;
        int done = 0;
        for (size_t k = 0; k < sizeof paths / sizeof paths[0] && !done; k++)
            if (strcmp(f, paths[k]) == 0) {
                if (!(v = cli_flag_value("run", argc, argv, &i)))
                    return CLI_USAGE;
                *dst[k] = v;
                done = 1;
            }
        if (done)
            continue;
        if (strcmp(f, "--causal") == 0)
            o->causal = 1;
        else if (strcmp(f, "--reference") == 0)
            o->reference = 1;
        else if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0)
            o->help = 1;
        else if (strcmp(f, "--threads") == 0) {
            if (!(v = cli_flag_value("run", argc, argv, &i)) ||
                cli_parse_int("run", f, v, 0, INT_MAX, &o->threads))
                return CLI_USAGE;
        } else if (strcmp(f, "--tol") == 0 || strcmp(f, "--weights-tol") == 0) {
            if (!(v = cli_flag_value("run", argc, argv, &i)) ||
                cli_parse_double("run", f, v, 0, DBL_MAX, f[2] == 't' ? &o->tol : &o->weights_tol))
                return CLI_USAGE;
        } else if (f[0] != '-' && !o->dir)
            o->dir = f;
        else
            return cli_bad_arg("run", f);
    }
    if (o->help)
        return CLI_OK;
    if (!o->module || (strcmp(o->module, "additive") != 0 && strcmp(o->module, "concat") != 0)) {
        fprintf(stderr, "mha run: --module must be additive or concat\n");
        return CLI_USAGE;
    }
    if (!o->dir) {
        fprintf(stderr, "mha run: missing DIR (see mha run --module additive --help)\n");
        return CLI_USAGE;
    }
    return CLI_OK;
}

static int compute(const add_opts *o, additive_folder *f, double *ms)
{
    const int concat = f->module == MODULE_CONCAT;
    mha_status st;
    double t0 = cli_now_ms();
    if (o->reference) {
        st = concat ? mha_reference_concat(&f->ccfg, &f->cw, &f->cargs)
                    : mha_reference_additive(&f->acfg, &f->aw, &f->aargs);
        *ms = cli_now_ms() - t0;
        return cli_check("run", concat ? "mha_reference_concat" : "mha_reference_additive", st);
    }
    mha_additive_model *am = NULL;
    mha_concat_model *cm = NULL;
    size_t bytes = 0;
    void *ws = NULL;
    st = concat ? mha_concat_model_create(&f->ccfg, &f->cw, &cm)
                : mha_additive_model_create(&f->acfg, &f->aw, &am);
    if (st == MHA_OK)
        st = concat ? mha_concat_workspace_size(cm, f->cargs.batch, o->threads, &bytes)
                    : mha_additive_workspace_size(am, f->aargs.batch, f->aargs.len_q,
                                                  f->aargs.len_k, o->threads, &bytes);
    if (st == MHA_OK && !(ws = malloc(bytes ? bytes : 1)))
        st = MHA_ERR_NO_MEMORY;
    /* The timed call is the second: the first pays for starting OpenMP's threads. */
    for (int i = 0; i < 2 && st == MHA_OK; i++) {
        t0 = cli_now_ms();
        st = concat ? mha_concat_forward(cm, &f->cargs, ws, bytes)
                    : mha_additive_forward(am, &f->aargs, ws, bytes);
        *ms = cli_now_ms() - t0;
    }
    free(ws);
    mha_concat_model_destroy(cm);
    mha_additive_model_destroy(am);
    return cli_check("run", concat ? "mha_concat_forward" : "mha_additive_forward", st);
}

/* 0 if the file holds float32 of the given shape within tol (relative to its max |x|
 * when rel, else absolute). */
static int expect(const char *path, const float *got, int ndim, const int64_t *shape, double tol,
                  int rel, const char *what)
{
    npy_array e;
    char err[PATH_MAX + 256];
    if (npy_load(path, &e, err, sizeof err)) {
        fprintf(stderr, "mha run: %s\n", err);
        return -1;
    }
    int ok = e.dtype == NPY_F32 && e.ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = e.shape[i] == shape[i];
    if (!ok) {
        fprintf(stderr, "mha run: %s: not float32 of the %s's shape\n", path, what);
        npy_free(&e);
        return -1;
    }
    cli_err err_sum = {0};
    cli_err_add(&err_sum, got, e.data, e.count);
    const double d = rel ? cli_err_rel(&err_sum) : err_sum.nan ? NAN : err_sum.max_diff;
    npy_free(&e);
    int pass = d <= tol;
    printf("%s: max |diff|%s = %.3g (tol %g): %s\n", what, rel ? " / max |expected|" : "", d, tol,
           pass ? "PASS" : "FAIL");
    return pass ? 0 : -1;
}

static int save(const char *path, const char *dir, const char *name, const float *x, int ndim,
                const int64_t *shape)
{
    char buf[PATH_MAX], err[PATH_MAX + 256];
    if (!path) {
        snprintf(buf, sizeof buf, "%s/%s", dir, name);
        path = buf;
    }
    if (npy_save_f32(path, x, ndim, shape, err, sizeof err)) {
        fprintf(stderr, "mha run: %s\n", err);
        return -1;
    }
    return 0;
}

int cli_additive(int argc, char **argv)
{
    add_opts o = {.tol = 2e-5, .weights_tol = 1e-6};
    int rc = parse(argc, argv, &o);
    if (rc != CLI_OK || o.help) {
        if (o.help && rc == CLI_OK)
            fputs(usage, stdout);
        return rc;
    }
    additive_folder f;
    char err[PATH_MAX + 256];
    double ms = 0;
    const additive_module module = strcmp(o.module, "concat") == 0 ? MODULE_CONCAT : MODULE_ADDITIVE;
    if (additive_folder_load(o.dir, module, o.causal, o.threads, &f, err, sizeof err)) {
        fprintf(stderr, "mha run: %s\n", err);
        additive_folder_free(&f);
        return CLI_FAIL;
    }
    rc = compute(&o, &f, &ms) ||
         save(o.out, o.dir, "out.npy", f.out, f.out_ndim, f.out_shape) ||
         save(o.weights_out, o.dir, "weights.npy", f.weights, f.weights_ndim, f.weights_shape);
    if (!rc)
        printf("%s module: isa %s, threads %d, %.3f ms\n", o.module,
               o.reference ? "float64 reference" : mha_isa_name(mha_active_isa()),
               o.reference ? 1 : cli_threads(o.threads), ms);
    if (!rc && o.expect)
        rc = expect(o.expect, f.out, f.out_ndim, f.out_shape, o.tol, 1, "out");
    if (!rc && o.expect_weights)
        rc = expect(o.expect_weights, f.weights, f.weights_ndim, f.weights_shape, o.weights_tol, 0,
                    "weights");
    additive_folder_free(&f);
    return rc ? CLI_FAIL : CLI_OK;
}
