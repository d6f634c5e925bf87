#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void fill_sentinel(void *p, size_t bytes)
{
    memset(p, SENTINEL_BYTE, bytes);
}

int is_sentinel(const void *p, size_t bytes)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < bytes; i++)
        if (c[i] != SENTINEL_BYTE)
            return 0;
    return 1;
}

const char *isa_now(void)
{
    return mha_isa_name(mha_active_isa());
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

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

void fixture_init(fixture *f, const mha_config *cfg, int fused, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    f->cfg = *cfg;
    f->E = cfg->embed_dim;
    f->H = cfg->num_heads;
    f->G = cfg->num_kv_heads ? cfg->num_kv_heads : f->H;
    f->kdim = cfg->kdim ? cfg->kdim : f->E;
    f->vdim = cfg->vdim ? cfg->vdim : f->E;
    f->dk = cfg->head_dim_qk ? cfg->head_dim_qk : f->E / f->H;
    f->dv = cfg->head_dim_v ? cfg->head_dim_v : f->E / f->H;
    f->ncat = f->H * f->dv;
    f->O = cfg->has_out_proj ? (cfg->out_dim ? cfg->out_dim : f->E) : f->ncat;
    test_rng r = test_rng_seed(seed);
    float se = 1.0f / sqrtf((float)f->E), sk = 1.0f / sqrtf((float)f->kdim),
          sv = 1.0f / sqrtf((float)f->vdim), so = 1.0f / sqrtf((float)f->ncat);
    int64_t nq = f->H * f->dk, nk = f->G * f->dk, nv = f->G * f->dv;
    if (fused) {
        f->in_w = test_random(&r, (size_t)((nq + nk + nv) * f->E), -se, se);
        f->w.in_proj_weight = f->in_w;
        if (cfg->has_bias) {
            f->in_b = test_random(&r, (size_t)(nq + nk + nv), -se, se);
            f->w.in_proj_bias = f->in_b;
        }
    } else {
        f->wq = test_random(&r, (size_t)(nq * f->E), -se, se);
        f->wk = test_random(&r, (size_t)(nk * f->kdim), -sk, sk);
        f->wv = test_random(&r, (size_t)(nv * f->vdim), -sv, sv);
        f->w.q_weight = f->wq;
        f->w.k_weight = f->wk;
        f->w.v_weight = f->wv;
        if (cfg->has_bias) {
            f->bq = test_random(&r, (size_t)nq, -se, se);
            f->bk = test_random(&r, (size_t)nk, -sk, sk);
            f->bv = test_random(&r, (size_t)nv, -sv, sv);
            f->w.q_bias = f->bq;
            f->w.k_bias = f->bk;
            f->w.v_bias = f->bv;
        }
    }
    if (cfg->has_out_proj) {
        f->wo = test_random(&r, (size_t)(f->O * f->ncat), -so, so);
        f->w.out_weight = f->wo;
        if (cfg->has_bias) {
            f->bo = test_random(&r, (size_t)f->O, -1, 1);
            f->w.out_bias = f->bo;
        }
    }
}

void fixture_create(fixture *f)
{
    mha_status st = mha_model_create(&f->cfg, &f->w, &f->model);
    require(st == MHA_OK, "mha_model_create: %s", mha_status_message(st));
}

void fixture_free(fixture *f)
{
    mha_model_destroy(f->model);
    free(f->wq);
    free(f->wk);
    free(f->wv);
    free(f->bq);
    free(f->bk);
    free(f->bv);
    free(f->wo);
    free(f->bo);
    free(f->in_w);
    free(f->in_b);
}
