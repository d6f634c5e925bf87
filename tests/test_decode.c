/* Decoding (Lq <= 4) against the float64 oracle (tolerances: see test_masks.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_check.h"

/* Decoding (Lq <= 4) takes its own path: K and V read where they lie, key chunks
 * of 1024 merged by log-sum-exp, up to 16 kv heads per task (token-major K and V),
 * in blocks of 32 keys. Lk = 2500 makes three chunks; the masks cut inside them
 * and inside blocks;
 * H = 128, G = 1 with Lq = 4 (512 rows per group) falls back to the tiled path and
 * must agree too. K and V are head-major or token-major ([B, L, G, d]). */
START_TEST(test_decode)
{
    const int64_t lk = test_quick() ? 1500 : 2500;
    /* {H, G, Lq, explicit causal offset, K/V layout} */
    const int64_t cases[][5] = {{8, 2, 1, 0, L_DENSE},  {8, 2, 4, 0, L_BLHD}, {4, 4, 3, 1, L_DENSE},
                                {16, 1, 2, 1, L_BLHD},  {4, 4, 1, 0, L_BLHD}, {4, 4, 1, 1, L_DENSE},
                                {12, 3, 2, 0, L_BLHD},  {128, 1, 4, 0, L_DENSE}};
    for (int c = 0; c < 8; c++) {
        const int64_t H = cases[c][0], G = cases[c][1], Lq = cases[c][2], d = cases[c][0] == 128 ? 8 : 24;
        const int kvl = (int)cases[c][4];
        prob p;
        prob_init(&p, 1600 + (uint64_t)c, 2, H, G, Lq, lk, d, d + 8, L_DENSE, kvl, L_DENSE);
        char what[96];
        snprintf(what, sizeof what, "decode H=%lld G=%lld Lq=%lld K/V %s", (long long)H, (long long)G,
                 (long long)Lq, layout_name(kvl));
        float *o = check_attention(&p.a, TOL_BIG, what, NULL);
        free(o);

        mha_attention_args a = p.a;
        const int32_t kl[2] = {(int32_t)(lk - 1), 1500}; /* ends inside chunks 2 and 1 */
        a.mask.key_lengths = kl;
        a.mask.causal = cases[c][3] ? MHA_CAUSAL_EXPLICIT : MHA_CAUSAL_BOTTOM_RIGHT;
        a.mask.causal_offset = 1030; /* row 0 sees 1031 keys: one past the first chunk */
        float *fm = xmalloc((size_t)lk * sizeof(float));
        for (int64_t j = 0; j < lk; j++) /* keys 1024..2047 (all of chunk 1) hidden */
            fm[j] = j >= 1024 && j < 2048 ? -INFINITY : (float)(j % 7) * 0.1f;
        a.mask.float_mask = (mha_mask_tensor){fm, 0, 0, 0};
        o = check_attention(&a, TOL_BIG, "decode, causal + key lengths + float mask", NULL);
        free(o);

        /* Thread count: bitwise the same. */
        float *r1 = NULL, *r3 = NULL;
        for (int threads = 1; threads <= 3; threads += 2) {
            mha_attention_args t = a;
            t.num_threads = threads;
            float *out = xmalloc((size_t)(2 * H * Lq * (d + 8)) * sizeof(float));
            t.out = out;
            size_t bytes;
            ck_assert_int_eq(mha_attention_workspace_size(&t, &bytes), MHA_OK);
            void *ws = xmalloc(bytes);
            ck_assert_int_eq(mha_attention(&t, ws, bytes), MHA_OK);
            free(ws);
            *(threads == 1 ? &r1 : &r3) = out;
        }
        require(memcmp(r1, r3, (size_t)(2 * H * Lq * (d + 8)) * sizeof(float)) == 0,
                "[%s] %s: 1 and 3 threads differ", isa_now(), what);
        free(r1);
        free(r3);
        free(fm);
        prob_free(&p);
    }
}
END_TEST

/* A NaN in K inside the second chunk reaches the rows that see it, and only them. */
START_TEST(test_decode_nan_chunk)
{
    prob p;
    prob_init(&p, 1700, 1, 2, 1, 2, 2100, 16, 16, L_DENSE, L_DENSE, L_DENSE);
    p.k[1500 * 16 + 3] = NAN;
    mha_attention_args a = p.a;
    a.mask.causal = MHA_CAUSAL_EXPLICIT;
    a.mask.causal_offset = 1499; /* row 0 sees keys <= 1499, row 1 also key 1500 */
    float *o = check_attention(&a, TOL, "decode, NaN key in chunk 2", NULL);
    for (int64_t h = 0; h < 2; h++)
        for (int64_t x = 0; x < 16; x++) {
            require(isfinite(o[(h * 2 + 0) * 16 + x]), "[%s] row 0 must not see the NaN key", isa_now());
            require(isnan(o[(h * 2 + 1) * 16 + x]), "[%s] row 1 must see the NaN key", isa_now());
        }
    free(o);
    prob_free(&p);
}
END_TEST

/* Forward decoding with the output projection (the heads of the few rows are
 * gathered, then projected), self and cross. */
START_TEST(test_decode_forward)
{
    for (int cross = 0; cross < 2; cross++) {
        mha_config cfg = mha_config_default(48, 6);
        cfg.num_kv_heads = 2;
        fixture f;
        fixture_init(&f, &cfg, 0, 1800 + (uint64_t)cross);
        fixture_create(&f);
        finputs in;
        finputs_init(&in, &f, 1810 + (uint64_t)cross, 2, cross ? 1 : 3, cross ? 2100 : 3, !cross, 1.0f);
        float *o = check_forward(&f, &in.a, TOL, cross ? "decode forward, cross, Lk=2100" : "decode forward, self",
                                 NULL);
        free(o);
        finputs_free(&in);
        fixture_free(&f);
    }
}
END_TEST

Suite *suite_decode(void)
{
    Suite *s = suite_create("decode");
    TCase *tc = tcase_create("decode");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_decode);
    tcase_add_test(tc, test_decode_nan_chunk);
    tcase_add_test(tc, test_decode_forward);
    suite_add_tcase(s, tc);
    return s;
}
