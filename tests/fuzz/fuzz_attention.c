/*
 * Differential fuzzing of mha_attention against the float64 oracle: the input
 * bytes choose the shape (decode and tiled paths, GQA), the tensor layouts, every
 * mask kind, the scale and the thread count, and seed the data. Both entries must
 * return the same status; on MHA_OK the outputs must agree within float32 error
 * (NaN where the oracle has NaN); on any other status the output must be untouched.
 * Any disagreement aborts, which libFuzzer reports with the input that caused it.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "mha.h"

/* A [n0, n1, n2, d] tensor in one of four layouts; returns its element count. */
static int64_t layout(unsigned kind, int64_t n0, int64_t n1, int64_t n2, int64_t d, int64_t st[3])
{
    switch (kind) {
    case 0: /* dense */
        st[2] = d, st[1] = n2 * d, st[0] = n1 * n2 * d;
        break;
    case 1: /* [n0, n2, n1, d] */
        st[1] = d, st[2] = n1 * d, st[0] = n1 * n2 * d;
        break;
    case 2: /* padded rows */
        st[2] = d + 3, st[1] = n2 * (d + 3), st[0] = n1 * n2 * (d + 3) + 5;
        break;
    default: /* broadcast over the batch */
        st[2] = d, st[1] = n2 * d, st[0] = 0;
        return n1 * n2 * d;
    }
    return (n0 - 1) * st[0] + (n1 - 1) * st[1] + (n2 - 1) * st[2] + d;
}

static float *random_tensor(int64_t n, uint64_t *s, float amp)
{
    float *x = malloc((size_t)n * sizeof *x + 1);
    for (int64_t i = 0; i < n; i++)
        x[i] = amp * rng_float(s);
    return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bytes b = {data, size};
    const int64_t B = 1 + take(&b, 3), G = 1 + take(&b, 3), H = G * (1 + take(&b, 3));
    const int64_t Lq = 1 + take(&b, take(&b, 4) ? 9 : 80);
    const int64_t Lk = 1 + take(&b, take(&b, 8) ? 40 : 1300);
    const int64_t dk = 1 + take(&b, 20), dv = 1 + take(&b, 20);
    const unsigned lq_kind = take(&b, 4), lk_kind = take(&b, 4), lo_kind = take(&b, 3);
    uint64_t seed = 0x9E3779B97F4A7C15ull ^ (uint64_t)take(&b, 0) << 8 ^ take(&b, 0);
    const float amp = take(&b, 4) == 0 ? 20.0f : 1.0f;

    mha_attention_args a;
    memset(&a, 0, sizeof a);
    a.batch = B, a.num_heads = H, a.num_kv_heads = G, a.len_q = Lq, a.len_k = Lk;
    a.head_dim_qk = dk, a.head_dim_v = dv;
    a.num_threads = (int)take(&b, 3);
    a.scale = take(&b, 2) ? 0.0f : 0.05f * (float)take(&b, 40);
    int64_t nq = layout(lq_kind, B, H, Lq, dk, a.q_stride);
    int64_t nk = layout(lk_kind, B, G, Lk, dk, a.k_stride);
    int64_t nv = layout(lk_kind, B, G, Lk, dv, a.v_stride);
    int64_t no = layout(lo_kind, B, H, Lq, dv, a.out_stride);
    float *q = random_tensor(nq, &seed, amp), *k = random_tensor(nk, &seed, amp);
    float *v = random_tensor(nv, &seed, 1.0f);
    a.q = q, a.k = k, a.v = v;

    /* Masks: each part on or off, broadcast or full. */
    int32_t lens[3];
    uint8_t *keep = NULL;
    float *add = NULL;
    a.mask.causal = (mha_causal)take(&b, 4); /* 3: not a valid kind */
    a.mask.causal_offset = (int64_t)take(&b, 0) - 128;
    if (take(&b, 3) == 0) {
        for (int64_t i = 0; i < B; i++)
            lens[i] = (int32_t)take(&b, (unsigned)Lk + 1);
        a.mask.key_lengths = lens;
    }
    if (take(&b, 3) == 0) {
        int full = take(&b, 2);
        keep = malloc((size_t)(B * H * Lq * Lk));
        for (int64_t i = 0; i < B * H * Lq * Lk; i++)
            keep[i] = (uint8_t)((rng_next(&seed) & 7) != 0 ? 1 + (rng_next(&seed) & 3) : 0);
        a.mask.bool_mask = (mha_mask_tensor){keep, full ? H * Lq * Lk : 0, full ? Lq * Lk : 0, Lk};
    }
    if (take(&b, 3) == 0) {
        add = malloc((size_t)(B * H * Lq * Lk) * sizeof *add);
        for (int64_t i = 0; i < B * H * Lq * Lk; i++)
            add[i] = (rng_next(&seed) & 15) == 0 ? -INFINITY : rng_float(&seed);
        a.mask.float_mask = (mha_mask_tensor){add, 0, take(&b, 2) ? Lq * Lk : 0, take(&b, 2) ? Lk : 0};
    }

    float *fast = malloc((size_t)no * sizeof *fast), *ref = malloc((size_t)no * sizeof *ref);
    memset(fast, 0x5A, (size_t)no * sizeof *fast);
    memset(ref, 0x5A, (size_t)no * sizeof *ref);
    size_t ws_bytes = 0;
    a.out = fast;
    mha_status st_size = mha_attention_workspace_size(&a, &ws_bytes);
    void *ws = st_size == MHA_OK ? malloc(ws_bytes) : NULL;
    mha_status st_fast = st_size == MHA_OK ? mha_attention(&a, ws, ws_bytes) : st_size;
    a.out = ref;
    mha_status st_ref = mha_reference_attention(&a);
    if (st_fast != st_ref) {
        fprintf(stderr, "status: fast %d, reference %d\n", st_fast, st_ref);
        abort();
    }
    if (st_fast != MHA_OK) {
        const uint8_t *c = (const uint8_t *)fast;
        for (size_t i = 0; i < (size_t)no * sizeof *fast; i++)
            if (c[i] != 0x5A)
                abort(); /* an error wrote the output */
    } else {
        /* Yardstick: max |V| (V is uniform in [-1, 1]): each output is a convex
         * combination of V rows, and cancellation can make it far smaller than
         * the rows its error comes from. */
        double top = 1.0, err = 0.0;
        for (int64_t i = 0; i < no; i++) {
            if (isnan(ref[i]) != isnan(fast[i])) {
                fprintf(stderr, "NaN mismatch at %lld: fast %g, reference %g\n", (long long)i, fast[i], ref[i]);
                abort();
            }
            if (!isnan(ref[i]) && fabs((double)fast[i] - ref[i]) > err)
                err = fabs((double)fast[i] - ref[i]);
        }
        /* Scores up to amp^2 * d_k: float32 rounding of them, amplified by exp. */
        double tol = 1e-4 + 4.0 * 6e-8 * (double)dk * amp * amp * (a.scale ? a.scale : 1.0);
        if (err / top > tol) {
            fprintf(stderr, "error %g > %g (B=%lld H=%lld G=%lld Lq=%lld Lk=%lld dk=%lld dv=%lld)\n",
                    err / top, tol, (long long)B, (long long)H, (long long)G, (long long)Lq,
                    (long long)Lk, (long long)dk, (long long)dv);
            abort();
        }
    }
    free(ws);
    free(fast);
    free(ref);
    free(add);
    free(keep);
    free(q);
    free(k);
    free(v);
    return 0;
}
