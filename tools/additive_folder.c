/* Loading a folder of the additive / concat attention modules (additive_folder.h). */
#define _POSIX_C_SOURCE 200809L

#include "additive_folder.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The state-dict names of the modules, '.' -> '_'. */
static const char *const names[AF_COUNT] = {
    "query.npy", "key.npy", "value.npy",
    "attn_weight.npy", "attn_bias.npy", "attn_combine_weight.npy", "attn_combine_bias.npy",
    "W_q_weight.npy", "W_k_weight.npy", "w_v_weight.npy", "W_q_bias.npy", "W_k_bias.npy",
    "valid_lens.npy", "bool_mask.npy",
};

/* Which files each module reads; 2 = required. */
static const int used[2][AF_COUNT] = {
    [MODULE_ADDITIVE] = {2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 1, 1, 1, 1},
    [MODULE_CONCAT] = {2, 2, 2, 2, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0},
};

typedef struct ctx {
    const char *dir;
    char *err;
    size_t len;
} ctx;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(const ctx *c, int id, const char *fmt, ...)
{
    int n = snprintf(c->err, c->len, "%s/%s: ", c->dir, id >= 0 ? names[id] : "");
    if (n >= 0 && (size_t)n < c->len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* The file must have ndim dimensions equal to want (negative = any size). */
static int shape_is(const ctx *c, const additive_folder *f, int id, int ndim, const int64_t *want,
                    const char *what)
{
    const npy_array *a = &f->a[id];
    int ok = a->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = want[i] < 0 || a->shape[i] == want[i];
    if (ok)
        return 0;
    char got[128];
    size_t n = (size_t)snprintf(got, sizeof got, "[");
    for (int i = 0; i < a->ndim && n < sizeof got; i++)
        n += (size_t)snprintf(got + n, sizeof got - n, "%s%lld", i ? ", " : "", (long long)a->shape[i]);
    if (n < sizeof got)
        snprintf(got + n, sizeof got - n, "]");
    return fail(c, id, "shape %s, expected %s", got, what);
}

static int load_all(const ctx *c, additive_folder *f)
{
    struct stat st;
    if (stat(c->dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return fail(c, -1, "not a directory");
    for (int id = 0; id < AF_COUNT; id++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", c->dir, names[id]);
        int present = stat(path, &st) == 0;
        if (!used[f->module][id]) {
            if (present)
                return fail(c, id, "not a file of the %s module",
                            f->module == MODULE_CONCAT ? "concat" : "additive");
            continue;
        }
        if (!present) {
            if (used[f->module][id] == 2)
                return fail(c, id, "missing");
            continue;
        }
        if (npy_load(path, &f->a[id], c->err, c->len))
            return -1;
        f->has[id] = 1;
        const npy_dtype t = f->a[id].dtype;
        if (id == AF_VALID_LENS ? t != NPY_I32 && t != NPY_I64
            : id == AF_BOOL_MASK ? t != NPY_U8 && t != NPY_BOOL
                                 : t != NPY_F32)
            return fail(c, id, "dtype %s, expected %s", npy_dtype_name(t),
                        id == AF_VALID_LENS ? "int32 or int64"
                        : id == AF_BOOL_MASK ? "uint8 or bool" : "float32");
    }
    return 0;
}

static int outputs(const ctx *c, additive_folder *f, int nd, const int64_t *out, const int64_t *w)
{
    size_t no = 1, nw = 1;
    f->out_ndim = f->weights_ndim = nd;
    for (int i = 0; i < nd; i++) {
        f->out_shape[i] = out[i];
        f->weights_shape[i] = w[i];
        no *= (size_t)out[i];
        nw *= (size_t)w[i];
    }
    if (!no || !nw)
        return fail(c, -1, "an input is empty");
    f->out = malloc(no * sizeof(float));
    f->weights = malloc(nw * sizeof(float));
    return f->out && f->weights ? 0 : fail(c, -1, "out of memory for the outputs");
}

static int build_concat(const ctx *c, additive_folder *f, int threads)
{
    npy_array *a = f->a;
    if (shape_is(c, f, AF_QUERY, 2, (const int64_t[]){-1, -1}, "[B, Dq]"))
        return -1;
    const int64_t B = a[AF_QUERY].shape[0], dq = a[AF_QUERY].shape[1];
    if (shape_is(c, f, AF_KEY, 2, (const int64_t[]){B, -1}, "[B, Dk]") ||
        shape_is(c, f, AF_VALUE, 3, (const int64_t[]){B, -1, -1}, "[B, max_len, Dv]"))
        return -1;
    const int64_t dk = a[AF_KEY].shape[1], L = a[AF_VALUE].shape[1], dv = a[AF_VALUE].shape[2];
    if (shape_is(c, f, AF_ATTN_W, 2, (const int64_t[]){L, dq + dk}, "[max_len, Dq + Dk]") ||
        shape_is(c, f, AF_COMBINE_W, 2, (const int64_t[]){-1, dq + dv}, "[O, Dq + Dv]"))
        return -1;
    const int64_t O = a[AF_COMBINE_W].shape[0];
    if ((f->has[AF_ATTN_B] && shape_is(c, f, AF_ATTN_B, 1, &L, "[max_len]")) ||
        (f->has[AF_COMBINE_B] && shape_is(c, f, AF_COMBINE_B, 1, &O, "[O]")))
        return -1;
    f->ccfg = (mha_concat_config){dq, dk, dv, L, O};
    f->cw = (mha_concat_weights){a[AF_ATTN_W].data, a[AF_ATTN_B].data, a[AF_COMBINE_W].data,
                                 a[AF_COMBINE_B].data};
    if (outputs(c, f, 2, (const int64_t[]){B, O}, (const int64_t[]){B, L}))
        return -1;
    f->cargs = (mha_concat_args){.batch = B, .query = a[AF_QUERY].data, .key = a[AF_KEY].data,
                                 .value = a[AF_VALUE].data, .out = f->out,
                                 .weights = f->weights, .num_threads = threads};
    return 0;
}

/* valid_lens.npy: [B] (d2l's 1-D) or [B, Lq] (2-D), as int32 in [0, Lk]. */
static int load_valid_lens(const ctx *c, additive_folder *f, int64_t B, int64_t Lq, int64_t Lk,
                           mha_additive_args *args)
{
    if (!f->has[AF_VALID_LENS])
        return 0;
    const npy_array *v = &f->a[AF_VALID_LENS];
    if (!(v->ndim == 1 && v->shape[0] == B) && !(v->ndim == 2 && v->shape[0] == B && v->shape[1] == Lq))
        return shape_is(c, f, AF_VALID_LENS, 1, &B, "[B] or [B, Lq]");
    if (!(f->valid_lens = malloc(v->count * sizeof(int32_t))))
        return fail(c, AF_VALID_LENS, "out of memory");
    for (size_t i = 0; i < v->count; i++) {
        int64_t x = v->dtype == NPY_I32 ? ((const int32_t *)v->data)[i] : ((const int64_t *)v->data)[i];
        if (x < 0 || x > Lk)
            return fail(c, AF_VALID_LENS, "element %zu is %lld, outside [0, Lk = %lld]", i,
                        (long long)x, (long long)Lk);
        f->valid_lens[i] = (int32_t)x;
    }
    if (v->ndim == 1)
        args->mask.key_lengths = f->valid_lens;
    else
        args->row_key_lengths = f->valid_lens;
    return 0;
}

static int build_additive(const ctx *c, additive_folder *f, int causal, int threads)
{
    npy_array *a = f->a;
    if (shape_is(c, f, AF_QUERY, 3, (const int64_t[]){-1, -1, -1}, "[B, Lq, Dq]"))
        return -1;
    const int64_t B = a[AF_QUERY].shape[0], Lq = a[AF_QUERY].shape[1], dq = a[AF_QUERY].shape[2];
    if (shape_is(c, f, AF_KEY, 3, (const int64_t[]){B, -1, -1}, "[B, Lk, Dk]"))
        return -1;
    const int64_t Lk = a[AF_KEY].shape[1], dk = a[AF_KEY].shape[2];
    if (shape_is(c, f, AF_VALUE, 3, (const int64_t[]){B, Lk, -1}, "[B, Lk, Dv]") ||
        shape_is(c, f, AF_WQ, 2, (const int64_t[]){-1, dq}, "[h, Dq]"))
        return -1;
    const int64_t dv = a[AF_VALUE].shape[2], h = a[AF_WQ].shape[0];
    if (shape_is(c, f, AF_WK, 2, (const int64_t[]){h, dk}, "[h, Dk]") ||
        shape_is(c, f, AF_WV, 2, (const int64_t[]){1, h}, "[1, h]") ||
        (f->has[AF_BQ] && shape_is(c, f, AF_BQ, 1, &h, "[h]")) ||
        (f->has[AF_BK] && shape_is(c, f, AF_BK, 1, &h, "[h]")) ||
        (f->has[AF_BOOL_MASK] &&
         shape_is(c, f, AF_BOOL_MASK, 3, (const int64_t[]){B, Lq, Lk}, "[B, Lq, Lk]")))
        return -1;
    f->acfg = (mha_additive_config){dq, dk, h};
    f->aw = (mha_additive_weights){a[AF_WQ].data, a[AF_WK].data, a[AF_WV].data, a[AF_BQ].data,
                                   a[AF_BK].data};
    if (outputs(c, f, 3, (const int64_t[]){B, Lq, dv}, (const int64_t[]){B, Lq, Lk}))
        return -1;
    mha_additive_args *g = &f->aargs;
    *g = (mha_additive_args){.batch = B, .len_q = Lq, .len_k = Lk, .value_dim = dv,
                             .query = a[AF_QUERY].data, .key = a[AF_KEY].data,
                             .value = a[AF_VALUE].data, .out = f->out, .weights = f->weights,
                             .num_threads = threads};
    g->mask.causal = causal ? MHA_CAUSAL_BOTTOM_RIGHT : MHA_CAUSAL_NONE;
    if (f->has[AF_BOOL_MASK])
        g->mask.bool_mask = (mha_mask_tensor){a[AF_BOOL_MASK].data, Lq * Lk, 0, Lk};
    return load_valid_lens(c, f, B, Lq, Lk, g);
}

int additive_folder_load(const char *dir, additive_module module, int causal, int threads,
                         additive_folder *f, char *err, size_t err_len)
{
    memset(f, 0, sizeof *f);
    f->module = module;
    const ctx c = {dir, err, err_len};
    if (causal && module == MODULE_CONCAT)
        return fail(&c, -1, "--causal applies to the additive module only");
    if (load_all(&c, f))
        return -1;
    return module == MODULE_CONCAT ? build_concat(&c, f, threads)
                                   : build_additive(&c, f, causal, threads);
}

void additive_folder_free(additive_folder *f)
{
    for (int id = 0; id < AF_COUNT; id++)
        if (f->has[id])
            npy_free(&f->a[id]);
    free(f->valid_lens);
    free(f->out);
    free(f->weights);
}

size_t additive_folder_out_count(const additive_folder *f)
{
    size_t n = 1;
    for (int i = 0; i < f->out_ndim; i++)
        n *= (size_t)f->out_shape[i];
    return n;
}

size_t additive_folder_weights_count(const additive_folder *f)
{
    size_t n = 1;
    for (int i = 0; i < f->weights_ndim; i++)
        n *= (size_t)f->weights_shape[i];
    return n;
}
