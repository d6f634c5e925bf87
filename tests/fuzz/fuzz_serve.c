/*
 * Differential fuzzing of the serving attention (plan + mha_serve_attention)
 * against its float64 oracle: the input bytes choose a ragged batch (prefills
 * and decodes, non-causal or not), GQA, the cache layout (contiguous with
 * shuffled rows, paged with blocks of 16/32/64 in a shuffled order, 2-D or CSR
 * tables), the scale, the LSE output and the thread count, may corrupt one
 * descriptor field, and seed the data. Pool slots no sequence owns hold NaN, so
 * a stray read shows. Planning and running must succeed or fail with the
 * oracle's status; on failure neither output nor LSE is written; on success the
 * outputs (and LSEs) agree within float32 error. Any disagreement aborts.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "mha.h"

static void *zalloc(size_t n)
{
    void *p = calloc(n ? n : 1, 1);
    if (!p)
        abort();
    return p;
}

#define MAXSEQ 6

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bytes b = {data, size};
    uint64_t seed = 0x9E3779B97F4A7C15ull ^ size;
    for (size_t i = 0; i < size && i < 16; i++)
        seed = seed * 31 + data[i] + 1;
    const int64_t n = 1 + take(&b, MAXSEQ), G = 1 + take(&b, 3), H = G * (1 + take(&b, 3));
    const int64_t dk = 1 + take(&b, 24), dv = 1 + take(&b, 24);
    const unsigned kind = take(&b, 4); /* 0 contiguous, 1 paged 2-D, 2 paged CSR, 3 contiguous strided */
    const int64_t bs = 16 << take(&b, 3);
    int32_t q_start[MAXSEQ + 1] = {0}, kv_len[MAXSEQ];
    const int non_causal = take(&b, 5) == 0;
    int64_t max_kv = 0, blocks = 0;
    for (int64_t s = 0; s < n; s++) {
        int32_t ql = (int32_t)(take(&b, 3) ? 1 + take(&b, 4) : 1 + take(&b, 70));
        int32_t kl = (int32_t)(ql + (take(&b, 4) ? take(&b, 0) : take(&b, 0) * 9));
        if (non_causal && take(&b, 2))
            kl = 1 + (int32_t)take(&b, (unsigned)ql);
        q_start[s + 1] = q_start[s] + ql;
        kv_len[s] = kl;
        max_kv = kl > max_kv ? kl : max_kv;
        blocks += (kl + bs - 1) / bs;
    }
    const int64_t T = q_start[n];

    mha_kv_cache c;
    mha_batch batch;
    memset(&c, 0, sizeof c);
    memset(&batch, 0, sizeof batch);
    batch.num_seqs = n;
    batch.q_start = q_start;
    batch.kv_len = kv_len;
    batch.non_causal = non_causal;
    c.num_kv_heads = G;
    c.head_dim_qk = dk;
    c.head_dim_v = dv;
    int32_t rows[MAXSEQ + 2], *table = NULL, starts[MAXSEQ + 1];
    int64_t kfl, vfl, stride = 0;
    if (kind == 0 || kind == 3) {
        const int64_t R = n + 2, L = max_kv + (int64_t)take(&b, 3), pad = kind == 3 ? 2 : 0;
        rng_permutation(rows, R, &seed);
        c.layout = MHA_KV_CONTIGUOUS;
        c.num_seqs = R;
        c.max_len = L;
        if (pad) {
            c.k_stride[2] = G * dk + pad;
            c.v_stride[2] = G * dv + pad;
            c.k_stride[0] = L * c.k_stride[2];
            c.v_stride[0] = L * c.v_stride[2];
        }
        kfl = R * L * (G * dk + pad);
        vfl = R * L * (G * dv + pad);
        batch.cache_seq = rows;
    } else {
        const int64_t nb = blocks + (int64_t)take(&b, 3), mb = (max_kv + bs - 1) / bs;
        int32_t *perm = zalloc((size_t)nb * sizeof *perm);
        rng_permutation(perm, nb, &seed);
        c.layout = MHA_KV_PAGED;
        c.block_size = bs;
        c.num_blocks = nb;
        kfl = nb * G * bs * dk;
        vfl = nb * G * bs * dv;
        stride = mb + (int64_t)take(&b, 2);
        table = zalloc((size_t)(n * stride + 1) * sizeof *table);
        int64_t used = 0;
        starts[0] = 0;
        for (int64_t s = 0; s < n; s++) {
            int64_t need = (kv_len[s] + bs - 1) / bs;
            for (int64_t i = 0; i < need; i++)
                table[(kind == 2 ? starts[s] : s * stride) + i] = perm[used++];
            starts[s + 1] = (int32_t)(starts[s] + need);
        }
        batch.block_table = table;
        if (kind == 2) {
            batch.block_start = starts;
        } else {
            batch.max_blocks = mb;
            batch.block_table_stride = stride;
        }
        free(perm);
    }
    float *k = zalloc((size_t)kfl * sizeof *k), *v = zalloc((size_t)vfl * sizeof *v);
    for (int64_t i = 0; i < kfl; i++)
        k[i] = NAN;
    for (int64_t i = 0; i < vfl; i++)
        v[i] = NAN;
    c.k = k;
    c.v = v;
    /* Lay each sequence's keys into its slots. */
    const float amp = take(&b, 4) ? 1.0f : 3.0f;
    for (int64_t s = 0; s < n; s++)
        for (int64_t j = 0; j < kv_len[s]; j++)
            for (int64_t g = 0; g < G; g++) {
                float *kd, *vd;
                if (c.layout == MHA_KV_CONTIGUOUS) {
                    int64_t ks2 = c.k_stride[2] ? c.k_stride[2] : G * dk, vs2 = c.v_stride[2] ? c.v_stride[2] : G * dv;
                    kd = k + rows[s] * c.max_len * ks2 + j * ks2 + g * dk;
                    vd = v + rows[s] * c.max_len * vs2 + j * vs2 + g * dv;
                } else {
                    int64_t blk = table[(kind == 2 ? starts[s] : s * stride) + j / bs];
                    kd = k + ((blk * G + g) * bs + j % bs) * dk;
                    vd = v + ((blk * G + g) * bs + j % bs) * dv;
                }
                for (int64_t e = 0; e < dk; e++)
                    kd[e] = amp * rng_float(&seed);
                for (int64_t e = 0; e < dv; e++)
                    vd[e] = rng_float(&seed);
            }
    float *q = zalloc((size_t)(T * H * dk) * sizeof *q);
    for (int64_t i = 0; i < T * H * dk; i++)
        q[i] = amp * rng_float(&seed);

    mha_serve_plan_args pa;
    memset(&pa, 0, sizeof pa);
    pa.num_heads = H;
    pa.num_kv_heads = G;
    pa.head_dim_qk = dk;
    pa.head_dim_v = dv;
    pa.batch = &batch;
    pa.cache = &c;
    pa.num_threads = (int)take(&b, 4);
    size_t pb = 0, wb = 0;
    mha_status st = mha_serve_plan_size(&pa, &pb, &wb);
    void *storage = st == MHA_OK ? zalloc(pb) : NULL, *ws = st == MHA_OK ? zalloc(wb) : NULL;
    mha_serve_plan *plan = NULL;
    if (st == MHA_OK)
        st = mha_serve_plan_create(&pa, storage, pb, &plan);
    if (st != MHA_OK)
        abort(); /* every batch built above is valid */

    /* One field corrupted after planning, or none. */
    int32_t saved_kv = kv_len[0];
    switch (take(&b, 12)) {
    case 0: kv_len[0]++; break;                                         /* PLAN */
    case 1: if (table) table[kind == 2 ? 0 : 0] = (int32_t)c.num_blocks; break; /* CACHE */
    case 2: if (table && kind != 2) batch.max_blocks = 0; break;        /* CACHE */
    case 3: if (!table) rows[0] = (int32_t)c.num_seqs; break;           /* CACHE */
    case 4: c.head_dim_v++; break;                                      /* CACHE */
    case 5: if (kind == 2 && n > 1) starts[1] = starts[2] + 1; break;   /* CACHE */
    default: break;
    }
    mha_serve_attention_args a;
    memset(&a, 0, sizeof a);
    a.q = q;
    a.scale = take(&b, 2) ? 0.0f : 0.05f * (float)take(&b, 40);
    const int want_lse = take(&b, 2);
    const size_t on = (size_t)(T * H * dv), ln = (size_t)(T * H);
    float *fast = zalloc(on * sizeof(float)), *ref = zalloc(on * sizeof(float));
    float *lf = zalloc(ln * sizeof(float)), *lr = zalloc(ln * sizeof(float));
    memset(fast, 0x5A, on * sizeof(float));
    memset(lf, 0x5A, ln * sizeof(float));
    a.out = fast;
    a.lse = want_lse ? lf : NULL;
    mha_status st_fast = mha_serve_attention(plan, &batch, &c, &a, ws, wb);
    a.out = ref;
    a.lse = want_lse ? lr : NULL;
    mha_status st_ref = mha_reference_serve_attention(plan, &batch, &c, &a);
    if (st_fast != st_ref) {
        fprintf(stderr, "status: fast %d, reference %d\n", st_fast, st_ref);
        abort();
    }
    if (st_fast != MHA_OK) {
        for (size_t i = 0; i < on * sizeof(float); i++)
            if (((const uint8_t *)fast)[i] != 0x5A)
                abort(); /* an error wrote the output */
        for (size_t i = 0; i < ln * sizeof(float); i++)
            if (((const uint8_t *)lf)[i] != 0x5A)
                abort(); /* ... or the LSE */
    } else {
        double err = 0.0, lerr = 0.0;
        for (size_t i = 0; i < on; i++) {
            if (isnan(ref[i]) != isnan(fast[i])) {
                fprintf(stderr, "NaN mismatch at %zu: fast %g, reference %g\n", i, fast[i], ref[i]);
                abort();
            }
            if (!isnan(ref[i]) && fabs((double)fast[i] - ref[i]) > err)
                err = fabs((double)fast[i] - ref[i]);
        }
        for (size_t i = 0; want_lse && i < ln; i++)
            if (fabs((double)lf[i] - lr[i]) / (1.0 + fabs((double)lr[i])) > lerr)
                lerr = fabs((double)lf[i] - lr[i]) / (1.0 + fabs((double)lr[i]));
        /* Outputs are convex combinations of V rows (|V| <= 1): error against 1. */
        double tol = 1e-4 + 4.0 * 6e-8 * (double)dk * amp * amp * (a.scale ? a.scale : 1.0);
        if (err > tol || lerr > 4 * tol) {
            fprintf(stderr, "error %g lse %g > %g (n=%lld H=%lld G=%lld dk=%lld dv=%lld kind=%u)\n", err, lerr, tol,
                    (long long)n, (long long)H, (long long)G, (long long)dk, (long long)dv, kind);
            abort();
        }
    }
    kv_len[0] = saved_kv;
    free(fast);
    free(ref);
    free(lf);
    free(lr);
    free(q);
    free(k);
    free(v);
    free(table);
    free(storage);
    free(ws);
    return 0;
}
