/*
 * One program, two builds of the library: mha_attention of build A and of build B
 * (its public symbols renamed b_* by link_two.sh) on the same tensors, called
 * alternately, 150 ms each, for `rounds` rounds. Prints the median of the per-round
 * time ratios B/A with the quartiles, and the largest difference between the two
 * outputs. On a shared host whose speed moves by 10-30% within minutes, ratios of
 * whole bench runs taken one after the other are noise at the 5% level; calls
 * alternated inside one process see the same machine.
 *
 * usage: ab_attention B H G Lq Lk d causal threads rounds layout
 *   layout 0: [B, H, L, d] tensors, 1: [B, L, H, d]; causal 1: bottom-right.
 * With AB_EXPECT_SAME=1 in the environment, exits 1 unless the outputs are equal
 * (the test that runs one build against itself).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab_common.h"
#include "mha.h"

mha_status b_mha_attention_workspace_size(const mha_attention_args *args, size_t *bytes);
mha_status b_mha_attention(const mha_attention_args *args, void *workspace, size_t workspace_bytes);

/* What each side's call needs: the arguments (out set per side), outputs, workspace. */
typedef struct side {
    mha_attention_args *a;
    float **out;
    void *w;
    size_t ws;
} side;

static int call(int which, void *ctx)
{
    side *c = ctx;
    c->a->out = c->out[which];
    return which ? b_mha_attention(c->a, c->w, c->ws) : mha_attention(c->a, c->w, c->ws);
}

/* Strides of [B, N, L, d] (head-major) or [B, L, N, d] (token-major). */
static void strides(int layout, int64_t n, int64_t l, int64_t d, int64_t s[3])
{
    s[0] = n * l * d;
    s[1] = layout ? d : l * d;
    s[2] = layout ? n * d : d;
}

int main(int argc, char **argv)
{
    if (argc != 11) {
        fprintf(stderr, "usage: %s B H G Lq Lk d causal threads rounds layout\n", argv[0]);
        return 2;
    }
    const int64_t B = atoll(argv[1]), H = atoll(argv[2]), G = atoll(argv[3]), Lq = atoll(argv[4]),
                  Lk = atoll(argv[5]), d = atoll(argv[6]);
    const int causal = atoi(argv[7]), threads = atoi(argv[8]), rounds = atoi(argv[9]), layout = atoi(argv[10]);
    if (rounds < 1 || rounds > AB_MAX_ROUNDS) {
        fprintf(stderr, "rounds: 1..%d\n", AB_MAX_ROUNDS);
        return 2;
    }
    const size_t nq = (size_t)(B * H * Lq * d), nk = (size_t)(B * G * Lk * d);
    unsigned state = 12345;
    float *q = ab_random_floats(nq, &state), *k = ab_random_floats(nk, &state), *v = ab_random_floats(nk, &state);
    float *out[2] = {malloc(nq * sizeof(float)), malloc(nq * sizeof(float))};
    if (!q || !k || !v || !out[0] || !out[1]) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    mha_attention_args a;
    memset(&a, 0, sizeof a);
    a.batch = B;
    a.num_heads = H;
    a.num_kv_heads = G;
    a.len_q = Lq;
    a.len_k = Lk;
    a.head_dim_qk = a.head_dim_v = d;
    a.q = q;
    a.k = k;
    a.v = v;
    a.out = out[0];
    strides(layout, H, Lq, d, a.q_stride);
    strides(layout, H, Lq, d, a.out_stride);
    strides(layout, G, Lk, d, a.k_stride);
    strides(layout, G, Lk, d, a.v_stride);
    a.mask.causal = causal ? MHA_CAUSAL_BOTTOM_RIGHT : MHA_CAUSAL_NONE;
    a.num_threads = threads;
    size_t ws = 0, ws_b = 0;
    mha_status s = mha_attention_workspace_size(&a, &ws);
    if (s == MHA_OK)
        s = b_mha_attention_workspace_size(&a, &ws_b);
    if (s != MHA_OK) {
        fprintf(stderr, "%s\n", mha_status_message(s));
        return 1;
    }
    ws = ws > ws_b ? ws : ws_b;
    void *w = malloc(ws ? ws : 1);
    double ratio[AB_MAX_ROUNDS], best[2];
    side ctx = {&a, out, w, ws};
    s = ab_alternate(rounds, call, &ctx, best, ratio);
    if (s != MHA_OK) {
        fprintf(stderr, "%s\n", mha_status_message(s));
        return 1;
    }
    const double diff = ab_max_diff(out[0], out[1], nq);
    printf("%s B%lld H%lld G%lld Lq%lld Lk%lld d%lld causal%d threads%d: A best %.3f ms, B best %.3f ms, "
           "B/A median %.3f [quartiles %.3f %.3f], max |A - B| %.3g\n",
           layout ? "blhd" : "bhld", (long long)B, (long long)H, (long long)G, (long long)Lq, (long long)Lk,
           (long long)d, causal, threads, 1e3 * best[0], 1e3 * best[1], ratio[rounds / 2], ratio[rounds / 4],
           ratio[3 * rounds / 4], diff);
    const int status = ab_status(diff);
    free(w);
    free(q);
    free(k);
    free(v);
    free(out[0]);
    free(out[1]);
    return status;
}
