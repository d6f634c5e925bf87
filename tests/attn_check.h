/* Shared by the attention suites (masks, layouts, decode): strided test tensors,
 * and the checks that run a fast path and the float64 oracle on the same problem
 * and compare them. Tolerances: see test_masks.c. */
#ifndef MHA_ATTN_CHECK_H
#define MHA_ATTN_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#define TOL 2e-5
#define TOL_BIG 5e-5

enum layout {
    L_DENSE,   /* [B, H, L, d] */
    L_BLHD,    /* [B, L, H, d]: stride {L*H*d, d, H*d} */
    L_PADDED,  /* [B, H, L, d] with rows of d+3 floats and a gap after each batch */
    L_BCAST_B  /* [1, H, L, d] broadcast over batch: stride[0] = 0 */
};

typedef struct prob {
    mha_attention_args a;
    float *q, *k, *v;
} prob;

typedef struct finputs {
    float *x, *k, *v;
    mha_forward_args a;
} finputs;

const char *layout_name(int l);

void set_strides(int64_t st[3], int layout, int64_t n1, int64_t n2, int64_t d);

size_t extent_of(const int64_t st[3], int64_t n0, int64_t n1, int64_t n2, int64_t d);

float *elem(float *x, const int64_t st[3], int64_t a, int64_t b, int64_t c);

/* A strided tensor whose padding is NaN (read padding would show) and whose
 * elements are uniform in [lo, hi). */
float *strided_random(test_rng *r, const int64_t st[3], int64_t n0, int64_t n1, int64_t n2,
                      int64_t d, float lo, float hi);

/* Dense [n0, n1, n2, d] copy of a strided tensor. */
float *dense_copy(const float *x, const int64_t st[3], int64_t n0, int64_t n1, int64_t n2, int64_t d);

/* Fails with the worst element's index in [n0, n1, n2, n3] when
 * max|got - want| / max(max|want|, floor) > tol, or when NaNs differ. */
void compare(const float *got, const float *want, int64_t n0, int64_t n1, int64_t n2, int64_t n3,
             double floor, double tol, const char *what);

/* Runs mha_attention on a (any strides) and the oracle on dense copies of q, k, v;
 * compares; checks that the output's padding was not written. Returns the fast
 * output as a dense [B, H, Lq, d_v] array (caller frees); *ref_out, when not NULL,
 * gets the oracle's. */
float *check_attention(const mha_attention_args *in, double tol, const char *what, float **ref_out);

void prob_init(prob *p, uint64_t seed, int64_t B, int64_t H, int64_t G, int64_t Lq, int64_t Lk,
               int64_t dk, int64_t dv, int q_layout, int kv_layout, int out_layout);

void prob_free(prob *p);

/* 1 when every element of the dense row is exactly +0 or -0 (not NaN). */
int row_is_zero(const float *x, int64_t n);

/* Forward pass (fast and oracle) on args a (out is set here); returns the fast
 * output [B, Lq, O] (caller frees) and the oracle's through *ref_out if asked. */
float *check_forward(const fixture *f, const mha_forward_args *in, double tol, const char *what,
                     float **ref_out);

void finputs_init(finputs *in, const fixture *f, uint64_t seed, int64_t B, int64_t Lq, int64_t Lk, int self,
                  float amp);

void finputs_free(finputs *in);

#endif
