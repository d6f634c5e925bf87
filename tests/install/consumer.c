/* A program built against the installed mha only (header, library, pkg-config or
 * CMake): a small forward pass checked against the float64 oracle. */
#include <mha.h>
#include <stdio.h>
#include <stdlib.h>

enum { B = 2, L = 5, E = 16, H = 2 };

static void fill(float *x, int n, unsigned seed)
{
    for (int i = 0; i < n; i++)
        x[i] = (float)((i * 2654435761u + seed) % 2001u) / 1000.0f - 1.0f;
}

int main(void)
{
    static float w_in[3 * E * E], b_in[3 * E], w_out[E * E], b_out[E];
    static float x[B * L * E], y[B * L * E], ref[B * L * E];
    fill(w_in, 3 * E * E, 1);
    fill(b_in, 3 * E, 2);
    fill(w_out, E * E, 3);
    fill(b_out, E, 4);
    fill(x, B * L * E, 5);

    if (mha_version_number() != MHA_VERSION_NUMBER) {
        fprintf(stderr, "header %d, library %s\n", MHA_VERSION_NUMBER, mha_version());
        return 1;
    }
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
    a.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
    if (st == MHA_OK)
        st = mha_forward(model, &a, ws, bytes);
    if (st == MHA_OK) {
        a.out = ref;
        st = mha_reference_forward(&cfg, &w, &a);
    }
    free(ws);
    mha_model_destroy(model);
    if (st != MHA_OK) {
        fprintf(stderr, "mha: %s\n", mha_status_message(st));
        return 1;
    }
    double err = 0;
    for (int i = 0; i < B * L * E; i++) {
        double d = (double)y[i] - (double)ref[i];
        d = d < 0 ? -d : d;
        err = d > err || d != d ? d : err; /* NaN fails */
    }
    printf("installed mha %s, isa %s: forward vs float64 reference, max abs err %.2g %s\n",
           mha_version(), mha_isa_name(mha_active_isa()), err, err < 1e-5 ? "PASS" : "FAIL");
    return err < 1e-5 ? 0 : 1;
}
