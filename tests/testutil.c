#include "testutil.h"

#include <math.h>
#include <stdlib.h>

int test_quick(void)
{
    const char *q = getenv("MHA_TEST_QUICK");
    return q && *q && *q != '0';
}

test_rng test_rng_seed(uint64_t seed)
{
    test_rng r = {seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull};
    return r;
}

float test_rng_uniform(test_rng *r, float lo, float hi)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    double u = (double)(r->s >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

void test_fill(test_rng *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = test_rng_uniform(r, lo, hi);
}

float *test_random(test_rng *r, size_t n, float lo, float hi)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x)
        abort();
    test_fill(r, x, n, lo, hi);
    return x;
}

double test_rel_err(const float *a, const float *b, size_t n, double floor)
{
    double maxb = floor, maxd = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i]))
            return NAN;
        if (isnan(a[i]))
            continue;
        if (isinf(a[i]) || isinf(b[i])) {
            if (a[i] != b[i])
                return INFINITY;
            continue;
        }
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > maxd)
            maxd = d;
        if (fabs((double)b[i]) > maxb)
            maxb = fabs((double)b[i]);
    }
    return maxd / maxb;
}
