/* `mha run`: which files a folder may hold, and which path the output may take.
 * A file the run would ignore is an error, not a silent default: a PyTorch name
 * (key_padding_mask.npy), an unsupported feature (bias_k.npy) or a misspelling
 * (key_length.npy) would otherwise give a wrong answer with exit status 0. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "run.h"

#define NPY_EXT ".npy"

#define ADD_BIAS_KV                                                                        \
    "saved by nn.MultiheadAttention(add_bias_kv=True), which mha does not support: it "     \
    "appends no bias_k/bias_v row to the keys and values, so this model cannot be run"

/* Names a PyTorch user reaches for, with what to do instead. */
static const char *const known_foreign[][2] = {
    {"key_padding_mask.npy",
     "PyTorch's key_padding_mask (True = padding) is not read: save the number of real keys "
     "per batch as key_lengths.npy = (~key_padding_mask).sum(1) ([B], int32 or int64) when "
     "the padding is at the end, else mask.npy = ~key_padding_mask[:, None, None, :] "
     "([B, 1, 1, Lk], True = may attend)"},
    {"attn_mask.npy",
     "PyTorch's attn_mask is not read under that name: a boolean one means True = masked "
     "out, the opposite of mask.npy, so save ~attn_mask as mask.npy; a float one is added "
     "to the scores as mask.npy is, so rename it mask.npy; a 3-D [B*H, Lq, Lk] one must "
     "first be reshaped to [B, H, Lq, Lk]"},
    {"bias_k.npy", ADD_BIAS_KV},
    {"bias_v.npy", ADD_BIAS_KV},
    {"expected.npy", "not an input: compare with it through --expect DIR/expected.npy, or "
                     "move it out of DIR"},
};

static int has_npy_ext(const char *name)
{
    size_t n = strlen(name), e = strlen(NPY_EXT);
    return n > e && strcasecmp(name + n - e, NPY_EXT) == 0;
}

/* Levenshtein distance, capped: enough to catch a misspelt name. */
static int edit_distance(const char *a, const char *b)
{
    enum { MAX = 64 };
    size_t n = strlen(a), m = strlen(b);
    if (n >= MAX || m >= MAX)
        return MAX;
    int row[MAX + 1];
    for (size_t j = 0; j <= m; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= m; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            best = up + 1 < best ? up + 1 : best;
            best = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
            row[j] = best;
            diag = up;
        }
    }
    return row[m];
}

static int is_input_name(const char *name)
{
    for (int id = 0; id < F_COUNT; id++)
        if (strcmp(name, run_file_names[id]) == 0)
            return 1;
    return 0;
}

static int same_file(const char *path, const struct stat *st)
{
    struct stat other;
    return path && stat(path, &other) == 0 && other.st_dev == st->st_dev &&
           other.st_ino == st->st_ino;
}

/* Says what to do about a .npy that is not an input. */
static void explain(const char *path, const char *name)
{
    for (size_t i = 0; i < sizeof known_foreign / sizeof known_foreign[0]; i++)
        if (strcmp(name, known_foreign[i][0]) == 0) {
            fprintf(stderr, "mha run: %s: %s\n", path, known_foreign[i][1]);
            return;
        }
    /* A state-dict key saved as is: "out_proj.weight" is out_proj_weight.npy here. */
    char undotted[NAME_MAX + 1];
    snprintf(undotted, sizeof undotted, "%s", name);
    for (char *c = undotted; *c && strcmp(c, NPY_EXT) != 0; c++)
        if (*c == '.')
            *c = '_';
    if (strcmp(undotted, name) != 0 && is_input_name(undotted)) {
        fprintf(stderr, "mha run: %s: rename it %s (state-dict keys with '.' as '_')\n", path,
                undotted);
        return;
    }
    const char *near = NULL;
    int best = 3; /* at most two edits away */
    for (int id = 0; id < F_COUNT; id++) {
        int dist = edit_distance(name, run_file_names[id]);
        if (dist < best)
            best = dist, near = run_file_names[id];
    }
    if (near)
        fprintf(stderr, "mha run: %s: unknown file (did you mean %s?)\n", path, near);
    else
        fprintf(stderr, "mha run: %s: unknown file\n", path);
}

static void list_accepted(void)
{
    fputs("mha run: a folder holds only these .npy files:", stderr);
    for (int id = 0; id < F_COUNT; id++)
        fprintf(stderr, " %s", run_file_names[id]);
    fputs(", and " RUN_OUT_NAME " (the default output, never read) or the files given to --out "
          "and --expect; move any other .npy out of it\n", stderr);
}

int run_check_folder(const char *dir, const char *out, const char *expect)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "mha run: %s: cannot read the folder: %s\n", dir, strerror(errno));
        return -1;
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        char path[PATH_MAX];
        struct stat st;
        run_join(path, sizeof path, dir, name);
        if (has_npy_ext(name) && !is_input_name(name) && strcmp(name, RUN_OUT_NAME) != 0 &&
            !(stat(path, &st) == 0 && (same_file(out, &st) || same_file(expect, &st)))) {
            explain(path, name);
            bad++;
        }
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (bad)
        list_accepted();
    return bad ? -1 : 0;
}

int run_check_output(const char *out, const run_files *fs, const char *expect)
{
    struct stat st;
    if (stat(out, &st) != 0)
        return 0; /* a new file */
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "mha run: --out %s: not a regular file; give a file path\n", out);
        return -1;
    }
    for (int id = 0; id < F_COUNT; id++) {
        char path[PATH_MAX];
        run_join(path, sizeof path, fs->dir, run_file_names[id]);
        if (fs->has[id] && same_file(path, &st)) {
            fprintf(stderr, "mha run: --out %s: is the input %s; choose another output path\n",
                    out, path);
            return -1;
        }
    }
    if (same_file(expect, &st)) {
        fprintf(stderr, "mha run: --out %s: is the --expect file; choose another output path\n",
                out);
        return -1;
    }
    return 0;
}
