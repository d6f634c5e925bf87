/* Layouts, shapes, configurations and numerical stability: mha_attention and
 * mha_forward against the float64 oracle (tolerances: see test_masks.c). No OpenMP
 * outside START_TEST bodies: Check forks each test and libgomp is not fork-safe. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_check.h"

/* ----------------------------------------------------------- layouts */

START_TEST(test_strided_layouts)
{
    const struct {
        int q, kv, out;
    } lay[] = {
        {L_BLHD, L_BLHD, L_BLHD},     {L_DENSE, L_BCAST_B, L_DENSE}, {L_PADDED, L_PADDED, L_PADDED},
        {L_BLHD, L_BCAST_B, L_PADDED}, {L_PADDED, L_BLHD, L_BLHD},   {L_DENSE, L_DENSE, L_PADDED},
    };
    const int64_t dims[][2] = {{16, 8}, {17, 5}, {1, 3}};
    int seed = 0;
    for (size_t l = 0; l < sizeof lay / sizeof lay[0]; l++)
        for (int dd = 0; dd < 3; dd++) {
            prob p;
            prob_init(&p, 1000 + (uint64_t)seed++, 2, 4, 2, 9, 13, dims[dd][0], dims[dd][1], lay[l].q, lay[l].kv,
                      lay[l].out);
            char what[128];
            snprintf(what, sizeof what, "layouts q %s, k/v %s, out %s", layout_name(lay[l].q),
                     layout_name(lay[l].kv), layout_name(lay[l].out));
            float *o = check_attention(&p.a, TOL, what, NULL);
            free(o);
            /* With masks as well. */
            mha_attention_args a = p.a;
            a.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
            const int32_t kl[2] = {13, 6};
            a.mask.key_lengths = kl;
            o = check_attention(&a, TOL, what, NULL);
            free(o);
            prob_free(&p);
        }
    /* Longer: several query and key blocks, [B, L, H, d] everywhere. */
    prob p;
    prob_init(&p, 1100, 2, 4, 4, 70, 150, 24, 24, L_BLHD, L_BLHD, L_BLHD);
    float *o = check_attention(&p.a, TOL, "BLHD Lq=70 Lk=150", NULL);
    free(o);
    prob_free(&p);
}
END_TEST

/* ------------------------------------------------------------ shapes */

START_TEST(test_shapes)
{
    const int quick = test_quick();
    struct {
        int64_t B, H, G, Lq, Lk, dk, dv;
    } cases[] = {
        {2, 8, 2, 9, 13, 16, 16},  /* GQA */
        {2, 4, 1, 9, 13, 16, 16},  /* MQA */
        {2, 4, 4, 9, 13, 16, 24},  /* d_k != d_v */
        {2, 4, 2, 9, 13, 24, 16},
        {1, 2, 2, 7, 5, 1, 1},     /* odd head dims */
        {1, 2, 2, 7, 5, 3, 3},
        {1, 2, 1, 7, 5, 17, 17},
        {1, 2, 2, 7, 5, 33, 33},
        {1, 3, 3, 7, 5, 3, 17},
        {1, 2, 2, 1, 1, 8, 8},     /* lengths 1 */
        {1, 2, 2, 1, 37, 8, 8},
        {1, 2, 2, 37, 1, 8, 8},
        {1, 2, 2, 37, 131, 8, 8},  /* primes */
        {1, 2, 1, 131, 37, 33, 17},
        {3, 1, 1, 67, 257, 8, 8},  /* just past the block sizes */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        prob p;
        prob_init(&p, 1200 + c, cases[c].B, cases[c].H, cases[c].G, cases[c].Lq, cases[c].Lk, cases[c].dk,
                  cases[c].dv, L_DENSE, L_DENSE, L_DENSE);
        float *o = check_attention(&p.a, TOL, "shape", NULL);
        free(o);
        prob_free(&p);
    }

    /* Head dims 1 to 256 on a few lengths; the long ones shrink under emulation. */
    const int64_t hd[] = {1, 2, 4, 7, 8, 15, 16, 31, 32, 48, 63, 64, 65, 96, 100, 127, 128, 129, 160, 200, 255, 256};
    const int64_t lens[][2] = {{5, 7}, {1, 19}, {37, 131}};
    for (size_t i = 0; i < sizeof hd / sizeof hd[0]; i++)
        for (int l = 0; l < 3; l++) {
            if (quick && l == 2 && hd[i] > 64 && hd[i] != 256)
                continue;
            int64_t Lq = lens[l][0], Lk = lens[l][1];
            prob p;
            prob_init(&p, 1300 + i * 3 + (uint64_t)l, 1, 2, 1, Lq, Lk, hd[i], hd[i], L_DENSE, L_DENSE, L_DENSE);
            float *o = check_attention(&p.a, hd[i] > 64 ? TOL_BIG : TOL, "head dim", NULL);
            free(o);
            prob_free(&p);
        }

    /* GQA is MHA on K/V heads replicated: head h reads kv head h / (H / G). */
    const int64_t B = 2, H = 8, G = 2, Lq = 11, Lk = 17, d = 8;
    prob p;
    prob_init(&p, 1400, B, H, G, Lq, Lk, d, d, L_DENSE, L_DENSE, L_DENSE);
    float *gqa = check_attention(&p.a, TOL, "GQA", NULL);
    float *kr = xmalloc((size_t)(B * H * Lk * d) * sizeof(float)), *vr = xmalloc((size_t)(B * H * Lk * d) * sizeof(float));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t g = h / (H / G);
            memcpy(kr + (b * H + h) * Lk * d, p.k + (b * G + g) * Lk * d, (size_t)(Lk * d) * sizeof(float));
            memcpy(vr + (b * H + h) * Lk * d, p.v + (b * G + g) * Lk * d, (size_t)(Lk * d) * sizeof(float));
        }
    mha_attention_args a = p.a;
    a.num_kv_heads = H;
    a.k = kr;
    a.v = vr;
    set_strides(a.k_stride, L_DENSE, H, Lk, d);
    set_strides(a.v_stride, L_DENSE, H, Lk, d);
    float *mha = check_attention(&a, TOL, "GQA replicated as MHA", NULL);
    compare(gqa, mha, B, H, Lq, d, 1e-6, TOL, "GQA vs MHA on replicated K/V");
    free(gqa);
    free(mha);
    free(kr);
    free(vr);
    prob_free(&p);
}
END_TEST

/* ------------------------------------------------------------- stability */

/*
 * Inputs scaled by 30 give scores of magnitude ~1e2..1e3: exp without the max
 * subtracted would overflow. The float32 rounding of a score s has absolute error
 * up to ~d_k*u*scale*sum|q_i k_i| (computed below per problem), and the softmax
 * output moves by at most about 2*max|delta s|*max|V|, so the tolerance relative
 * to max|V| is 4*u*d_k*scale*max_ij sum_d |q_id k_jd| (with 2x margin), floored at TOL.
 */
static double stability_tol(const prob *p, float scale)
{
    const mha_attention_args *a = &p->a;
    const int64_t B = a->batch, H = a->num_heads, G = a->num_kv_heads ? a->num_kv_heads : H;
    double worst = 0.0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < a->len_q; i++)
                for (int64_t j = 0; j < a->len_k; j++) {
                    const float *q = a->q + b * a->q_stride[0] + h * a->q_stride[1] + i * a->q_stride[2];
                    const float *k = a->k + b * a->k_stride[0] + (h / (H / G)) * a->k_stride[1] + j * a->k_stride[2];
                    double s = 0.0;
                    for (int64_t x = 0; x < a->head_dim_qk; x++)
                        s += fabs((double)q[x] * (double)k[x]);
                    if (s > worst)
                        worst = s;
                }
    double t = 4.0 * 5.96e-8 * (double)a->head_dim_qk * scale * worst;
    return t > TOL ? t : TOL;
}

START_TEST(test_softmax_stability)
{
    const int64_t lks[] = {37, 300};
    for (int l = 0; l < 2; l++) {
        prob p;
        prob_init(&p, 1500 + (uint64_t)l, 2, 2, 1, 20, lks[l], 16, 16, L_DENSE, L_DENSE, L_DENSE);
        /* q, k scaled by 30; v too (so max|V| is the yardstick) */
        for (int64_t i = 0; i < 2 * 2 * 20 * 16; i++)
            p.q[i] *= 30.0f;
        for (int64_t i = 0; i < 2 * 1 * lks[l] * 16; i++) {
            p.k[i] *= 30.0f;
            p.v[i] *= 30.0f;
        }
        double tol = stability_tol(&p, 0.25f);
        float *ref;
        char what[96];
        snprintf(what, sizeof what, "inputs x30, Lk=%lld (tol %.2g)", (long long)lks[l], tol);
        float *o = check_attention(&p.a, tol, what, &ref);
        for (int64_t i = 0; i < 2 * 2 * 20 * 16; i++)
            require(isfinite(o[i]), "[%s] %s: non-finite output %g at %lld", isa_now(), what, (double)o[i],
                          (long long)i);
        free(o);
        free(ref);
        /* With masks: some rows fully hidden, others seeing one key. */
        mha_attention_args a = p.a;
        const int32_t kl[2] = {(int32_t)lks[l], 1};
        a.mask.key_lengths = kl;
        a.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
        o = check_attention(&a, tol, "inputs x30, masked", NULL);
        free(o);
        prob_free(&p);
    }

    /* Scores growing along the keys, so the running max grows in every key block
     * (the rescaling path; 1300 keys make three blocks of up to 512): q = 1,
     * k_j = 30 * (j+1)/Lk. And the reverse order. */
    for (int rev = 0; rev < 2; rev++) {
        const int64_t Lk = 1300, d = 16;
        prob p;
        prob_init(&p, 1510 + (uint64_t)rev, 1, 1, 1, 3, Lk, d, d, L_DENSE, L_DENSE, L_DENSE);
        for (int64_t i = 0; i < 3 * d; i++)
            p.q[i] = (float)(i / d + 1);
        for (int64_t j = 0; j < Lk; j++)
            for (int64_t x = 0; x < d; x++)
                p.k[j * d + x] = 30.0f * (float)((rev ? Lk - j : j + 1)) / (float)Lk;
        double tol = stability_tol(&p, 0.25f);
        float *o = check_attention(&p.a, tol, rev ? "decreasing scores" : "increasing scores", NULL);
        for (int64_t i = 0; i < 3 * d; i++)
            require(isfinite(o[i]), "[%s] monotone scores: non-finite output", isa_now());
        free(o);
        prob_free(&p);
    }

    /* Forward with inputs x30: scores reach a few hundred. */
    mha_config cfg = mha_config_default(16, 2);
    fixture f;
    fixture_init(&f, &cfg, 1, 1520);
    fixture_create(&f);
    finputs in;
    finputs_init(&in, &f, 1521, 2, 9, 9, 1, 30.0f);
    /* The forward's scores come from projected inputs; bound them loosely: with
     * weights +-1/sqrt(E), |Q|,|K| entries <= 30 + 1, so sum|q k| <= d_k * 31^2. */
    double tol = 4.0 * 5.96e-8 * 8.0 * (1.0 / sqrt(8.0)) * 8.0 * 31.0 * 31.0;
    float *o = check_forward(&f, &in.a, tol, "inputs x30", NULL);
    for (int64_t i = 0; i < 2 * 9 * 16; i++)
        require(isfinite(o[i]), "[%s] forward x30: non-finite output", isa_now());
    free(o);
    finputs_free(&in);
    fixture_free(&f);
}
END_TEST

Suite *suite_layouts(void)
{
    Suite *s = suite_create("layouts_shapes");
    TCase *tc = tcase_create("layouts_shapes");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_strided_layouts);
    tcase_add_test(tc, test_shapes);
    tcase_add_test(tc, test_softmax_stability);
    suite_add_tcase(s, tc);
    return s;
}
