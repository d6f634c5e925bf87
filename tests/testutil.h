/* Helpers shared by the Check suites: deterministic random data and comparisons. */
#ifndef MHA_TESTUTIL_H
#define MHA_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <check.h>

#include "mha.h"

/* Suites, one per file. */
Suite *suite_kernels(void);
Suite *suite_api(void);
Suite *suite_validate(void);
Suite *suite_masks(void);
Suite *suite_layouts(void);
Suite *suite_decode(void);
Suite *suite_scenarios(void);
Suite *suite_golden(void);
Suite *suite_limits(void);
Suite *suite_serve(void);
Suite *suite_serve_layer(void);
Suite *suite_serve_validate(void);
Suite *suite_workspace(void);
Suite *suite_additive(void);
Suite *suite_additive_golden(void);

/* Outputs are filled with this byte before a call that must not write them. */
#define SENTINEL_BYTE 0x5A
void fill_sentinel(void *p, size_t bytes);
/* 1 when every byte of p still holds the sentinel. */
int is_sentinel(const void *p, size_t bytes);

/* The active ISA's name, for messages. */
const char *isa_now(void);
/* malloc that aborts on failure (and accepts 0). */
void *xmalloc(size_t n);

/* 1 when MHA_TEST_QUICK is set (slow emulation): suites may shrink big shapes. */
int test_quick(void);

/* xorshift generator: same sequence on every platform. */
typedef struct test_rng { uint64_t s; } test_rng;
test_rng test_rng_seed(uint64_t seed);
float test_rng_uniform(test_rng *r, float lo, float hi);
void test_fill(test_rng *r, float *x, size_t n, float lo, float hi);
/* malloc'd array of n uniform floats in [lo, hi); aborts on OOM. */
float *test_random(test_rng *r, size_t n, float lo, float hi);

/* max |a - b| / max(max |b|, floor) over n elements; NaN if either has a NaN
 * where the other does not. */
double test_rel_err(const float *a, const float *b, size_t n, double floor);
/* Cheap assertion for loops: Check records every passing ck_assert through a pipe. */
#define require(cond, ...)                                                                        \
    do {                                                                                          \
        if (!(cond))                                                                              \
            ck_abort_msg(__VA_ARGS__);                                                            \
    } while (0)

/* Random weights for a config (PyTorch-like init: uniform +-1/sqrt(fan_in); output
 * biases in [-1, 1] so a fully masked row's b_o is unmistakable), in separate or
 * fused layout. Dimensions are resolved here, independently of the library. */
typedef struct fixture {
    mha_config cfg;
    int64_t E, H, G, kdim, vdim, dk, dv, O, ncat;
    float *wq, *wk, *wv, *bq, *bk, *bv, *wo, *bo, *in_w, *in_b;
    mha_weights w;
    mha_model *model;
} fixture;

void fixture_init(fixture *f, const mha_config *cfg, int fused, uint64_t seed);
/* Creates f->model from the weights; fails the test on any status but MHA_OK. */
void fixture_create(fixture *f);
void fixture_free(fixture *f);

/* Fails the current Check test with a message naming `what` when the relative
 * error exceeds tol. */
#define ck_assert_close(a, b, n, tol, what)                                              \
    do {                                                                                 \
        double e_ = test_rel_err((a), (b), (n), 1e-6);                                   \
        ck_assert_msg(e_ <= (tol), "%s: relative error %.3g > %.3g", (what), e_, (double)(tol)); \
    } while (0)

#endif
