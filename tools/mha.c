/* The `mha` command line tool: dispatch to info / run / demo, and shared helpers. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "internal.h" /* mha_threads: how the library resolves num_threads */

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

void cli_usage(FILE *f)
{
    fputs("usage:\n"
          "  mha info\n"
          "      CPU name, detected features, the ISA in use and how it was chosen.\n"
          "  mha run --heads H [--kv-heads G] [--causal | --causal-top-left |\n"
          "          --causal-offset N] [--scale S] [--threads N] [--iters N]\n"
          "          [--out FILE] [--expect FILE [--tol T]] [--reference] DIR\n"
          "      Multi-head attention on the .npy files in DIR (C order, little-endian),\n"
          "      named as in a PyTorch state dict with '.' as '_': query.npy [B,Lq,E];\n"
          "      optional key.npy [B,Lk,kdim] and value.npy [B,Lk,vdim] (absent:\n"
          "      self-attention); in_proj_weight.npy or q_proj_weight.npy +\n"
          "      k_proj_weight.npy + v_proj_weight.npy; optional biases (in_proj_bias.npy\n"
          "      or q/k/v_proj_bias.npy); optional out_proj_weight.npy (+ out_proj_bias.npy);\n"
          "      mask.npy (bool/uint8: nonzero = may attend; float32: added to the scores;\n"
          "      [Lq,Lk], [B|1,Lq,Lk] or [B|1,H|1,Lq,Lk]); key_lengths.npy ([B], int32 or\n"
          "      int64, each in [0, Lk]). All float files are float32. Any other .npy in\n"
          "      DIR is an error (with what to do about PyTorch's names), except out.npy\n"
          "      and the files given to --out and --expect.\n"
          "      Writes out.npy [B,Lq,O] only when the run succeeds (--expect included),\n"
          "      through a temporary file renamed into place; a failed run writes nothing.\n"
          "        --heads H            query heads (required: weights do not record it)\n"
          "        --kv-heads G         key/value heads, dividing H (default H)\n"
          "        --causal             causal mask, bottom-right aligned: row i sees keys\n"
          "                             j <= i + Lk - Lq (decoding with a cache)\n"
          "        --causal-top-left    row i sees keys j <= i, as PyTorch's\n"
          "                             scaled_dot_product_attention(is_causal=True)\n"
          "        --causal-offset N    row i sees keys j <= i + N (N may be negative)\n"
          "        --scale S            softmax scale (default 0 = 1/sqrt(head dim))\n"
          "        --threads N          OpenMP threads, 0.." STRINGIFY(MHA_MAX_THREADS) " (default 0 =\n"
          "                             the library's default)\n"
          "        --iters N            timed calls after one warm-up call (default 1);\n"
          "                             prints their median, min and max\n"
          "        --out FILE           where to write the output (default DIR/out.npy);\n"
          "                             never one of the inputs or the --expect file\n"
          "        --expect FILE        compare with FILE, float32 [B,Lq,O]: PASS when\n"
          "                             max |diff| / max |expected| <= T, over every row\n"
          "                             except those where FILE is all NaN and the query\n"
          "                             row may attend to no key in some head (PyTorch\n"
          "                             gives NaN there, mha a zero head row before the\n"
          "                             output projection; without one, each head's slice\n"
          "                             is such a unit and mha's must be zero). Any other\n"
          "                             NaN, in FILE or the output, fails.\n"
          "        --tol T              tolerance of --expect (default 2e-5)\n"
          "        --reference          compute with the float64 reference instead\n"
          "  mha run --module additive|concat [...] DIR\n"
          "      Additive (Bahdanau) or concat attention on a folder of .npy files; see\n"
          "      mha run --module additive --help.\n"
          "  mha demo [--threads N] [--iters N]\n"
          "      A ViT-Base self-attention forward (B=1 L=197 E=768 H=12) on random data,\n"
          "      checked against the float64 reference, then timed over N runs\n"
          "      (default 50): median time and GFLOP/s.\n"
          "  mha --version\n"
          "      The library's version (mha_version()); exit 1 when it differs from the\n"
          "      mha.h this tool was built with.\n"
          "  mha --help\n"
          "      This text.\n",
          f);
}

const char *cli_flag_value(const char *cmd, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "mha %s: %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_parse_int(const char *cmd, const char *flag, const char *text, long min, long max,
                  int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max) {
        fprintf(stderr, "mha %s: %s: '%s' is not an integer in [%ld, %ld]\n", cmd, flag, text,
                min, max);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_parse_double(const char *cmd, const char *flag, const char *text, double min,
                     double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "mha %s: %s: '%s' is not a number in [%g, %g]\n", cmd, flag, text, min,
                max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_bad_arg(const char *cmd, const char *arg)
{
    if (arg[0] == '-')
        fprintf(stderr, "mha %s: unknown flag '%s' (see mha --help)\n", cmd, arg);
    else
        fprintf(stderr, "mha %s: unexpected argument '%s' (see mha --help)\n", cmd, arg);
    return CLI_USAGE;
}

int cli_check(const char *cmd, const char *func, mha_status st)
{
    if (st == MHA_OK)
        return 0;
    fprintf(stderr, "mha %s: %s: %s\n", cmd, func, mha_status_message(st));
    return 1;
}

double cli_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

int cli_threads(int num_threads)
{
    return mha_threads(num_threads);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cli_median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* Locals, not e's fields, in the loop: aarch64 gcc 12 -O3 hit an internal compiler
 * error vectorizing the NaN flag and the maxima through the struct. */
void cli_err_add(cli_err *e, const float *got, const float *want, size_t n)
{
    double max_diff = e->max_diff, max_want = e->max_want;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (isnan(d)) {
            e->nan = 1;
            return;
        }
        max_diff = fmax(max_diff, d);
        max_want = fmax(max_want, fabs((double)want[i]));
    }
    e->max_diff = max_diff;
    e->max_want = max_want;
}

double cli_err_rel(const cli_err *e)
{
    if (e->nan)
        return NAN;
    return e->max_want > 0 ? e->max_diff / e->max_want : e->max_diff;
}

double cli_rel_err(const float *got, const float *want, size_t n)
{
    cli_err e = {0};
    cli_err_add(&e, got, want, n);
    return cli_err_rel(&e);
}

/* The library's version, and whether it is the one mha.h promised at build time. */
static int print_version(void)
{
    printf("mha %s\n", mha_version());
    if (mha_version_number() == MHA_VERSION_NUMBER)
        return CLI_OK;
    fprintf(stderr, "mha: built against mha.h %d.%d.%d, running with library %s\n",
            MHA_VERSION_MAJOR, MHA_VERSION_MINOR, MHA_VERSION_PATCH, mha_version());
    return CLI_FAIL;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"info", cli_info}, {"run", cli_run}, {"demo", cli_demo}};

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        cli_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0)
        return argc == 2 ? print_version() : cli_bad_arg("--version", argv[2]);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "mha: unknown command '%s' (commands: info, run, demo; see mha --help)\n",
            argv[1]);
    return CLI_USAGE;
}
