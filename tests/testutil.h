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
Suite *suite_masks(void);
Suite *suite_scenarios(void);
Suite *suite_golden(void);

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
/* Fails the current Check test with a message naming `what` when the relative
 * error exceeds tol. */
#define ck_assert_close(a, b, n, tol, what)                                              \
    do {                                                                                 \
        double e_ = test_rel_err((a), (b), (n), 1e-6);                                   \
        ck_assert_msg(e_ <= (tol), "%s: relative error %.3g > %.3g", (what), e_, (double)(tol)); \
    } while (0)

#endif
