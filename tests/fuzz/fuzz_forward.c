/*
 * Differential fuzzing of the whole forward pass against the float64 oracle: the
 * input bytes choose the config (widths, heads, GQA, head dims, kdim/vdim, biases,
 * output projection and its width, fused or separate weights, scale), the call
 * (batch, lengths, self or cross, threads) and the masks, and seed the data.
 * Creation and the oracle must agree on the status; on MHA_OK the outputs must
 * agree within float32 error; on any other status the output must be untouched.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "mha.h"

static float *random_array(int64_t n, uint64_t *s, float amp)
{
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        x[i] = amp * rng_float(s);
    return x;
}

static void fail(const char *why, const mha_config *c)
{
    fprintf(stderr, "%s (E=%lld H=%lld G=%lld dk=%lld dv=%lld kdim=%lld vdim=%lld O=%lld bias=%d proj=%d)\n",
            why, (long long)c->embed_dim, (long long)c->num_heads, (long long)c->num_kv_heads,
            (long long)c->head_dim_qk, (long long)c->head_dim_v, (long long)c->kdim, (long long)c->vdim,
            (long long)c->out_dim, c->has_bias, c->has_out_proj);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bytes b = {data, size};
    uint64_t seed = 0x2545F4914F6CDD1Dull ^ (uint64_t)take(&b, 0) << 8 ^ take(&b, 0);
    mha_config c = mha_config_default(1 + take(&b, 24), 1 + take(&b, 4));
    c.num_kv_heads = take(&b, 3) ? 0 : 1 + take(&b, 4);
    c.head_dim_qk = take(&b, 2) ? 0 : 1 + take(&b, 12);
    c.head_dim_v = take(&b, 2) ? 0 : 1 + take(&b, 12);
    c.kdim = take(&b, 2) ? 0 : 1 + take(&b, 20);
    c.vdim = take(&b, 2) ? 0 : 1 + take(&b, 20);
    c.out_dim = take(&b, 2) ? 0 : 1 + take(&b, 20);
    c.has_bias = (int)take(&b, 2);
    c.has_out_proj = (int)take(&b, 3) != 0;
    c.scale = take(&b, 2) ? 0.0f : 0.1f * (float)take(&b, 20);
    const int fused = take(&b, 2);

    /* Widths as the config will resolve them, for sizing the caller's arrays; an
     * invalid config still gets arrays (the checks must refuse it, not read them). */
    const int64_t E = c.embed_dim, H = c.num_heads, G = c.num_kv_heads ? c.num_kv_heads : H;
    const int64_t dk = c.head_dim_qk ? c.head_dim_qk : (E / H ? E / H : 1);
    const int64_t dv = c.head_dim_v ? c.head_dim_v : (E / H ? E / H : 1);
    const int64_t kdim = c.kdim ? c.kdim : E, vdim = c.vdim ? c.vdim : E;
    const int64_t O = c.has_out_proj ? (c.out_dim ? c.out_dim : E) : H * dv;
    const int64_t nq = H * dk, nk = G * dk, nv = G * dv;
    float *wq = random_array(nq * E, &seed, 0.3f), *wk = random_array(nk * kdim, &seed, 0.3f);
    float *wv = random_array(nv * vdim, &seed, 0.3f), *wo = random_array(O * H * dv, &seed, 0.3f);
    float *bias = random_array(nq + nk + nv + O, &seed, 0.3f);
    float *in_w = random_array((nq + nk + nv) * E, &seed, 0.3f);
    mha_weights w = {0};
    if (fused && kdim == E && vdim == E) {
        w.in_proj_weight = in_w;
        w.in_proj_bias = c.has_bias ? bias : NULL;
    } else {
        w.q_weight = wq, w.k_weight = wk, w.v_weight = wv;
        if (c.has_bias)
            w.q_bias = bias, w.k_bias = bias + nq, w.v_bias = bias + nq + nk;
    }
    if (c.has_out_proj) {
        w.out_weight = wo;
        w.out_bias = c.has_bias ? bias + nq + nk + nv : NULL;
    }

    const int64_t B = 1 + take(&b, 3), Lq = 1 + take(&b, take(&b, 4) ? 9 : 70);
    const int cross = take(&b, 2) || kdim != E || vdim != E;
    const int64_t Lk = cross ? 1 + take(&b, take(&b, 8) ? 30 : 1100) : Lq;
    float *x = random_array(B * Lq * E, &seed, 1.0f);
    float *kx = random_array(B * Lk * kdim, &seed, 1.0f), *vx = random_array(B * Lk * vdim, &seed, 1.0f);
    mha_forward_args a = {.batch = B, .len_q = Lq, .len_k = Lk, .query = x,
                          .num_threads = (int)take(&b, 3)};
    if (cross)
        a.key = kx, a.value = vx;
    int32_t lens[3];
    a.mask.causal = (mha_causal)take(&b, 3);
    a.mask.causal_offset = (int64_t)take(&b, 0) - 128;
    if (take(&b, 3) == 0) {
        for (int64_t i = 0; i < B; i++)
            lens[i] = (int32_t)take(&b, (unsigned)Lk + 1);
        a.mask.key_lengths = lens;
    }
    uint8_t *keep = NULL;
    if (take(&b, 3) == 0) {
        keep = malloc((size_t)(Lq * Lk));
        for (int64_t i = 0; i < Lq * Lk; i++)
            keep[i] = (uint8_t)(take(&b, 0) % 5 != 0);
        a.mask.bool_mask = (mha_mask_tensor){keep, 0, 0, Lk};
    }

    float *fast = malloc((size_t)(B * Lq * O) * sizeof *fast), *ref = malloc((size_t)(B * Lq * O) * sizeof *ref);
    memset(fast, 0x5A, (size_t)(B * Lq * O) * sizeof *fast);
    mha_model *m = NULL;
    mha_status st_fast = mha_model_create(&c, &w, &m);
    void *ws = NULL;
    size_t ws_bytes = 0;
    if (st_fast == MHA_OK)
        st_fast = mha_forward_workspace_size(m, B, Lq, Lk, a.num_threads, &ws_bytes);
    if (st_fast == MHA_OK) {
        ws = malloc(ws_bytes);
        a.out = fast;
        st_fast = mha_forward(m, &a, ws, ws_bytes);
    }
    a.out = ref;
    mha_status st_ref = mha_reference_forward(&c, &w, &a);
    if (st_fast != st_ref) {
        fprintf(stderr, "status: fast %d, reference %d\n", st_fast, st_ref);
        fail("status mismatch", &c);
    }
    if (st_fast != MHA_OK) {
        const uint8_t *u = (const uint8_t *)fast;
        for (size_t i = 0; i < (size_t)(B * Lq * O) * sizeof *fast; i++)
            if (u[i] != 0x5A)
                fail("an error wrote the output", &c);
    } else {
        /* Yardstick at least 1, the scale of the inputs: outputs that cancel to
         * near 0 carry the rounding of the larger terms they came from. */
        double top = 1.0, err = 0.0;
        for (int64_t i = 0; i < B * Lq * O; i++) {
            if (isnan(ref[i]) != isnan(fast[i]))
                fail("NaN mismatch", &c);
            top = fabs(ref[i]) > top ? fabs(ref[i]) : top;
            err = fabs((double)fast[i] - ref[i]) > err ? fabs((double)fast[i] - ref[i]) : err;
        }
        if (err / top > 2e-4) {
            fprintf(stderr, "error %g (B=%lld Lq=%lld Lk=%lld)\n", err / top, (long long)B, (long long)Lq,
                    (long long)Lk);
            fail("outputs differ", &c);
        }
    }
    mha_model_destroy(m);
    free(ws);
    free(fast);
    free(ref);
    free(keep);
    free(x);
    free(kx);
    free(vx);
    free(wq);
    free(wk);
    free(wv);
    free(wo);
    free(bias);
    free(in_w);
    return 0;
}
