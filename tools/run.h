/* The pieces of `mha run`: the folder's files, the problem built from them, the
 * --expect comparison and the output's safety checks. */
#ifndef MHA_TOOLS_RUN_H
#define MHA_TOOLS_RUN_H

#include <stdint.h>

#include "mha.h"
#include "npy.h"

/* The input files of a folder, by their state-dict names. */
enum {
    F_QUERY, F_KEY, F_VALUE,
    F_IN_W, F_IN_B, F_Q_W, F_Q_B, F_K_W, F_K_B, F_V_W, F_V_B, F_OUT_W, F_OUT_B,
    F_MASK, F_KEY_LENGTHS, F_COUNT
};

extern const char *const run_file_names[F_COUNT];
/* The default output, DIR/out.npy: never read, so allowed in the folder. */
#define RUN_OUT_NAME "out.npy"

typedef struct run_opts {
    int heads, kv_heads, threads, reference, help, iters;
    int causal_kinds;     /* how many of --causal, --causal-top-left, --causal-offset were given */
    mha_causal causal;
    int64_t causal_offset;
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

/* "dir/name" into buf. */
void run_join(char *buf, size_t len, const char *dir, const char *name);
/* "[2, 5, 16]"; a negative size prints as '*'. */
const char *run_fmt_shape(char *buf, size_t len, int ndim, const int64_t *shape);

/* run_folder.c: every .npy in dir is an input, out.npy, or the --out / --expect file;
 * each other one is reported with what to do about it. 0, or -1. */
int run_check_folder(const char *dir, const char *out, const char *expect);
/* run_folder.c: the output path is not one of the loaded inputs nor the --expect
 * file (same file by device and inode, so links count) and not a directory. 0, or -1. */
int run_check_output(const char *out, const run_files *fs, const char *expect);

/* run_load.c: loads the folder's inputs (each checked for emptiness and dtype). */
int run_load_files(run_files *fs);
/* run_load.c: checks every shape against the flags and fills p (p->out allocated). */
int run_build_problem(const run_files *fs, const run_opts *o, problem *p);

/* run_expect.c: loads the --expect file, which must be float32 of the output's shape. */
int run_load_expect(const char *path, const int64_t shape[3], npy_array *e);
/* run_expect.c: compares p->out with e (see cli_usage for the rule), prints one line;
 * 0 when within tol. */
int run_compare_expect(const npy_array *e, const problem *p, double tol);

#endif
