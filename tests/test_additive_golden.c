/*
 * Golden vectors of the seq2seq attention modules, exported from PyTorch into
 * tests/golden_additive/<case>/ (the folder format of `mha run --module`, loaded by
 * the CLI's own loader). For every case, the fast path on the active ISA and the
 * float64 oracle must give
 *   max |out - expected| <= 2e-5 * max |expected|,  max |weights - expected| <= 1e-6.
 * No OpenMP outside START_TEST bodies (Check forks each test).
 */
#define _POSIX_C_SOURCE 200809L /* opendir */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "additive_folder.h"
#include "testutil.h"

#ifdef MHA_GOLDEN_ADDITIVE_DIR

/* flags.txt: "--module additive|concat" and optionally "--causal". */
static void parse_flags(const char *dir, additive_module *module, int *causal)
{
    char path[1200], line[256];
    snprintf(path, sizeof path, "%s/flags.txt", dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    int have_module = 0;
    *causal = 0;
    for (char *tok = strtok(line, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
        if (strcmp(tok, "--causal") == 0) {
            *causal = 1;
        } else if (strcmp(tok, "--module") == 0) {
            const char *v = strtok(NULL, " \t\r\n");
            ck_assert_msg(v && (strcmp(v, "additive") == 0 || strcmp(v, "concat") == 0),
                          "%s: --module %s", path, v ? v : "(none)");
            *module = strcmp(v, "concat") == 0 ? MODULE_CONCAT : MODULE_ADDITIVE;
            have_module = 1;
        } else {
            ck_abort_msg("%s: unknown flag %s", path, tok);
        }
    }
    ck_assert_msg(have_module, "%s: no --module", path);
}

static npy_array load_expected(const char *dir, const char *file, int ndim, const int64_t *shape)
{
    char path[1200], err[1400];
    npy_array e;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    ck_assert_msg(npy_load(path, &e, err, sizeof err) == 0, "%s", err);
    int ok = e.dtype == NPY_F32 && e.ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = e.shape[i] == shape[i];
    ck_assert_msg(ok, "%s: not float32 of the output's shape", path);
    return e;
}

/* max |a - b| (and max |b| into *top); NaN where they disagree on NaN. */
static double diff_max(const float *a, const float *b, size_t n, double *top)
{
    double d = 0;
    *top = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i]))
            return NAN;
        /* no fmax: it crashes aarch64 gcc 12's vectorizer */
        if (fabs((double)a[i] - (double)b[i]) > d)
            d = fabs((double)a[i] - (double)b[i]);
        if (fabs((double)b[i]) > *top)
            *top = fabs((double)b[i]);
    }
    return d;
}

/* Runs one case on the fast path (reference = 0) or the oracle and checks it;
 * returns its module. */
static additive_module check_case(const char *name, int reference)
{
    char dir[1024], err[1200];
    snprintf(dir, sizeof dir, "%s/%s", MHA_GOLDEN_ADDITIVE_DIR, name);
    additive_module module = MODULE_ADDITIVE;
    int causal;
    parse_flags(dir, &module, &causal);
    additive_folder f;
    int rc = additive_folder_load(dir, module, causal, 2, &f, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    const int concat = module == MODULE_CONCAT;
    mha_status st;
    if (reference) {
        st = concat ? mha_reference_concat(&f.ccfg, &f.cw, &f.cargs)
                    : mha_reference_additive(&f.acfg, &f.aw, &f.aargs);
    } else {
        mha_additive_model *am = NULL;
        mha_concat_model *cm = NULL;
        size_t bytes = 0;
        st = concat ? mha_concat_model_create(&f.ccfg, &f.cw, &cm)
                    : mha_additive_model_create(&f.acfg, &f.aw, &am);
        ck_assert_msg(st == MHA_OK, "%s: create: %s", name, mha_status_message(st));
        st = concat ? mha_concat_workspace_size(cm, f.cargs.batch, 2, &bytes)
                    : mha_additive_workspace_size(am, f.aargs.batch, f.aargs.len_q, f.aargs.len_k, 2,
                                                  &bytes);
        ck_assert_msg(st == MHA_OK, "%s: workspace: %s", name, mha_status_message(st));
        void *ws = xmalloc(bytes);
        st = concat ? mha_concat_forward(cm, &f.cargs, ws, bytes)
                    : mha_additive_forward(am, &f.aargs, ws, bytes);
        free(ws);
        mha_concat_model_destroy(cm);
        mha_additive_model_destroy(am);
    }
    ck_assert_msg(st == MHA_OK, "%s: %s", name, mha_status_message(st));
    npy_array e = load_expected(dir, "expected.npy", f.out_ndim, f.out_shape);
    npy_array ew = load_expected(dir, "expected_weights.npy", f.weights_ndim, f.weights_shape);
    double top, topw;
    const double d = diff_max(f.out, e.data, e.count, &top);
    const double dw = diff_max(f.weights, ew.data, ew.count, &topw);
    const char *v = getenv("MHA_TEST_VERBOSE");
    if (v && *v && *v != '0')
        printf("  golden_additive: %-24s %s out %.3g weights %.3g\n", name,
               reference ? "reference" : isa_now(), d / (top > 0 ? top : 1), dw);
    ck_assert_msg(d <= 2e-5 * top, "%s (%s): max |out - expected| = %.3g > 2e-5 * %.3g", name,
                  reference ? "float64 reference" : isa_now(), d, top);
    ck_assert_msg(dw <= 1e-6, "%s (%s): max |weights - expected| = %.3g > 1e-6", name,
                  reference ? "float64 reference" : isa_now(), dw);
    npy_free(&e);
    npy_free(&ew);
    additive_folder_free(&f);
    return module;
}

START_TEST(test_golden_additive_cases)
{
    DIR *d = opendir(MHA_GOLDEN_ADDITIVE_DIR);
    ck_assert_msg(d != NULL, "cannot open %s", MHA_GOLDEN_ADDITIVE_DIR);
    int seen[2] = {0, 0};
    for (struct dirent *e = readdir(d); e; e = readdir(d)) {
        char path[1200];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", MHA_GOLDEN_ADDITIVE_DIR, e->d_name);
        if (e->d_name[0] == '.' || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            continue; /* README.md */
        check_case(e->d_name, 1);
        seen[check_case(e->d_name, 0) == MODULE_CONCAT]++;
    }
    closedir(d);
    ck_assert_msg(seen[0] > 0 && seen[1] > 0, "%d additive and %d concat cases: need both", seen[0],
                  seen[1]);
}
END_TEST

#endif

Suite *suite_additive_golden(void)
{
    Suite *s = suite_create("additive_golden");
    TCase *tc = tcase_create("pytorch");
    tcase_set_timeout(tc, 120);
#ifdef MHA_GOLDEN_ADDITIVE_DIR
    tcase_add_test(tc, test_golden_additive_cases);
#endif
    suite_add_tcase(s, tc);
    return s;
}
