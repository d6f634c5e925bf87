/*
 * One program, two builds of the library: mha_forward of build A and of build B
 * (its public symbols renamed b_* by link_two.sh), each with its own model made
 * from the same weights (nn.MultiheadAttention(E, H)'s layout, fused in-projection,
 * biases, output projection), on the same input, called alternately, 150 ms each,
 * for `rounds` rounds. Prints the median of the per-round time ratios B/A with the
 * quartiles, and the largest difference between the two outputs.
 *
 * usage: ab_forward B L E H causal threads rounds   (self-attention; causal 1: bottom-right, = top-left here)
 * With AB_EXPECT_SAME=1 in the environment, exits 1 unless the outputs are equal.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab_common.h"
#include "mha.h"

mha_status b_mha_model_create(const mha_config *config, const mha_weights *weights, mha_model **model);
void b_mha_model_destroy(mha_model *model);
mha_status b_mha_forward_workspace_size(const mha_model *model, int64_t batch, int64_t len_q, int64_t len_k,
                                        int num_threads, size_t *bytes);
mha_status b_mha_forward(const mha_model *model, const mha_forward_args *args, void *workspace,
                         size_t workspace_bytes);

static int fail(mha_status s)
{
    fprintf(stderr, "%s\n", mha_status_message(s));
    return 1;
}

/* What each side's call needs: its model, the arguments (out set per side),
 * outputs, workspace. */
typedef struct side {
    mha_model **m;
    mha_forward_args *a;
    float **out;
    void *work;
    size_t bytes;
} side;

static int call(int which, void *ctx)
{
    side *c = ctx;
    c->a->out = c->out[which];
    return which ? b_mha_forward(c->m[1], c->a, c->work, c->bytes) : mha_forward(c->m[0], c->a, c->work, c->bytes);
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: %s B L E H causal threads rounds\n", argv[0]);
        return 2;
    }
    const int64_t B = atoll(argv[1]), L = atoll(argv[2]), E = atoll(argv[3]), H = atoll(argv[4]);
    const int causal = atoi(argv[5]), threads = atoi(argv[6]), rounds = atoi(argv[7]);
    if (rounds < 1 || rounds > AB_MAX_ROUNDS || B < 1 || L < 1 || E < 1 || H < 1) {
        fprintf(stderr, "B, L, E, H >= 1; rounds: 1..%d\n", AB_MAX_ROUNDS);
        return 2;
    }
    unsigned state = 12345;
    const size_t nx = (size_t)(B * L * E);
    float *w_in = ab_random_floats((size_t)(3 * E * E), &state), *b_in = ab_random_floats((size_t)(3 * E), &state);
    float *w_out = ab_random_floats((size_t)(E * E), &state), *b_out = ab_random_floats((size_t)E, &state);
    float *x = ab_random_floats(nx, &state);
    float *out[2] = {malloc(nx * sizeof(float)), malloc(nx * sizeof(float))};
    if (!w_in || !b_in || !w_out || !b_out || !x || !out[0] || !out[1]) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    /* Weights of the scale nn.Linear's init gives (U(-1/sqrt(E), 1/sqrt(E))). */
    const float ws = 1.0f / sqrtf((float)E);
    for (int64_t i = 0; i < 3 * E * E; i++)
        w_in[i] *= ws;
    for (int64_t i = 0; i < E * E; i++)
        w_out[i] *= ws;
    const mha_config cfg = mha_config_default(E, H);
    mha_weights w;
    memset(&w, 0, sizeof w);
    w.in_proj_weight = w_in;
    w.in_proj_bias = b_in;
    w.out_weight = w_out;
    w.out_bias = b_out;
    mha_model *m[2];
    mha_status s = mha_model_create(&cfg, &w, &m[0]);
    if (s == MHA_OK)
        s = b_mha_model_create(&cfg, &w, &m[1]);
    size_t bytes[2] = {0, 0};
    if (s == MHA_OK)
        s = mha_forward_workspace_size(m[0], B, L, 0, threads, &bytes[0]);
    if (s == MHA_OK)
        s = b_mha_forward_workspace_size(m[1], B, L, 0, threads, &bytes[1]);
    if (s != MHA_OK)
        return fail(s);
    const size_t wsb = bytes[0] > bytes[1] ? bytes[0] : bytes[1];
    void *work = malloc(wsb ? wsb : 1);
    mha_forward_args a;
    memset(&a, 0, sizeof a);
    a.batch = B;
    a.len_q = L;
    a.query = x;
    a.mask.causal = causal ? MHA_CAUSAL_BOTTOM_RIGHT : MHA_CAUSAL_NONE;
    a.num_threads = threads;
    double ratio[AB_MAX_ROUNDS], best[2];
    side ctx = {m, &a, out, work, wsb};
    s = ab_alternate(rounds, call, &ctx, best, ratio);
    if (s != MHA_OK)
        return fail(s);
    const double diff = ab_max_diff(out[0], out[1], nx);
    printf("forward B%lld L%lld E%lld H%lld causal%d threads%d: A best %.3f ms, B best %.3f ms, "
           "B/A median %.3f [quartiles %.3f %.3f], max |A - B| %.3g\n",
           (long long)B, (long long)L, (long long)E, (long long)H, causal, threads, 1e3 * best[0], 1e3 * best[1],
           ratio[rounds / 2], ratio[rounds / 4], ratio[3 * rounds / 4], diff);
    const int status = ab_status(diff);
    mha_model_destroy(m[0]);
    b_mha_model_destroy(m[1]);
    free(work);
    free(w_in);
    free(b_in);
    free(w_out);
    free(b_out);
    free(x);
    free(out[0]);
    free(out[1]);
    return status;
}
