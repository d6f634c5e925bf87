/* Shared pieces of the `mha` command line tool. */
#ifndef MHA_TOOLS_CLI_H
#define MHA_TOOLS_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "mha.h"

/* Exit statuses. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

int cli_info(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_demo(int argc, char **argv);
/* `mha run --module additive|concat`: the seq2seq attention modules. */
int cli_additive(int argc, char **argv);

void cli_usage(FILE *f);

/* argv[*i] is a flag taking a value: advances *i to it and returns it, or reports
 * the missing value and returns NULL. */
const char *cli_flag_value(const char *cmd, int argc, char **argv, int *i);
/* Parse a whole argument as an integer in [min, max] / a finite double in [min, max];
 * 0, or -1 after reporting the bad flag. */
int cli_parse_int(const char *cmd, const char *flag, const char *text, long min, long max,
                  int *out);
int cli_parse_double(const char *cmd, const char *flag, const char *text, double min,
                     double max, double *out);
/* For an unknown flag or extra argument: reports it, returns CLI_USAGE. */
int cli_bad_arg(const char *cmd, const char *arg);

/* Reports a library status other than MHA_OK with the function that returned it;
 * returns 1 then, 0 for MHA_OK. */
int cli_check(const char *cmd, const char *func, mha_status st);

/* Monotonic clock, milliseconds. */
double cli_now_ms(void);
/* Sorts the n > 0 times in t (so t[0] is the least, t[n-1] the most) and returns
 * their median. */
double cli_median(double *t, int n);
/* The threads a call given num_threads may use (0 = the library's default). */
int cli_threads(int num_threads);
/* max |got - want| / max |want| (the plain max |diff| when want is all zeros);
 * NaN when either holds a NaN (where both do, too). */
double cli_rel_err(const float *got, const float *want, size_t n);
/* The same, gathered over several pieces: add each, then read the ratio. */
typedef struct cli_err {
    double max_diff, max_want;
    int nan;
} cli_err;
void cli_err_add(cli_err *e, const float *got, const float *want, size_t n);
double cli_err_rel(const cli_err *e);

#endif
