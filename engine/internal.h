/* Engine-internal declarations: argument checks, the model, the drivers. */
#ifndef MHA_INTERNAL_H
#define MHA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "mha.h"

/* ------------------------------------------------------------ checked math */

static inline bool mha_mul(int64_t a, int64_t b, int64_t *r)
{
    return !__builtin_mul_overflow(a, b, r);
}

static inline bool mha_add(int64_t a, int64_t b, int64_t *r)
{
    return !__builtin_add_overflow(a, b, r);
}

/* a*b*c (all >= 0) into *r; false on overflow. */
static inline bool mha_mul3(int64_t a, int64_t b, int64_t c, int64_t *r)
{
    int64_t t;
    return mha_mul(a, b, &t) && mha_mul(t, c, r);
}

/* Largest byte size of a tensor, dense copy or workspace (mha.h), and the element
 * count of such a float array. Far below INT64_MAX and SIZE_MAX, so that sums of a
 * few of them and their padding never overflow. */
#define MHA_MAX_BYTES MHA_MAX_TENSOR_BYTES
#define MHA_MAX_ELEMS ((int64_t)(MHA_MAX_BYTES / (int64_t)sizeof(float)))

/* -------------------------------------------------------------- validation */

/* Resolves every default of *in into *out and checks the result. */
mha_status mha_config_resolve(const mha_config *in, mha_config *out);
/* Checks that the weights fit the resolved config. */
mha_status mha_weights_check(const mha_config *cfg, const mha_weights *w);

/* Shape of one attention problem, as the mask checks and drivers see it. */
typedef struct mha_shape {
    int64_t batch, heads, kv_heads, len_q, len_k, dk, dv;
} mha_shape;

mha_status mha_mask_check(const mha_mask *mask, const mha_shape *s);
/* Extent in elements of a strided tensor [n0, n1, n2, inner] (last dim contiguous),
 * i.e. the largest offset + 1; false on negative stride or overflow. */
bool mha_strided_extent(const int64_t stride[3], int64_t n0, int64_t n1, int64_t n2,
                        int64_t inner, int64_t *extent);
/* True when no two elements of the strided tensor share an address. */
bool mha_strided_disjoint(const int64_t stride[3], int64_t n0, int64_t n1, int64_t n2,
                          int64_t inner);
/* True when the byte ranges [a, a+an) and [b, b+bn) overlap. */
bool mha_ranges_overlap(const void *a, size_t an, const void *b, size_t bn);
/* True when [p, p+bytes) overlaps any part of the mask. */
bool mha_mask_overlaps(const mha_mask *m, const mha_shape *s, const void *p, size_t bytes);
/* Byte extent of a mask tensor (0 if absent). */
size_t mha_mask_bytes(const mha_mask_tensor *t, size_t elem, const mha_shape *s);

/* Checks of a forward call against a resolved config, workspace aside; sets the
 * key length (Lq for self-attention). */
mha_status mha_forward_check(const mha_config *c, const mha_forward_args *a, int64_t *len_k);

mha_status mha_attention_check(const mha_attention_args *a, mha_shape *shape, float *scale);
/* The same checks of a shape alone (dimensions, threads, mask kinds, sizes). */
mha_status mha_attention_shape_check(const mha_attention_shape *a, mha_shape *shape);

/* ------------------------------------------------------------------ model */

/* One projection packed for the GEMM microkernel: W [n, k] as ceil(n/nr) panels. */
typedef struct mha_packed {
    float *panels; /* ceil(n / nr) * k * nr floats (W_q's include the softmax scale) */
    float *bias;   /* [n] or NULL */
    int64_t n, k;
} mha_packed;

/* Packs W [n, k] (row stride ld) and copies its bias (or NULL), both multiplied by
 * scale; on MHA_ERR_NO_MEMORY the caller still frees p. */
mha_status mha_pack_weight(const mha_kernels *kern, const float *w, int64_t ld, const float *bias,
                           int64_t n, int64_t k, float scale, mha_packed *p);
void mha_packed_free(mha_packed *p);

struct mha_model {
    mha_config cfg; /* resolved */
    const mha_kernels *kern;
    mha_packed q, k, v, o; /* o.panels is NULL without an output projection */
};

/* ----------------------------------------------------------------- drivers */

/* One GEMM of the projection driver: C[m, n] = A[m, k] W^T + bias. */
typedef struct mha_gemm_job {
    const float *a;
    int64_t lda;
    const mha_packed *w;
    float *c;
    int64_t ldc;
    int64_t m;
} mha_gemm_job;

/* Floats of one thread's A-packing buffer for a GEMM of `rows` rows over k
 * (64-byte multiple; monotone in rows). */
size_t mha_gemm_pack_floats(const mha_kernels *kern, int64_t rows, int64_t k);
/* Runs up to 4 jobs in one parallel region, tasks of all of them shared out.
 * pack: threads buffers of the largest mha_gemm_pack_floats(m, k) over the jobs,
 * back to back (64-byte aligned). */
void mha_gemm_run(const mha_kernels *kern, const mha_gemm_job *jobs, int njobs, int threads,
                  float *pack);

/* The flash attention driver (engine/flash.c) on validated arguments. */
typedef struct mha_attn_problem {
    mha_shape s;
    float scale;
    const float *q; int64_t q_stride[3];
    const float *k; int64_t k_stride[3];
    const float *v; int64_t v_stride[3];
    float *out;     int64_t out_stride[3]; /* [B, H, Lq, d_v] */
    const mha_mask *mask;
} mha_attn_problem;

/* Scratch bytes of mha_attention_run for this shape: what the path it takes needs
 * (decoding packs nothing); false if the size overflows. */
bool mha_attention_scratch_bytes(const mha_kernels *kern, const mha_shape *s, int threads, size_t *bytes);
/* Scratch bytes that serve every call of this or a smaller shape (each dimension
 * no larger) on at most `threads` threads, whichever path it takes. */
bool mha_attention_scratch_bound(const mha_kernels *kern, const mha_shape *s, int threads, size_t *bytes);
void mha_attention_run(const mha_kernels *kern, const mha_attn_problem *p, void *scratch,
                       int threads);

/* One online-softmax step of a score row (engine/online_softmax.c): srow (nk
 * scores, the first vis visible, the rest hidden) becomes P, the running max *m
 * and sum *l are updated and the output row o (d_v) rescaled when the max grows. */
void mha_softmax_step(const mha_kernels *kern, float *srow, int64_t vis, int64_t nk, float *m, float *l,
                      float *o, int64_t dv);

/* dst = o / l, or zeros for a row that may attend to nothing (l == 0). */
void mha_finish_row(const float *o, float l, int64_t dv, float *dst);

/* Decoding (engine/decode_keys.c): one task's keys [k0, k1) of one sequence for
 * kv heads [g0, g0 + span) and every query row (h, i) of their heads, h in
 * [g*per_group, (g+1)*per_group), i < len_q; the rows of one kv head at most
 * MHA_DECODE_TASK_ROWS, a span at most MHA_DECODE_SPAN heads (mha_decode_span).
 * Keys in chunks of MHA_DECODE_CHUNK, one task each, merged by log-sum-exp: a
 * fixed size keeps the arithmetic independent of the thread count. */
#define MHA_DECODE_CHUNK 1024
#define MHA_DECODE_TASK_ROWS 256
#define MHA_DECODE_SPAN 16

/* Where keys lie: the run of n' <= n keys from key j of kv head g (K rows at *k,
 * stride *ldk; V rows at *v, stride *ldv), n' the same for every head. */
typedef int64_t (*mha_kv_rows_fn)(const void *src, int64_t g, int64_t j, int64_t n, const float **k,
                                  const float **v, int64_t *ldk, int64_t *ldv);
/* Masks beyond key_end on scores s of keys [j0, j0 + n) of row (h, i); returns how
 * many come before a causal cut (n without one). */
typedef int64_t (*mha_row_mask_fn)(const void *ctx, int64_t h, int64_t i, int64_t j0, float *s, int64_t n);

typedef struct mha_decode_job {
    int64_t g0, per_group, len_q, dk, dv;
    const float *q;           /* row (h, i) at q + h*q_head + i*q_row, unscaled */
    int64_t q_head, q_row;
    float scale;
    const int64_t *key_end;   /* [len_q]: row i sees keys below key_end[i] */
    float *states;            /* (m, l, O) of row (h, i) at states + (h*len_q + i)*state_stride */
    int64_t state_stride;
    mha_kv_rows_fn rows;
    const void *src;
    mha_row_mask_fn mask;     /* NULL: every key below key_end visible */
    const void *mask_ctx;
} mha_decode_job;

/* Kv heads per task for rows_per_head query rows per kv head. */
int64_t mha_decode_span(int64_t kv_heads, int64_t rows_per_head);
/* Per-thread scratch floats of a task (no more for a smaller span or fewer rows). */
size_t mha_decode_scratch_floats(int64_t span, int64_t rows_per_head, int64_t dk);
/* Leaves each row's (m, l, O) state of keys [k0, k1) (-inf, 0, 0 if it sees none). */
void mha_decode_keys(const mha_kernels *kern, const mha_decode_job *job, int64_t span, int64_t k0,
                     int64_t k1, float *scratch);

/* L2 bytes per core (detected once, with a default): sizes the attention tiles. */
size_t mha_cache_l2_bytes(void);
/* L1 data bytes per core (detected once, with a default): sizes the GEMM's k blocks. */
size_t mha_cache_l1d_bytes(void);
/* True on an Intel x86 core (cpuid vendor GenuineIntel, detected once). */
bool mha_cpu_intel(void);

/* True when num_threads is 0..MHA_MAX_THREADS. */
static inline bool mha_threads_valid(int requested)
{
    return requested >= 0 && requested <= MHA_MAX_THREADS;
}
/* Threads a call may run on (engine/threads.c): the request, or the default for 0.
 * Size queries and workspace checks use it, so their answers never depend on
 * other calls. */
int mha_threads(int requested);
/* The threads a call starting now runs on: at most mha_threads(requested); the
 * default shares the processors among the calls in flight. Pair with
 * mha_threads_leave when the call's work is done. */
int mha_threads_enter(int requested);
void mha_threads_leave(void);
/* The thread count for `work` independent tasks: at most `threads`, at least 1. */
static inline int mha_threads_for(int threads, int64_t work)
{
    return work < threads ? (work > 1 ? (int)work : 1) : threads;
}

/* Workspace carving: 64-byte aligned slices. */
#define MHA_ALIGN 64
static inline size_t mha_round_up(size_t n) { return (n + MHA_ALIGN - 1) & ~(size_t)(MHA_ALIGN - 1); }

#endif /* MHA_INTERNAL_H */
