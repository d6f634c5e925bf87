/*
 * A continuous-batching loop on the public API alone: sequences arrive over
 * time, their prompts are prefilled in chunks while others decode, one
 * mha_serve_layer call per step runs them all against a paged KV pool, and a
 * finished sequence's blocks go back to the free list for the next arrivals.
 * Each generated token's input is the sequence's previous output row (an
 * autoregressive loop without a vocabulary). Every step's output is checked
 * against mha_reference_forward on each sequence's whole history alone.
 * Prints the steps, tokens, block reuse, the worst error and tokens per second
 * (of the layer calls). Exit status 0 when every check passed.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <math.h>
#include <mha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { E = 64, H = 4, G = 2, D = E / H, BS = 16, POOL = 24, NSEQ = 7, MAXLEN = 96, CHUNK = 24 };

typedef struct seq {
    int arrive, prompt, generate; /* step of arrival, prompt tokens, tokens to generate */
    int len;                      /* tokens in the cache */
    int produced;                 /* tokens generated so far */
    int blocks[MAXLEN / BS];
    int nblocks;
    float x[MAXLEN * E];          /* every input row so far */
} seq;

static unsigned rnd(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static float uniform(unsigned *s, float a)
{
    return a * ((float)rnd(s) / 16777216.0f * 2.0f - 1.0f);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Grows the buffer to n bytes if needed (outside the calls: they never allocate). */
static void *reserve(void *p, size_t *have, size_t n)
{
    if (n <= *have)
        return p;
    free(p);
    *have = n;
    p = malloc(n);
    if (!p)
        exit(1);
    return p;
}

int main(void)
{
    unsigned s = 7;
    /* nn.MultiheadAttention(64, 4) with 2 kv heads: W_q [64, 64], W_k, W_v [32, 64]. */
    const int nq = H * D, nkv = G * D;
    float *wq = malloc(sizeof(float) * nq * E), *wk = malloc(sizeof(float) * nkv * E),
          *wv = malloc(sizeof(float) * nkv * E), *wo = malloc(sizeof(float) * E * E);
    float *bq = malloc(sizeof(float) * nq), *bk = malloc(sizeof(float) * nkv), *bv = malloc(sizeof(float) * nkv),
          *bo = malloc(sizeof(float) * E);
    for (int i = 0; i < nq * E; i++)
        wq[i] = uniform(&s, 0.125f), wo[i] = uniform(&s, 0.125f);
    for (int i = 0; i < nkv * E; i++)
        wk[i] = uniform(&s, 0.125f), wv[i] = uniform(&s, 0.125f);
    for (int i = 0; i < E; i++)
        bq[i] = uniform(&s, 0.1f), bo[i] = uniform(&s, 0.1f);
    for (int i = 0; i < nkv; i++)
        bk[i] = uniform(&s, 0.1f), bv[i] = uniform(&s, 0.1f);
    mha_config cfg = mha_config_default(E, H);
    cfg.num_kv_heads = G;
    mha_weights w = {.q_weight = wq, .q_bias = bq, .k_weight = wk, .k_bias = bk, .v_weight = wv,
                     .v_bias = bv, .out_weight = wo, .out_bias = bo};
    mha_model *model;
    if (mha_model_create(&cfg, &w, &model) != MHA_OK)
        return 1;

    /* The paged pool and its free list (shuffled, so sequences get scattered blocks). */
    mha_kv_cache cache = {.layout = MHA_KV_PAGED, .num_kv_heads = G, .head_dim_qk = D, .head_dim_v = D,
                          .num_blocks = POOL, .block_size = BS};
    cache.k = malloc(sizeof(float) * POOL * G * BS * D);
    cache.v = malloc(sizeof(float) * POOL * G * BS * D);
    int free_list[POOL], nfree = POOL, used_before[POOL] = {0}, reused = 0;
    for (int i = 0; i < POOL; i++)
        free_list[i] = i;
    for (int i = POOL - 1; i > 0; i--) {
        int j = (int)(rnd(&s) % (unsigned)(i + 1)), t = free_list[i];
        free_list[i] = free_list[j];
        free_list[j] = t;
    }

    static seq seqs[NSEQ];
    const int arrive[NSEQ] = {0, 0, 1, 3, 6, 9, 12};
    for (int i = 0; i < NSEQ; i++) {
        seqs[i].arrive = arrive[i];
        seqs[i].prompt = 4 + (int)(rnd(&s) % 50);
        seqs[i].generate = 2 + (int)(rnd(&s) % 12);
        for (int j = 0; j < seqs[i].prompt * E; j++)
            seqs[i].x[j] = uniform(&s, 1.0f);
    }

    int32_t q_start[NSEQ + 1], kv_len[NSEQ], starts[NSEQ + 1], table[NSEQ * (MAXLEN / BS)], ids[NSEQ];
    float *x = malloc(sizeof(float) * NSEQ * CHUNK * E), *out = malloc(sizeof(float) * NSEQ * CHUNK * E);
    float *want = malloc(sizeof(float) * MAXLEN * E);
    void *storage = NULL, *ws = NULL;
    size_t storage_have = 0, ws_have = 0;
    double layer_seconds = 0, worst = 0;
    long tokens = 0, prefill_tokens = 0, decode_tokens = 0;
    int steps = 0, done = 0, failed = 0;
    for (int step = 0; done < NSEQ; step++, steps++) {
        /* Who runs this step: arrived and unfinished sequences whose blocks fit. */
        int n = 0;
        q_start[0] = 0;
        starts[0] = 0;
        for (int i = 0; i < NSEQ; i++) {
            seq *q = &seqs[i];
            if (q->arrive > step || q->produced == q->generate)
                continue;
            int rows = q->len < q->prompt ? (q->prompt - q->len < CHUNK ? q->prompt - q->len : CHUNK) : 1;
            /* Admission: every block the sequence will need, or it waits for
             * finished sequences to free some (so no running one ever starves). */
            int need = (q->prompt + q->generate + BS - 1) / BS;
            if (q->nblocks == 0 && need > nfree)
                continue;
            while (q->nblocks < need) {
                int blk = free_list[--nfree];
                reused += used_before[blk];
                used_before[blk] = 1;
                q->blocks[q->nblocks++] = blk;
            }
            memcpy(x + q_start[n] * E, q->x + q->len * E, sizeof(float) * rows * E);
            memcpy(table + starts[n], q->blocks, sizeof(int) * q->nblocks);
            ids[n] = i;
            kv_len[n] = q->len + rows;
            q_start[n + 1] = q_start[n] + rows;
            starts[n + 1] = starts[n] + q->nblocks;
            n++;
        }
        if (n == 0)
            continue;
        mha_batch batch = {.num_seqs = n, .q_start = q_start, .kv_len = kv_len, .block_table = table,
                           .block_start = starts};
        mha_serve_plan_args pa = {.model = model, .batch = &batch, .cache = &cache};
        size_t pb, wb;
        mha_serve_plan *plan;
        if (mha_serve_plan_size(&pa, &pb, &wb) != MHA_OK)
            return 1;
        storage = reserve(storage, &storage_have, pb);
        ws = reserve(ws, &ws_have, wb);
        mha_serve_layer_args la = {.x = x, .out = out};
        double t0 = now();
        mha_status st = mha_serve_plan_create(&pa, storage, pb, &plan);
        if (st == MHA_OK)
            st = mha_serve_layer(model, plan, &batch, &cache, &la, ws, wb);
        layer_seconds += now() - t0;
        if (st != MHA_OK) {
            printf("step %d: %s\n", step, mha_status_message(st));
            return 1;
        }

        /* Check each sequence alone against the float64 oracle; advance it. */
        for (int k = 0; k < n; k++) {
            seq *q = &seqs[ids[k]];
            const int rows = q_start[k + 1] - q_start[k], L = kv_len[k];
            mha_forward_args fa = {.batch = 1, .len_q = L, .len_k = L, .query = q->x, .out = want,
                                   .mask = {.causal = MHA_CAUSAL_BOTTOM_RIGHT}};
            if (mha_reference_forward(&cfg, &w, &fa) != MHA_OK)
                return 1;
            double top = 1e-6, err = 0;
            for (int i = 0; i < rows * E; i++) {
                double a = out[q_start[k] * E + i], b = want[(L - rows) * E + i];
                err = fabs(a - b) > err ? fabs(a - b) : err;
                top = fabs(b) > top ? fabs(b) : top;
            }
            worst = err / top > worst ? err / top : worst;
            failed |= !(err / top <= 5e-5);
            const int prefill = q->len < q->prompt;
            q->len = L;
            tokens += rows;
            if (prefill)
                prefill_tokens += rows;
            else
                decode_tokens += rows;
            if (q->len < q->prompt)
                continue;
            /* Generated token: the last output row, normalised, is the next input. */
            const float *o = out + (q_start[k + 1] - 1) * E;
            double rms = 0;
            for (int e = 0; e < E; e++)
                rms += (double)o[e] * o[e];
            rms = sqrt(rms / E) + 1e-6;
            for (int e = 0; e < E; e++)
                q->x[q->len * E + e] = (float)(o[e] / rms);
            q->produced++; /* a decode step, or the prefill's last chunk */
            if (q->produced == q->generate) { /* finished: its blocks back to the pool */
                while (q->nblocks)
                    free_list[nfree++] = q->blocks[--q->nblocks];
                done++;
            }
        }
    }
    printf("continuous batching: %d sequences, %d steps, %ld tokens (%ld prefill, %ld decode), "
           "%d blocks of %d handed out again after being freed, worst error %.2g vs float64 %s\n",
           NSEQ, steps, tokens, prefill_tokens, decode_tokens, reused, BS, worst, failed ? "FAILED" : "ok");
    printf("layer calls: %.1f ms in all, %.0f tokens/s (E=%d, H=%d, G=%d, %s)\n", 1e3 * layer_seconds,
           (double)tokens / layer_seconds, E, H, G, mha_isa_name(mha_active_isa()));
    mha_model_destroy(model);
    free(cache.k);
    free(cache.v);
    free(x);
    free(out);
    free(want);
    free(storage);
    free(ws);
    free(wq), free(wk), free(wv), free(wo), free(bq), free(bk), free(bv), free(bo);
    return failed || reused == 0;
}
