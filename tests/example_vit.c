/* The README's example, built against the installed-style shared library and the
 * public header only: proves the exported surface is enough to use the library. */
#include <mha.h>
#include <stdio.h>
#include <stdlib.h>

static float *random_array(size_t n, float scale, unsigned *seed)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; x && i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        x[i] = scale * ((float)(*seed >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
    return x;
}

int main(void)
{
    enum { B = 1, L = 197, E = 768, H = 12 };
    unsigned seed = 42;
    float *x = random_array((size_t)B * L * E, 1.0f, &seed);
    float *w_in = random_array((size_t)3 * E * E, 0.036f, &seed);
    float *b_in = random_array((size_t)3 * E, 0.036f, &seed);
    float *w_out = random_array((size_t)E * E, 0.036f, &seed);
    float *b_out = random_array(E, 0.036f, &seed);
    float *y = malloc((size_t)B * L * E * sizeof *y);
    float *ref = malloc((size_t)B * L * E * sizeof *ref);
    if (!x || !w_in || !b_in || !w_out || !b_out || !y || !ref)
        return 1;

    mha_config cfg = mha_config_default(E, H);
    mha_weights w = {.in_proj_weight = w_in, .in_proj_bias = b_in, .out_weight = w_out, .out_bias = b_out};
    mha_model *model;
    mha_status st = mha_model_create(&cfg, &w, &model);
    if (st != MHA_OK) {
        fprintf(stderr, "mha_model_create: %s\n", mha_status_message(st));
        return 1;
    }
    size_t bytes;
    st = mha_forward_workspace_size(model, B, L, L, 0, &bytes);
    void *ws = st == MHA_OK ? malloc(bytes) : NULL;
    mha_forward_args a = {.batch = B, .len_q = L, .query = x, .out = y};
    st = mha_forward(model, &a, ws, bytes);
    if (st != MHA_OK) {
        fprintf(stderr, "mha_forward: %s\n", mha_status_message(st));
        return 1;
    }
    a.out = ref;
    st = mha_reference_forward(&cfg, &w, &a);
    double err = 0.0, top = 0.0;
    for (size_t i = 0; i < (size_t)B * L * E; i++) {
        double d = y[i] > ref[i] ? y[i] - ref[i] : ref[i] - y[i];
        err = d > err ? d : err;
        top = ref[i] > top ? ref[i] : -ref[i] > top ? -ref[i] : top;
    }
    printf("example: ISA %s, max |y - ref| / max |ref| = %.3g\n", mha_isa_name(mha_active_isa()), err / top);
    free(ws);
    mha_model_destroy(model);
    free(x); free(w_in); free(b_in); free(w_out); free(b_out); free(y); free(ref);
    return st == MHA_OK && err / top < 1e-4 ? 0 : 1;
}
