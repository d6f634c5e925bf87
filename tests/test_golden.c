/*
 * Golden vectors: cases exported from torch.nn.MultiheadAttention by
 * tools/gen_golden.py into tests/golden/<case>/, in the folder format of
 * `mha run` (README.md). Each case is loaded with npy_load, its flags.txt parsed
 * (--heads N, --kv-heads G, --causal, --causal-top-left, --causal-offset N,
 * --scale S), the config, weights and mask built the way the CLI builds them, and
 *   max |out - expected| <= 2e-5 * max |expected|
 * is asserted for mha_forward (the active ISA) and for mha_reference_forward, over
 * the rows expected.npy does not leave all NaN. The fully_masked_* cases have such
 * rows (a query row that sees no key: PyTorch gives NaN, mha a zero head row before
 * the output projection); there the output must be free of NaN.
 * PyTorch's own float32 output differs from its float64 one by < 2e-7 of the
 * maximum on these cases (the generator prints it), so the bound is dominated by
 * our float32 accumulation, not by the expected values.
 *
 * No OpenMP and no mha_forward outside START_TEST bodies (Check forks each test).
 */
#define _POSIX_C_SOURCE 200809L /* opendir */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"
#include "testutil.h"

#ifndef MHA_GOLDEN_DIR
#error "MHA_GOLDEN_DIR must name the tests/golden directory"
#endif

#define GOLDEN_TOL 2e-5

/* Every case folder under tests/golden (tools/gen_golden.py writes them). */
static const char *const golden_cases[] = {
    "self_fused_bias",
    "self_fused_nobias",
    "self_one_head",
    "batch4",
    "cross_fused",
    "cross_kvdim",
    "cross_kvdim_nobias",
    "bool_mask_2d",
    "float_mask_2d",
    "bool_mask_batch",
    "bool_mask_4d",
    "float_mask_4d",
    "key_padding",
    "key_padding_self",
    "causal_self",
    "causal_cross",
    "causal_key_padding",
    "key_padding_float_mask",
    "scale",
    "scale_causal_cross",
    "gqa_fused",
    "mqa_cross_kvdim",
    "key_padding_int64",
    "causal_top_left_cross",
    "causal_top_left_long_query",
    "causal_offset",
    "fully_masked_rows",
    "fully_masked_head",
};
#define N_GOLDEN ((int)(sizeof golden_cases / sizeof golden_cases[0]))

/* The files of one case; an absent optional file has data == NULL. */
typedef struct golden {
    const char *name;
    npy_array query, key, value, in_w, in_b, q_w, k_w, v_w, q_b, k_b, v_b, out_w, out_b, mask,
        key_lengths, expected;
    int64_t heads, kv_heads;
    mha_causal causal;
    int64_t causal_offset;
    float scale;
} golden;

static int file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

/* Loads DIR/<case>/<file>.npy into a. Optional files may be absent. */
static void load(const golden *g, const char *file, npy_array *a, int required)
{
    char path[1024], err[512];
    memset(a, 0, sizeof *a);
    snprintf(path, sizeof path, "%s/%s/%s.npy", MHA_GOLDEN_DIR, g->name, file);
    if (!file_exists(path)) {
        ck_assert_msg(!required, "%s: missing %s", g->name, path);
        return;
    }
    int rc = npy_load(path, a, err, sizeof err);
    ck_assert_msg(rc == 0, "%s: npy_load: %s", g->name, err);
}

static void load_f32(const golden *g, const char *file, npy_array *a, int required, int ndim)
{
    load(g, file, a, required);
    if (!a->data)
        return;
    ck_assert_msg(a->dtype == NPY_F32, "%s: %s.npy is %s, not float32", g->name, file,
                  npy_dtype_name(a->dtype));
    ck_assert_msg(a->ndim == ndim, "%s: %s.npy has %d dimensions, not %d", g->name, file, a->ndim,
                  ndim);
}

/* flags.txt: the `mha run` flags on one line. */
static void parse_flags(golden *g)
{
    char path[1024], line[512];
    snprintf(path, sizeof path, "%s/%s/flags.txt", MHA_GOLDEN_DIR, g->name);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: cannot open %s", g->name, path);
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    g->heads = 1;
    g->kv_heads = 0;
    g->causal = MHA_CAUSAL_NONE;
    g->causal_offset = 0;
    g->scale = 0.0f;
    const char *sep = " \t\r\n";
    for (char *tok = strtok(line, sep); tok; tok = strtok(NULL, sep)) {
        char *val = NULL, *end = NULL;
        if (strcmp(tok, "--causal") == 0) {
            g->causal = MHA_CAUSAL_BOTTOM_RIGHT;
        } else if (strcmp(tok, "--causal-top-left") == 0) {
            g->causal = MHA_CAUSAL_EXPLICIT;
        } else if (strcmp(tok, "--heads") == 0 || strcmp(tok, "--kv-heads") == 0 ||
                   strcmp(tok, "--scale") == 0 || strcmp(tok, "--causal-offset") == 0) {
            val = strtok(NULL, sep);
            ck_assert_msg(val != NULL, "%s: %s needs a value", g->name, tok);
            if (strcmp(tok, "--scale") == 0) {
                g->scale = strtof(val, &end);
            } else if (strcmp(tok, "--causal-offset") == 0) {
                g->causal = MHA_CAUSAL_EXPLICIT;
                g->causal_offset = strtol(val, &end, 10);
            } else {
                long v = strtol(val, &end, 10);
                ck_assert_msg(v > 0, "%s: %s %s", g->name, tok, val);
                *(strcmp(tok, "--heads") == 0 ? &g->heads : &g->kv_heads) = v;
            }
            ck_assert_msg(end && *end == '\0', "%s: bad value %s for %s", g->name, val, tok);
        } else {
            ck_abort_msg("%s: unknown flag %s in flags.txt", g->name, tok);
        }
    }
}

static void golden_free(golden *g)
{
    npy_array *all[] = {&g->query, &g->key, &g->value, &g->in_w, &g->in_b, &g->q_w,
                        &g->k_w, &g->v_w, &g->q_b, &g->k_b, &g->v_b, &g->out_w,
                        &g->out_b, &g->mask, &g->key_lengths, &g->expected};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->data)
            npy_free(all[i]);
}

/* Max |a - b| / max |b| (b's maximum, no floor: expected is O(1)) over the rows of
 * width w that b does not leave all NaN; a's rows there must hold no NaN. */
static double golden_err(const char *name, const float *a, const float *b, size_t rows, size_t w)
{
    double max_diff = 0, max_b = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *x = a + r * w, *y = b + r * w;
        size_t nan_b = 0;
        for (size_t k = 0; k < w; k++)
            nan_b += isnan(y[k]) != 0;
        for (size_t k = 0; k < w; k++) {
            if (nan_b == w) {
                ck_assert_msg(!isnan(x[k]), "%s: row %zu: NaN where PyTorch's row is NaN and "
                                            "mha's must not be", name, r);
                continue;
            }
            double d = fabs((double)x[k] - (double)y[k]);
            if (isnan(d))
                return NAN;
            max_diff = fmax(max_diff, d);
            max_b = fmax(max_b, fabs((double)y[k]));
        }
    }
    return max_diff / fmax(max_b, 1e-30);
}

START_TEST(test_golden_case)
{
    golden g;
    memset(&g, 0, sizeof g);
    g.name = golden_cases[_i];
    parse_flags(&g);

    load_f32(&g, "query", &g.query, 1, 3);
    load_f32(&g, "key", &g.key, 0, 3);
    load_f32(&g, "value", &g.value, 0, 3);
    load_f32(&g, "in_proj_weight", &g.in_w, 0, 2);
    load_f32(&g, "in_proj_bias", &g.in_b, 0, 1);
    load_f32(&g, "q_proj_weight", &g.q_w, 0, 2);
    load_f32(&g, "k_proj_weight", &g.k_w, 0, 2);
    load_f32(&g, "v_proj_weight", &g.v_w, 0, 2);
    load_f32(&g, "q_proj_bias", &g.q_b, 0, 1);
    load_f32(&g, "k_proj_bias", &g.k_b, 0, 1);
    load_f32(&g, "v_proj_bias", &g.v_b, 0, 1);
    load_f32(&g, "out_proj_weight", &g.out_w, 0, 2);
    load_f32(&g, "out_proj_bias", &g.out_b, 0, 1);
    load(&g, "mask", &g.mask, 0);
    load(&g, "key_lengths", &g.key_lengths, 0);
    load_f32(&g, "expected", &g.expected, 1, 3);

    /* shapes -> config, as `mha run` derives them */
    const int64_t B = g.query.shape[0], Lq = g.query.shape[1], E = g.query.shape[2];
    const int64_t H = g.heads, G = g.kv_heads ? g.kv_heads : g.heads;
    ck_assert_msg((g.key.data != NULL) == (g.value.data != NULL), "%s: key without value", g.name);
    int64_t Lk = Lq;
    mha_config c = mha_config_default(E, H);
    c.num_kv_heads = G;
    if (g.key.data) {
        Lk = g.key.shape[1];
        ck_assert_msg(g.key.shape[0] == B && g.value.shape[0] == B && g.value.shape[1] == Lk,
                      "%s: key/value shapes", g.name);
        c.kdim = g.key.shape[2];
        c.vdim = g.value.shape[2];
    }
    mha_weights w;
    memset(&w, 0, sizeof w);
    if (g.in_w.data) {
        ck_assert_msg(!g.q_w.data && !g.k_w.data && !g.v_w.data, "%s: fused and separate weights",
                      g.name);
        ck_assert_msg(g.in_w.shape[1] == E && g.in_w.shape[0] % (H + 2 * G) == 0,
                      "%s: in_proj_weight shape", g.name);
        c.head_dim_qk = c.head_dim_v = g.in_w.shape[0] / (H + 2 * G);
        c.has_bias = g.in_b.data != NULL;
        w.in_proj_weight = g.in_w.data;
        w.in_proj_bias = g.in_b.data;
    } else {
        ck_assert_msg(g.q_w.data && g.k_w.data && g.v_w.data, "%s: no projection weights", g.name);
        ck_assert_msg(g.q_w.shape[0] % H == 0 && g.k_w.shape[0] % G == 0 && g.v_w.shape[0] % G == 0,
                      "%s: projection rows not divisible by the heads", g.name);
        c.head_dim_qk = g.q_w.shape[0] / H;
        c.head_dim_v = g.v_w.shape[0] / G;
        ck_assert_msg(g.k_w.shape[0] == G * c.head_dim_qk && g.q_w.shape[1] == E,
                      "%s: projection shapes", g.name);
        c.kdim = g.k_w.shape[1];
        c.vdim = g.v_w.shape[1];
        c.has_bias = g.q_b.data != NULL;
        w.q_weight = g.q_w.data;
        w.k_weight = g.k_w.data;
        w.v_weight = g.v_w.data;
        w.q_bias = g.q_b.data;
        w.k_bias = g.k_b.data;
        w.v_bias = g.v_b.data;
    }
    c.has_out_proj = g.out_w.data != NULL;
    if (c.has_out_proj) {
        c.out_dim = g.out_w.shape[0];
        w.out_weight = g.out_w.data;
        w.out_bias = g.out_b.data;
    }
    c.scale = g.scale;
    const int64_t O = c.has_out_proj ? c.out_dim : H * c.head_dim_v;
    ck_assert_msg(g.expected.shape[0] == B && g.expected.shape[1] == Lq && g.expected.shape[2] == O,
                  "%s: expected.npy is not [%d, %d, %d]", g.name, (int)B, (int)Lq, (int)O);

    mha_forward_args a;
    memset(&a, 0, sizeof a);
    a.batch = B;
    a.len_q = Lq;
    a.len_k = Lk;
    a.query = g.query.data;
    a.key = g.key.data;
    a.value = g.value.data;
    a.mask.causal = g.causal;
    a.mask.causal_offset = g.causal_offset;
    int32_t key_lengths[64];
    if (g.key_lengths.data) {
        ck_assert_msg((g.key_lengths.dtype == NPY_I32 || g.key_lengths.dtype == NPY_I64) &&
                          g.key_lengths.ndim == 1 && g.key_lengths.shape[0] == B && B <= 64,
                      "%s: key_lengths.npy must be int32 or int64 [B]", g.name);
        for (int64_t b = 0; b < B; b++) {
            int64_t v = g.key_lengths.dtype == NPY_I32 ? ((const int32_t *)g.key_lengths.data)[b]
                                                       : ((const int64_t *)g.key_lengths.data)[b];
            ck_assert_msg(v >= 0 && v <= Lk, "%s: key length %lld", g.name, (long long)v);
            key_lengths[b] = (int32_t)v;
        }
        a.mask.key_lengths = key_lengths;
    }
    if (g.mask.data) {
        /* [Lq, Lk], [B|1, Lq, Lk] or [B|1, H|1, Lq, Lk]; a dimension of 1 broadcasts */
        const npy_array *m = &g.mask;
        int nd = m->ndim;
        ck_assert_msg(nd >= 2 && nd <= 4 && m->shape[nd - 1] == Lk &&
                          (m->shape[nd - 2] == Lq || m->shape[nd - 2] == 1),
                      "%s: mask shape", g.name);
        int64_t mb = nd >= 3 ? m->shape[0] : 1, mh = nd == 4 ? m->shape[1] : 1;
        int64_t mq = m->shape[nd - 2];
        ck_assert_msg((mb == B || mb == 1) && (mh == H || mh == 1), "%s: mask shape", g.name);
        mha_mask_tensor t = {m->data, mb == 1 ? 0 : mh * mq * Lk, mh == 1 ? 0 : mq * Lk,
                             mq == 1 ? 0 : Lk};
        if (m->dtype == NPY_BOOL || m->dtype == NPY_U8)
            a.mask.bool_mask = t;
        else if (m->dtype == NPY_F32)
            a.mask.float_mask = t;
        else
            ck_abort_msg("%s: mask.npy is %s", g.name, npy_dtype_name(m->dtype));
    }

    const size_t n = (size_t)(B * Lq * O);
    float *out = calloc(n, sizeof *out), *ref = calloc(n, sizeof *ref);
    ck_assert(out && ref);
    for (size_t i = 0; i < n; i++) /* an element left unwritten shows as NaN */
        out[i] = ref[i] = NAN;

    mha_model *model = NULL;
    mha_status st = mha_model_create(&c, &w, &model);
    ck_assert_msg(st == MHA_OK, "%s: mha_model_create: %s", g.name, mha_status_message(st));
    size_t bytes = 0;
    st = mha_forward_workspace_size(model, B, Lq, Lk, 0, &bytes);
    ck_assert_msg(st == MHA_OK, "%s: workspace size: %s", g.name, mha_status_message(st));
    void *ws = malloc(bytes);
    ck_assert_ptr_nonnull(ws);
    a.out = out;
    st = mha_forward(model, &a, ws, bytes);
    ck_assert_msg(st == MHA_OK, "%s: mha_forward: %s", g.name, mha_status_message(st));
    free(ws);
    mha_model_destroy(model);

    a.out = ref;
    st = mha_reference_forward(&c, &w, &a);
    ck_assert_msg(st == MHA_OK, "%s: mha_reference_forward: %s", g.name, mha_status_message(st));

    const float *expected = g.expected.data;
    double e_fast = golden_err(g.name, out, expected, (size_t)(B * Lq), (size_t)O),
           e_ref = golden_err(g.name, ref, expected, (size_t)(B * Lq), (size_t)O);
    const char *v = getenv("MHA_TEST_VERBOSE");
    if (v && *v && *v != '0')
        printf("  golden: %-24s fast %.3g  reference %.3g\n", g.name, e_fast, e_ref);
    ck_assert_msg(e_fast <= GOLDEN_TOL, "%s: mha_forward vs PyTorch: max|diff|/max|expected| = %.3g > %.3g",
                  g.name, e_fast, GOLDEN_TOL);
    ck_assert_msg(e_ref <= GOLDEN_TOL,
                  "%s: mha_reference_forward vs PyTorch: max|diff|/max|expected| = %.3g > %.3g",
                  g.name, e_ref, GOLDEN_TOL);
    free(out);
    free(ref);
    golden_free(&g);
}
END_TEST

/* The table and the folders agree: a case added by the generator but not listed
 * here (or listed but deleted) fails. */
START_TEST(test_golden_table_matches_folders)
{
    DIR *d = opendir(MHA_GOLDEN_DIR);
    ck_assert_msg(d != NULL, "cannot open %s", MHA_GOLDEN_DIR);
    int seen = 0;
    for (struct dirent *e = readdir(d); e; e = readdir(d)) {
        if (e->d_name[0] == '.')
            continue;
        int listed = 0;
        for (int i = 0; i < N_GOLDEN; i++)
            listed |= strcmp(e->d_name, golden_cases[i]) == 0;
        ck_assert_msg(listed, "%s/%s is not in golden_cases[] of test_golden.c", MHA_GOLDEN_DIR,
                      e->d_name);
        seen++;
    }
    closedir(d);
    ck_assert_int_eq(seen, N_GOLDEN);
}
END_TEST

Suite *suite_golden(void)
{
    Suite *s = suite_create("golden");
    TCase *tc = tcase_create("pytorch");
    tcase_add_test(tc, test_golden_table_matches_folders);
    tcase_add_loop_test(tc, test_golden_case, 0, N_GOLDEN);
    suite_add_tcase(s, tc);
    return s;
}
