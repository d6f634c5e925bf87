/* The `mha` command line tool: dispatch to info / run / demo, and shared helpers. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

void cli_usage(FILE *f)
{
    fputs("usage:\n"
          "  mha info\n"
          "      CPU name, detected features, the ISA in use and how it was chosen.\n"
          "  mha run [--heads H] [--kv-heads G] [--causal] [--scale S] [--threads N]\n"
          "          [--out FILE] [--expect FILE [--tol T]] [--reference] DIR\n"
          "      Multi-head attention on the float32 .npy files in DIR, named as in a\n"
          "      PyTorch state dict: query.npy [B,Lq,E]; optional key.npy [B,Lk,kdim] and\n"
          "      value.npy [B,Lk,vdim] (absent: self-attention); in_proj_weight.npy or\n"
          "      q_proj_weight.npy + k_proj_weight.npy + v_proj_weight.npy; optional biases\n"
          "      (in_proj_bias.npy or q/k/v_proj_bias.npy), out_proj_weight.npy +\n"
          "      out_proj_bias.npy, mask.npy (bool/uint8: nonzero = may attend; float32:\n"
          "      added), key_lengths.npy (int32 [B]). Writes out.npy [B,Lq,O].\n"
          "        --heads H      query heads (default 1)\n"
          "        --kv-heads G   key/value heads, dividing H (default H)\n"
          "        --causal       causal mask, bottom-right aligned\n"
          "        --scale S      softmax scale (default 0 = 1/sqrt(head dim))\n"
          "        --threads N    OpenMP threads (default 0 = OpenMP's default)\n"
          "        --out FILE     where to write the output (default DIR/out.npy)\n"
          "        --expect FILE  compare with FILE: max |diff| / max |expected| <= T\n"
          "        --tol T        tolerance of --expect (default 2e-5)\n"
          "        --reference    compute with the float64 reference instead\n"
          "  mha demo [--threads N] [--iters N]\n"
          "      A ViT-Base self-attention forward (B=1 L=197 E=768 H=12) on random data,\n"
          "      checked against the float64 reference, then timed over N runs\n"
          "      (default 50): median time and GFLOP/s.\n"
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
    return num_threads > 0 ? num_threads : omp_get_max_threads();
}

double cli_rel_err(const float *got, const float *want, size_t n)
{
    double max_diff = 0, max_want = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (isnan(d))
            return NAN;
        max_diff = fmax(max_diff, d);
        max_want = fmax(max_want, fabs((double)want[i]));
    }
    return max_want > 0 ? max_diff / max_want : max_diff;
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
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "mha: unknown command '%s' (commands: info, run, demo; see mha --help)\n",
            argv[1]);
    return CLI_USAGE;
}
