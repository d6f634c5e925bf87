/* `mha run`: multi-head attention on a folder of .npy files named as in a PyTorch
 * state dict (see cli_usage). */
#define _POSIX_C_SOURCE 200809L

#include <float.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "npy.h"

enum {
    F_QUERY, F_KEY, F_VALUE,
    F_IN_W, F_IN_B, F_Q_W, F_Q_B, F_K_W, F_K_B, F_V_W, F_V_B, F_OUT_W, F_OUT_B,
    F_MASK, F_KEY_LENGTHS, F_COUNT
};

static const char *const file_names[F_COUNT] = {
    "query.npy", "key.npy", "value.npy",
    "in_proj_weight.npy", "in_proj_bias.npy", "q_proj_weight.npy", "q_proj_bias.npy",
    "k_proj_weight.npy", "k_proj_bias.npy", "v_proj_weight.npy", "v_proj_bias.npy",
    "out_proj_weight.npy", "out_proj_bias.npy", "mask.npy", "key_lengths.npy",
};

typedef struct run_opts {
    int heads, kv_heads, causal, threads, reference, help;
    double scale, tol;
    const char *out, *expect, *dir;
} run_opts;

typedef struct run_files {
    const char *dir;
    npy_array a[F_COUNT];
    int has[F_COUNT];
} run_files;

/* Every size of the problem, as read from the files and flags. */
typedef struct dims {
    int64_t B, Lq, Lk, E, kdim, vdim, H, G, dk, dv, O, out_width;
    int self, fused, bias, out_proj;
} dims;

typedef struct problem {
    dims d;
    mha_config cfg;
    mha_weights w;
    mha_forward_args args;
    int32_t *key_lengths;
    float *out;
} problem;

/* ------------------------------------------------------------- messages */

static void join(char *buf, size_t len, const char *dir, const char *name)
{
    size_t n = strlen(dir);
    snprintf(buf, len, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int file_err(const run_files *fs, int id, const char *fmt, ...)
{
    char path[PATH_MAX];
    join(path, sizeof path, fs->dir, file_names[id]);
    fprintf(stderr, "mha run: %s: ", path);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return -1;
}

/* "[2, 5, 16]"; a negative size (any) prints as '*'. */
static const char *fmt_shape(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && n < len; i++)
        n += (size_t)(shape[i] < 0 ? snprintf(buf + n, len - n, "%s*", i ? ", " : "")
                                   : snprintf(buf + n, len - n, "%s%lld", i ? ", " : "",
                                              (long long)shape[i]));
    if (n < len)
        snprintf(buf + n, len - n, "]");
    return buf;
}

/* The file's shape must be `want` (negative = any size); `names` describes it. */
static int check_dims(const run_files *fs, int id, int ndim, const int64_t *want,
                      const char *names)
{
    const npy_array *a = &fs->a[id];
    int ok = a->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = want[i] < 0 || a->shape[i] == want[i];
    if (ok)
        return 0;
    char got[160], exp[160];
    return file_err(fs, id, "shape %s does not fit %s = %s",
                    fmt_shape(got, sizeof got, a->ndim, a->shape), names,
                    fmt_shape(exp, sizeof exp, ndim, want));
}

/* -------------------------------------------------------------- loading */

/* A state dict's out_proj.weight saved under its own key would otherwise be silently
 * ignored, dropping the output projection. */
static int check_dotted_names(const char *dir)
{
    static const char *const dotted[][2] = {{"out_proj.weight.npy", "out_proj_weight.npy"},
                                            {"out_proj.bias.npy", "out_proj_bias.npy"}};
    for (int i = 0; i < 2; i++) {
        char path[PATH_MAX];
        struct stat st;
        join(path, sizeof path, dir, dotted[i][0]);
        if (stat(path, &st) == 0) {
            fprintf(stderr, "mha run: %s: rename it %s\n", path, dotted[i][1]);
            return -1;
        }
    }
    return 0;
}

static int load_files(run_files *fs)
{
    struct stat st;
    if (stat(fs->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "mha run: %s: not a directory\n", fs->dir);
        return -1;
    }
    if (check_dotted_names(fs->dir))
        return -1;
    for (int id = 0; id < F_COUNT; id++) {
        char path[PATH_MAX], err[PATH_MAX + 256];
        join(path, sizeof path, fs->dir, file_names[id]);
        if (stat(path, &st) != 0)
            continue;
        if (npy_load(path, &fs->a[id], err, sizeof err)) {
            fprintf(stderr, "mha run: %s\n", err);
            return -1;
        }
        fs->has[id] = 1;
        if (fs->a[id].count == 0)
            return file_err(fs, id, "is empty");
        if (id != F_MASK && id != F_KEY_LENGTHS && fs->a[id].dtype != NPY_F32)
            return file_err(fs, id, "dtype %s, expected float32 (<f4)",
                            npy_dtype_name(fs->a[id].dtype));
    }
    return 0;
}

/* --------------------------------------------------------------- inputs */

static int check_inputs(const run_files *fs, dims *d)
{
    if (!fs->has[F_QUERY])
        return file_err(fs, F_QUERY, "missing (the query [B, Lq, E] is required)");
    if (check_dims(fs, F_QUERY, 3, (const int64_t[]){-1, -1, -1}, "[B, Lq, E]"))
        return -1;
    const int64_t *q = fs->a[F_QUERY].shape;
    d->B = q[0], d->Lq = q[1], d->E = q[2];
    if (fs->has[F_KEY] != fs->has[F_VALUE])
        return file_err(fs, fs->has[F_KEY] ? F_VALUE : F_KEY,
                        "missing (key.npy and value.npy go together)");
    d->self = !fs->has[F_KEY];
    if (d->self) {
        d->Lk = d->Lq, d->kdim = d->vdim = d->E;
        return 0;
    }
    if (check_dims(fs, F_KEY, 3, (const int64_t[]){d->B, -1, -1}, "[B, Lk, kdim]"))
        return -1;
    d->Lk = fs->a[F_KEY].shape[1], d->kdim = fs->a[F_KEY].shape[2];
    if (check_dims(fs, F_VALUE, 3, (const int64_t[]){d->B, d->Lk, -1}, "[B, Lk, vdim]"))
        return -1;
    d->vdim = fs->a[F_VALUE].shape[2];
    return 0;
}

/* -------------------------------------------------------------- weights */

/* Which weight and bias files the present ones select; any other is an error. */
static void mark_used(const run_files *fs, const dims *d, int used[F_COUNT])
{
    static const int always[] = {F_QUERY, F_KEY, F_VALUE, F_OUT_W, F_MASK, F_KEY_LENGTHS};
    for (size_t i = 0; i < sizeof always / sizeof always[0]; i++)
        used[always[i]] = 1;
    used[F_OUT_B] = fs->has[F_OUT_W];
    if (d->fused) {
        used[F_IN_W] = used[F_IN_B] = 1;
        return;
    }
    used[F_Q_W] = used[F_K_W] = used[F_V_W] = 1;
    /* A state dict with separate weights keeps a fused in_proj_bias. */
    if (fs->has[F_IN_B])
        used[F_IN_B] = 1;
    else
        used[F_Q_B] = used[F_K_B] = used[F_V_B] = 1;
}

static int check_stray(const run_files *fs, const int used[F_COUNT])
{
    for (int id = 0; id < F_COUNT; id++)
        if (fs->has[id] && !used[id])
            return file_err(fs, id,
                            "does not go with the other weight files: give in_proj_weight.npy "
                            "or q/k/v_proj_weight.npy (not both), biases matching them, and "
                            "out_proj_bias.npy only with out_proj_weight.npy");
    return 0;
}

static int check_fused(const run_files *fs, dims *d)
{
    if (d->kdim != d->E || d->vdim != d->E)
        return file_err(fs, F_IN_W,
                        "fused weights need key and value widths equal to E = %lld (key.npy "
                        "has %lld, value.npy %lld): use q/k/v_proj_weight.npy",
                        (long long)d->E, (long long)d->kdim, (long long)d->vdim);
    if (check_dims(fs, F_IN_W, 2, (const int64_t[]){-1, d->E}, "[H*dk + 2*G*dk, E]"))
        return -1;
    int64_t rows = fs->a[F_IN_W].shape[0], parts = d->H + 2 * d->G;
    if (rows % parts)
        return file_err(fs, F_IN_W,
                        "%lld rows are not a multiple of H + 2*G = %lld (--heads %lld, "
                        "--kv-heads %lld)",
                        (long long)rows, (long long)parts, (long long)d->H, (long long)d->G);
    d->dk = d->dv = rows / parts;
    return 0;
}

/* The head dim a [heads * dim, *] weight gives. */
static int head_dim(const run_files *fs, int id, int64_t heads, const char *flag, int64_t *dim)
{
    int64_t rows = fs->a[id].shape[0];
    if (rows % heads)
        return file_err(fs, id, "%lld rows are not divisible by %s %lld", (long long)rows, flag,
                        (long long)heads);
    *dim = rows / heads;
    return 0;
}

static int check_separate(const run_files *fs, dims *d)
{
    static const int ids[] = {F_Q_W, F_K_W, F_V_W};
    for (int i = 0; i < 3; i++)
        if (!fs->has[ids[i]])
            return file_err(fs, ids[i], "missing (separate projections need q_proj_weight.npy, "
                                        "k_proj_weight.npy and v_proj_weight.npy)");
    int64_t dk_k = 0;
    if (check_dims(fs, F_Q_W, 2, (const int64_t[]){-1, d->E}, "[H*dk, E]") ||
        check_dims(fs, F_K_W, 2, (const int64_t[]){-1, d->kdim}, "[G*dk, kdim]") ||
        check_dims(fs, F_V_W, 2, (const int64_t[]){-1, d->vdim}, "[G*dv, vdim]") ||
        head_dim(fs, F_Q_W, d->H, "--heads", &d->dk) ||
        head_dim(fs, F_K_W, d->G, "--kv-heads", &dk_k) ||
        head_dim(fs, F_V_W, d->G, "--kv-heads", &d->dv))
        return -1;
    if (dk_k != d->dk)
        return file_err(fs, F_K_W,
                        "gives head dim %lld (rows / G), but q_proj_weight.npy gives %lld "
                        "(rows / H)",
                        (long long)dk_k, (long long)d->dk);
    return 0;
}

static int check_out_proj(const run_files *fs, dims *d)
{
    d->out_proj = fs->has[F_OUT_W];
    d->out_width = d->H * d->dv;
    if (!d->out_proj)
        return 0;
    if (check_dims(fs, F_OUT_W, 2, (const int64_t[]){-1, d->H * d->dv}, "[O, H*dv]"))
        return -1;
    d->O = d->out_width = fs->a[F_OUT_W].shape[0];
    return 0;
}

/* Biases in use are all present or all absent, each [rows of its weight]. */
static int check_biases(const run_files *fs, const int used[F_COUNT], dims *d)
{
    const int ids[] = {F_IN_B, F_Q_B, F_K_B, F_V_B, F_OUT_B};
    const int64_t lens[] = {(d->H + d->G) * d->dk + d->G * d->dv, d->H * d->dk, d->G * d->dk,
                            d->G * d->dv, d->O};
    int given = -1, missing = -1;
    for (int i = 0; i < 5; i++) {
        if (!used[ids[i]])
            continue;
        if (!fs->has[ids[i]])
            missing = ids[i];
        else if (check_dims(fs, ids[i], 1, &lens[i], "[rows of its weight]"))
            return -1;
        else if (given < 0)
            given = ids[i];
    }
    if (given >= 0 && missing >= 0)
        return file_err(fs, missing, "missing (biases are all present or all absent, and %s is "
                                     "given)", file_names[given]);
    d->bias = given >= 0;
    return 0;
}

static int check_weights(const run_files *fs, dims *d)
{
    d->fused = fs->has[F_IN_W];
    if (!d->fused && !fs->has[F_Q_W] && !fs->has[F_K_W] && !fs->has[F_V_W]) {
        fprintf(stderr, "mha run: %s: no weights: need in_proj_weight.npy, or q_proj_weight.npy, "
                        "k_proj_weight.npy and v_proj_weight.npy\n", fs->dir);
        return -1;
    }
    int used[F_COUNT] = {0};
    mark_used(fs, d, used);
    if (check_stray(fs, used) || (d->fused ? check_fused(fs, d) : check_separate(fs, d)) ||
        check_out_proj(fs, d))
        return -1;
    return check_biases(fs, used, d);
}

/* ---------------------------------------------------------------- masks */

static int check_mask(const run_files *fs, const dims *d, mha_mask *m)
{
    if (!fs->has[F_MASK])
        return 0;
    const npy_array *a = &fs->a[F_MASK];
    int is_bool = a->dtype == NPY_BOOL || a->dtype == NPY_U8;
    if (!is_bool && a->dtype != NPY_F32)
        return file_err(fs, F_MASK, "dtype %s, expected bool, uint8 or float32",
                        npy_dtype_name(a->dtype));
    int n = a->ndim;
    int64_t nb = n >= 3 ? a->shape[0] : 1, nh = n == 4 ? a->shape[1] : 1;
    int64_t nq = n >= 2 ? a->shape[n - 2] : 0, nk = n >= 2 ? a->shape[n - 1] : 0;
    if (n < 2 || n > 4 || (nb != 1 && nb != d->B) || (nh != 1 && nh != d->H) ||
        (nq != 1 && nq != d->Lq) || nk != d->Lk) {
        char got[160];
        return file_err(fs, F_MASK,
                        "shape %s does not fit [Lq, Lk], [B|1, Lq, Lk] or [B|1, H|1, Lq, Lk] "
                        "with B = %lld, H = %lld, Lq = %lld, Lk = %lld",
                        fmt_shape(got, sizeof got, n, a->shape), (long long)d->B,
                        (long long)d->H, (long long)d->Lq, (long long)d->Lk);
    }
    mha_mask_tensor t = {a->data, nb == 1 ? 0 : nh * nq * nk, nh == 1 ? 0 : nq * nk,
                         nq == 1 ? 0 : nk};
    if (is_bool)
        m->bool_mask = t;
    else
        m->float_mask = t;
    return 0;
}

/* key_lengths.npy (int32 or int64) as int32, each in [0, Lk]. */
static int load_key_lengths(const run_files *fs, const dims *d, int32_t **out)
{
    if (!fs->has[F_KEY_LENGTHS])
        return 0;
    const npy_array *a = &fs->a[F_KEY_LENGTHS];
    if (a->dtype != NPY_I32 && a->dtype != NPY_I64)
        return file_err(fs, F_KEY_LENGTHS, "dtype %s, expected int32 or int64",
                        npy_dtype_name(a->dtype));
    if (check_dims(fs, F_KEY_LENGTHS, 1, &d->B, "[B]"))
        return -1;
    int32_t *len = malloc(a->count * sizeof *len);
    if (!len)
        return file_err(fs, F_KEY_LENGTHS, "out of memory");
    for (size_t i = 0; i < a->count; i++) {
        int64_t v = a->dtype == NPY_I32 ? ((const int32_t *)a->data)[i]
                                        : ((const int64_t *)a->data)[i];
        if (v < 0 || v > d->Lk) {
            free(len);
            return file_err(fs, F_KEY_LENGTHS, "element %zu is %lld, outside [0, Lk = %lld]", i,
                            (long long)v, (long long)d->Lk);
        }
        len[i] = (int32_t)v;
    }
    *out = len;
    return 0;
}

/* -------------------------------------------------------------- problem */

static void fill_weights(const run_files *fs, const dims *d, mha_weights *w)
{
    const float *in_b = fs->a[F_IN_B].data;
    w->out_weight = fs->a[F_OUT_W].data;
    w->out_bias = fs->a[F_OUT_B].data;
    if (d->fused) {
        w->in_proj_weight = fs->a[F_IN_W].data;
        w->in_proj_bias = in_b;
        return;
    }
    w->q_weight = fs->a[F_Q_W].data;
    w->k_weight = fs->a[F_K_W].data;
    w->v_weight = fs->a[F_V_W].data;
    if (in_b) {
        w->q_bias = in_b;
        w->k_bias = in_b + d->H * d->dk;
        w->v_bias = in_b + (d->H + d->G) * d->dk;
    } else {
        w->q_bias = fs->a[F_Q_B].data;
        w->k_bias = fs->a[F_K_B].data;
        w->v_bias = fs->a[F_V_B].data;
    }
}

static void fill_config(const run_opts *o, const dims *d, mha_config *c)
{
    *c = mha_config_default(d->E, d->H);
    c->num_kv_heads = d->G;
    c->kdim = d->kdim;
    c->vdim = d->vdim;
    c->head_dim_qk = d->dk;
    c->head_dim_v = d->dv;
    c->out_dim = d->out_proj ? d->O : 0;
    c->has_bias = d->bias;
    c->has_out_proj = d->out_proj;
    c->scale = (float)o->scale;
}

static int build_problem(const run_files *fs, const run_opts *o, problem *p)
{
    dims *d = &p->d;
    d->H = o->heads;
    d->G = o->kv_heads ? o->kv_heads : o->heads;
    mha_forward_args *a = &p->args;
    if (check_inputs(fs, d) || check_weights(fs, d) || check_mask(fs, d, &a->mask) ||
        load_key_lengths(fs, d, &p->key_lengths))
        return -1;
    fill_config(o, d, &p->cfg);
    fill_weights(fs, d, &p->w);
    size_t rows = (size_t)(d->B * d->Lq);
    if ((uint64_t)d->out_width > SIZE_MAX / sizeof(float) / rows ||
        !(p->out = malloc(rows * (size_t)d->out_width * sizeof(float)))) {
        fprintf(stderr, "mha run: no memory for the output\n");
        return -1;
    }
    a->batch = d->B, a->len_q = d->Lq, a->len_k = d->Lk;
    a->query = fs->a[F_QUERY].data;
    a->key = fs->a[F_KEY].data;
    a->value = fs->a[F_VALUE].data;
    a->mask.causal = o->causal ? MHA_CAUSAL_BOTTOM_RIGHT : MHA_CAUSAL_NONE;
    a->mask.key_lengths = p->key_lengths;
    a->out = p->out;
    a->num_threads = o->threads;
    return 0;
}

/* ------------------------------------------------------------- compute */

static int forward_fast(const problem *p, double *ms)
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
    /* The timed call is the second: the first pays for starting OpenMP's threads. */
    for (int i = 0; i < 2 && !rc; i++) {
        double t0 = cli_now_ms();
        rc = cli_check("run", "mha_forward", mha_forward(model, &p->args, ws, bytes));
        *ms = cli_now_ms() - t0;
    }
    free(ws);
    mha_model_destroy(model);
    return rc ? -1 : 0;
}

static int forward_reference(const problem *p, double *ms)
{
    double t0 = cli_now_ms();
    mha_status st = mha_reference_forward(&p->cfg, &p->w, &p->args);
    *ms = cli_now_ms() - t0;
    return cli_check("run", "mha_reference_forward", st) ? -1 : 0;
}

static int compare_expect(const run_opts *o, const problem *p, const int64_t shape[3])
{
    npy_array e;
    char err[PATH_MAX + 256], got[160];
    if (npy_load(o->expect, &e, err, sizeof err)) {
        fprintf(stderr, "mha run: --expect %s\n", err);
        return -1;
    }
    int ok = e.dtype == NPY_F32 && e.ndim == 3 && memcmp(e.shape, shape, 3 * sizeof *shape) == 0;
    if (!ok) {
        fprintf(stderr, "mha run: --expect %s: %s %s, expected float32 %s\n", o->expect,
                npy_dtype_name(e.dtype), fmt_shape(got, sizeof got, e.ndim, e.shape),
                fmt_shape(err, sizeof err, 3, shape));
        npy_free(&e);
        return -1;
    }
    double rel = cli_rel_err(p->out, e.data, e.count);
    npy_free(&e);
    int pass = rel <= o->tol;
    printf("max |diff| / max |expected| = %.3g (tol %g): %s\n", rel, o->tol,
           pass ? "PASS" : "FAIL");
    return pass ? 0 : -1;
}

static int run_problem(const run_opts *o, const problem *p)
{
    double ms = 0;
    if (o->reference ? forward_reference(p, &ms) : forward_fast(p, &ms))
        return -1;
    char path[PATH_MAX], err[PATH_MAX + 256], shape_text[160];
    const int64_t shape[3] = {p->d.B, p->d.Lq, p->d.out_width};
    if (o->out)
        snprintf(path, sizeof path, "%s", o->out);
    else
        join(path, sizeof path, o->dir, "out.npy");
    if (npy_save_f32(path, p->out, 3, shape, err, sizeof err)) {
        fprintf(stderr, "mha run: --out %s\n", err);
        return -1;
    }
    printf("%s %s: isa %s, threads %d, %.3f ms\n", path,
           fmt_shape(shape_text, sizeof shape_text, 3, shape),
           o->reference ? "float64 reference" : mha_isa_name(mha_active_isa()),
           o->reference ? 1 : cli_threads(o->threads), ms);
    return o->expect ? compare_expect(o, p, shape) : 0;
}

/* ------------------------------------------------------------ arguments */

typedef enum { V_HEADS, V_THREADS, V_SCALE, V_TOL, V_PATH } value_kind;

static int set_value(const char *f, const char *v, value_kind kind, void *dst)
{
    switch (kind) {
    case V_HEADS:
        return cli_parse_int("run", f, v, 1, INT_MAX, dst);
    case V_THREADS:
        return cli_parse_int("run", f, v, 0, INT_MAX, dst);
    case V_SCALE:
        return cli_parse_double("run", f, v, -FLT_MAX, FLT_MAX, dst);
    case V_TOL:
        return cli_parse_double("run", f, v, 0, DBL_MAX, dst);
    case V_PATH:
        *(const char **)dst = v;
    }
    return 0;
}

static int parse_flag(int argc, char **argv, int *i, run_opts *o)
{
    const struct {
        const char *name;
        value_kind kind;
        void *dst;
    } valued[] = {
        {"--heads", V_HEADS, &o->heads},     {"--kv-heads", V_HEADS, &o->kv_heads},
        {"--threads", V_THREADS, &o->threads}, {"--scale", V_SCALE, &o->scale},
        {"--tol", V_TOL, &o->tol},           {"--out", V_PATH, &o->out},
        {"--expect", V_PATH, &o->expect},
    };
    const char *f = argv[*i];
    if (strcmp(f, "--causal") == 0)
        o->causal = 1;
    else if (strcmp(f, "--reference") == 0)
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
    run_opts o = {.heads = 1, .tol = -1}; /* tol < 0: not given */
    int rc = parse_args(argc, argv, &o);
    if (rc != CLI_OK || o.help) {
        if (o.help && rc == CLI_OK)
            cli_usage(stdout);
        return rc;
    }
    run_files fs = {.dir = o.dir};
    problem p = {0};
    rc = load_files(&fs) || build_problem(&fs, &o, &p) || run_problem(&o, &p) ? CLI_FAIL : CLI_OK;
    for (int id = 0; id < F_COUNT; id++)
        npy_free(&fs.a[id]);
    free(p.key_lengths);
    free(p.out);
    return rc;
}
