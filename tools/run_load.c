/* `mha run`: loading a folder's files and building the problem from their shapes
 * and the flags; every mismatch is reported naming the file. */
#define _POSIX_C_SOURCE 200809L

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "run.h"

const char *const run_file_names[F_COUNT] = {
    "query.npy", "key.npy", "value.npy",
    "in_proj_weight.npy", "in_proj_bias.npy", "q_proj_weight.npy", "q_proj_bias.npy",
    "k_proj_weight.npy", "k_proj_bias.npy", "v_proj_weight.npy", "v_proj_bias.npy",
    "out_proj_weight.npy", "out_proj_bias.npy", "mask.npy", "key_lengths.npy",
};

/* ------------------------------------------------------------- messages */

void run_join(char *buf, size_t len, const char *dir, const char *name)
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
    run_join(path, sizeof path, fs->dir, run_file_names[id]);
    fprintf(stderr, "mha run: %s: ", path);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return -1;
}

/* "[2, 5, 16]"; a negative size (any) prints as '*'. */
const char *run_fmt_shape(char *buf, size_t len, int ndim, const int64_t *shape)
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
                    run_fmt_shape(got, sizeof got, a->ndim, a->shape), names,
                    run_fmt_shape(exp, sizeof exp, ndim, want));
}

/* -------------------------------------------------------------- loading */

/* The folder itself was checked by run_check_folder. */
int run_load_files(run_files *fs)
{
    struct stat st;
    for (int id = 0; id < F_COUNT; id++) {
        char path[PATH_MAX], err[PATH_MAX + 256];
        run_join(path, sizeof path, fs->dir, run_file_names[id]);
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
                                     "given)", run_file_names[given]);
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
                        run_fmt_shape(got, sizeof got, n, a->shape), (long long)d->B,
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

/* key_lengths.npy (int32 or int64: numpy's default integer) as int32, each in
 * [0, Lk], so an int64 value never wraps. */
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
        if (v < 0 || v > d->Lk || v > INT32_MAX) {
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

int run_build_problem(const run_files *fs, const run_opts *o, problem *p)
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
    a->mask.causal = o->causal;
    a->mask.causal_offset = o->causal_offset;
    a->mask.key_lengths = p->key_lengths;
    a->out = p->out;
    a->num_threads = o->threads;
    return 0;
}

