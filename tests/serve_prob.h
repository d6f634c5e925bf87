/* Ragged serving problems for the serve suites: per-sequence dense K and V, the
 * same keys laid into a contiguous or paged cache (shuffled rows / blocks, NaN in
 * every slot no sequence owns, so a stray read shows), packed Q rows, and the
 * expected output from the float64 oracle of each sequence alone. */
#ifndef MHA_SERVE_PROB_H
#define MHA_SERVE_PROB_H

#include "testutil.h"

typedef struct serve_prob {
    int64_t n, H, G, dk, dv, T;
    int32_t *q_start, *kv_len;
    float **K, **V; /* sequence s: [kv_len[s], G, d] */
    float *q;       /* [T, H, d_k] */
    mha_kv_cache cache;
    mha_batch batch;
    int32_t *table, *starts, *rows;
    size_t k_bytes, v_bytes; /* of the pools */
} serve_prob;

enum { SP_CONTIGUOUS = 0, SP_STRIDED = 1, SP_PAGED_2D = 2, SP_PAGED_CSR = 3 };

/* q_len[s], kv_len[s] for s < n; block_size for the paged kinds. */
void serve_prob_init(serve_prob *p, uint64_t seed, int64_t n, int64_t H, int64_t G, int64_t dk,
                     int64_t dv, const int32_t *q_len, const int32_t *kv_len, int kind,
                     int64_t block_size);
void serve_prob_free(serve_prob *p);
/* Copies K and V (after a test changed them) into the cache again. */
void serve_prob_lay_out(serve_prob *p);
const char *serve_kind_name(int kind);

/* The oracle: mha_reference_attention on each sequence alone (causal bottom-right,
 * or none with batch.non_causal), as [T, H, d_v]; caller frees. */
float *serve_expected(const serve_prob *p, float scale);

/* Plans (no model) and runs mha_serve_attention on `threads`; returns the output
 * [T, H, d_v] (caller frees) and the LSE [T, H] into lse when not NULL. */
float *serve_run(const serve_prob *p, int threads, float scale, float *lse);

/* Random lengths: n sequences, kv_len in [1, max_kv], q_len in [1, min(kv_len,
 * max_q)] with q_len * kv_len <= budget where it can (the oracle's cost, so the
 * suite stays cheap under qemu), a third of them decodes (q_len 1..4). */
void serve_random_lengths(test_rng *r, int64_t n, int32_t max_q, int32_t max_kv, int32_t budget,
                          int32_t *q_len, int32_t *kv_len);

#endif
