/*
 * mha: multi-head attention on the CPU.
 *
 * Conventions used throughout this header
 * ---------------------------------------
 * - Tensors are float32, row-major (C order); shapes are written outermost first.
 * - Batch comes first: query is [B, Lq, E]. This is nn.MultiheadAttention with
 *   batch_first=True (PyTorch's default there is [L, B, E]; transpose before calling).
 * - Weights use PyTorch's layouts: an nn.Linear weight is [out_features, in_features]
 *   and computes y = x W^T + b.
 * - Notation: B batch, Lq query length, Lk key/value length, E query input width,
 *   kdim / vdim key / value source widths, H query heads, G key/value heads
 *   (G divides H; query head h reads key/value head h / (H / G)), d_k head dim of
 *   Q and K, d_v head dim of V, O output width.
 * - Every function validates every argument and returns a status. On any status
 *   other than MHA_OK nothing the caller owns has been written.
 * - A model is immutable after creation and may be used by many threads at once.
 *   Each concurrent call needs its own workspace. Calls never allocate memory,
 *   except mha_model_create and the mha_reference_* oracles.
 *
 * Math (per batch b and query head h, with g = h / (H / G)):
 *   Q = X W_q^T + b_q, K = C_k W_k^T + b_k, V = C_v W_v^T + b_v
 *   (C_k = C_v = X for self-attention),
 *   S = scale * Q_h K_g^T + additive mask, with masked-out pairs set to -inf,
 *   O_h = softmax_rows(S) V_g,  out = concat_h(O_h) W_o^T + b_o.
 * Differences from PyTorch, on purpose:
 *   - A query row that may attend to no key (every score -inf) gives a zero row
 *     of O_h, before the output projection; PyTorch gives NaN there.
 *   - Causal masking is bottom-right aligned by default (row i sees keys
 *     j <= i + Lk - Lq), which is what decoding with a key/value cache needs.
 *     torch.nn.functional.scaled_dot_product_attention(is_causal=True) is
 *     top-left aligned (j <= i); the two agree when Lq == Lk, and
 *     MHA_CAUSAL_EXPLICIT with offset 0 gives PyTorch's behaviour.
 *   - Boolean masks follow scaled_dot_product_attention: nonzero = may attend.
 *     nn.MultiheadAttention's boolean attn_mask and key_padding_mask mean the
 *     opposite (True = masked out); invert them when porting.
 *   - add_bias_kv, add_zero_attn and dropout of nn.MultiheadAttention are not
 *     supported (the forward pass is inference only).
 * NaN in any input propagates to the outputs it reaches; it is never hidden. (A NaN
 * in V at a key that a row may not see can still reach that row when the key
 * shares a key block with visible ones, since 0 * NaN is NaN.)
 * Results do not depend on the thread count: every output element is computed
 * by the same operations in the same order whatever num_threads is.
 */
#ifndef MHA_H
#define MHA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MHA_BUILDING_LIBRARY) && defined(__GNUC__)
#define MHA_API __attribute__((visibility("default")))
#else
#define MHA_API
#endif

/* ---------------------------------------------------------------- status */

typedef enum mha_status {
    MHA_OK = 0,
    MHA_ERR_NULL_POINTER,      /* a required pointer is NULL */
    MHA_ERR_BAD_SIZE,          /* a size or count is zero or negative */
    MHA_ERR_HEADS,             /* a width is not divisible by the heads, or G does not divide H */
    MHA_ERR_OVERFLOW,          /* a size product overflows int64, or a tensor, dense copy or
                                  workspace would exceed MHA_MAX_TENSOR_BYTES */
    MHA_ERR_MASK,              /* mask strides, causal kind or key lengths do not fit the shape */
    MHA_ERR_STRIDE,            /* a stride is negative, or two elements of an output share an
                                  address (inputs may overlap and broadcast) */
    MHA_ERR_SCALE,             /* the softmax scale is NaN or infinite */
    MHA_ERR_THREADS,           /* num_threads is negative or above MHA_MAX_THREADS */
    MHA_ERR_WEIGHTS,           /* weights missing or inconsistent with the config, or has_bias /
                                  has_out_proj not 0 or 1 */
    MHA_ERR_WORKSPACE,         /* the workspace is NULL or smaller than its size query said */
    MHA_ERR_ALIAS,             /* the output overlaps an input */
    MHA_ERR_NO_MEMORY,         /* allocation failed (creation only) */
    MHA_ERR_ISA                /* the model was created under another ISA than the active one */
} mha_status;

/* A static, human-readable sentence for a status (never NULL). */
MHA_API const char *mha_status_message(mha_status status);

/* Sizes are checked before overlaps: a call whose tensors are too large gets
 * MHA_ERR_OVERFLOW, never MHA_ERR_ALIAS for the huge ranges they would span.
 * No tensor (by the extent its strides span), dense copy or workspace may exceed
 * this many bytes: 2^47, the user address space of x86-64 and of aarch64 with
 * 48-bit addresses; larger shapes give MHA_ERR_OVERFLOW. */
#define MHA_MAX_TENSOR_BYTES ((int64_t)1 << 47)

/* -------------------------------------------------------------- version */

/*
 * This header's version; mha_version() / mha_version_number() return the
 * library's, so a program can detect that it runs against another library than it
 * was compiled with: mha_version_number() != MHA_VERSION_NUMBER.
 * ABI rule. Before 1.0, any release may change the layout of the public structs;
 * such a release bumps MINOR, and the shared library's soname is libmha.so.0.MINOR,
 * so a binary never loads a library whose structs differ from its header's. From
 * 1.0 on, structs change only with a new MAJOR (soname libmha.so.MAJOR).
 * Zero-initialize every argument struct (designated initializers, or memset):
 * fields added later start at their documented 0 default, which keeps the old
 * behaviour. Every struct of this header follows that rule: the zero value of
 * each field is a valid default.
 */
#define MHA_VERSION_MAJOR 0
#define MHA_VERSION_MINOR 2
#define MHA_VERSION_PATCH 0
#define MHA_VERSION_NUMBER (MHA_VERSION_MAJOR * 10000 + MHA_VERSION_MINOR * 100 + MHA_VERSION_PATCH)

MHA_API const char *mha_version(void);     /* "0.2.0": the library's MAJOR.MINOR.PATCH */
MHA_API int mha_version_number(void);      /* MAJOR * 10000 + MINOR * 100 + PATCH */

/* ------------------------------------------------------------ threads */

/*
 * Every call takes num_threads: 1..MHA_MAX_THREADS runs on that many OpenMP
 * threads at most (never more than the call has independent tasks); 0 picks a
 * default; anything else is MHA_ERR_THREADS, from the entries and the size queries
 * alike. Results do not depend on the thread count.
 */
#define MHA_MAX_THREADS 256

/* ---------------------------------------------------------- CPU dispatch */

typedef enum mha_isa {
    MHA_ISA_SCALAR = 0, /* portable C, every CPU */
    MHA_ISA_AVX2 = 1,   /* x86-64 AVX2 + FMA */
    MHA_ISA_AVX512 = 2, /* x86-64 AVX-512 F/BW/VL */
    MHA_ISA_NEON = 3    /* aarch64 Advanced SIMD */
} mha_isa;

typedef struct mha_runtime_info {
    char cpu_name[64];        /* CPU brand string, or "unknown" */
    char features[128];       /* detected features, space separated ("avx2 fma avx512f ...") */
    mha_isa best_isa;         /* the best ISA this CPU and this build support */
    mha_isa active_isa;       /* the ISA every call runs on */
    int forced;               /* 1 when MHA_ISA chose active_isa */
    char choice[160];         /* how active_isa was chosen, in one sentence */
    size_t l1d_bytes;         /* L1 data cache per core, as used for tiling */
    size_t l2_bytes;          /* L2 cache per core, as used for tiling */
} mha_runtime_info;

/*
 * The ISA is chosen once, at the first call that needs it, from the CPU's
 * features (x86-64: cpuid + xgetbv, the OS must have enabled the YMM/ZMM state;
 * aarch64: getauxval). The environment variable MHA_ISA=scalar|avx2|avx512|neon
 * (any letter case) may lower the level. A value the CPU or this build cannot run, or an unknown
 * value, is ignored: the best ISA is used and `choice` says why. The choice never
 * changes afterwards.
 */
MHA_API mha_isa mha_active_isa(void);
MHA_API const char *mha_isa_name(mha_isa isa); /* "scalar", "avx2", ...; "unknown" if out of range */
MHA_API void mha_get_runtime_info(mha_runtime_info *info);

/* ------------------------------------------------------------------ masks */

typedef enum mha_causal {
    MHA_CAUSAL_NONE = 0,
    MHA_CAUSAL_BOTTOM_RIGHT = 1, /* row i sees keys j <= i + (Lk - Lq) */
    MHA_CAUSAL_EXPLICIT = 2      /* row i sees keys j <= i + causal_offset (offset may be negative) */
} mha_causal;

/*
 * A mask tensor of logical shape [B|1, H|1, Lq|1, Lk]: element (b, h, i, j) is at
 * data[b*stride_b + h*stride_h + i*stride_q + j]. A stride of 0 broadcasts that
 * dimension; keys are contiguous. A nonzero stride must not make rows or blocks
 * overlap (stride_q >= Lk, stride_h >= the extent of one head's rows, stride_b >=
 * the extent of one batch's heads); otherwise MHA_ERR_MASK.
 * For a dense [B, H, Lq, Lk] mask: stride_q = Lk, stride_h = Lq*Lk, stride_b = H*Lq*Lk.
 * PyTorch's shapes map onto it as follows (stride 0 where PyTorch broadcasts):
 *   attn_mask [Lq, Lk]            stride_b = 0,       stride_h = 0,     stride_q = Lk
 *   attn_mask [B*H, Lq, Lk]       (nn.MultiheadAttention's 3-D mask, index b*H + h)
 *                                 stride_b = H*Lq*Lk, stride_h = Lq*Lk, stride_q = Lk
 *   attn_mask [B, H, Lq, Lk]      as the dense case above
 *   key padding [B, 1, 1, Lk]     (key_padding_mask [B, Lk] broadcast over heads and
 *                                 rows) stride_b = Lk, stride_h = 0, stride_q = 0;
 *                                 a padding mask that only cuts a tail is cheaper as
 *                                 key_lengths.
 * Remember to invert nn.MultiheadAttention's boolean masks (True = masked out there).
 */
typedef struct mha_mask_tensor {
    const void *data; /* const uint8_t * (boolean) or const float * (additive); NULL = absent */
    int64_t stride_b, stride_h, stride_q;
} mha_mask_tensor;

/* All parts are optional and combine (a pair is attended only if every part allows it).
 * A zero-initialized mha_mask means "no mask". */
typedef struct mha_mask {
    mha_causal causal;
    int64_t causal_offset;         /* used with MHA_CAUSAL_EXPLICIT only */
    const int32_t *key_lengths;    /* [B] or NULL: batch b attends keys j < key_lengths[b]; each in [0, Lk] */
    mha_mask_tensor bool_mask;     /* uint8 elements, nonzero = may attend */
    mha_mask_tensor float_mask;    /* float elements added to the scaled scores; -inf masks out */
} mha_mask;

/* ----------------------------------------------------------------- model */

/*
 * Model configuration. Start from mha_config_default(E, H), which gives
 * nn.MultiheadAttention(E, H)'s defaults, then change what differs.
 * A field left 0 takes the default written beside it.
 */
typedef struct mha_config {
    int64_t embed_dim;    /* E: width of the query input (required) */
    int64_t num_heads;    /* H (required) */
    int64_t num_kv_heads; /* G: 0 = H. G must divide H (G = 1 is multi-query attention) */
    int64_t kdim;         /* key source width: 0 = E */
    int64_t vdim;         /* value source width: 0 = E */
    int64_t head_dim_qk;  /* d_k: 0 = E / H (then H must divide E) */
    int64_t head_dim_v;   /* d_v: 0 = E / H (then H must divide E) */
    int64_t out_dim;      /* O: width of the output projection, 0 = E; ignored without one */
    int has_bias;         /* 1: Q/K/V (and output) projections add biases; 0 or 1, else
                             MHA_ERR_WEIGHTS */
    int has_out_proj;     /* 1: multiply by W_o; 0: the output is concat_h(O_h), width H*d_v;
                             0 or 1, else MHA_ERR_WEIGHTS */
    float scale;          /* softmax scale: 0 = 1/sqrt(d_k); must be finite */
} mha_config;

MHA_API mha_config mha_config_default(int64_t embed_dim, int64_t num_heads);

/*
 * Weights, in PyTorch's layouts. Give either the fused in-projection or the three
 * separate ones, not both.
 *   Fused (nn.MultiheadAttention when kdim == vdim == E):
 *     in_proj_weight [H*d_k + G*d_k + G*d_v, E]  (rows: W_q, then W_k, then W_v;
 *                                                with the defaults this is [3E, E])
 *     in_proj_bias   [H*d_k + G*d_k + G*d_v]     (when has_bias)
 *   Separate (q_proj_weight, k_proj_weight, v_proj_weight, or three nn.Linear):
 *     q_weight [H*d_k, E], k_weight [G*d_k, kdim], v_weight [G*d_v, vdim]
 *     q_bias [H*d_k], k_bias [G*d_k], v_bias [G*d_v]  (when has_bias)
 *   Output projection (when has_out_proj): out_weight [O, H*d_v], out_bias [O] (when has_bias).
 * Bias pointers must be NULL when has_bias is 0, weights of an absent projection NULL.
 */
typedef struct mha_weights {
    const float *in_proj_weight, *in_proj_bias;
    const float *q_weight, *q_bias;
    const float *k_weight, *k_bias;
    const float *v_weight, *v_bias;
    const float *out_weight, *out_bias;
} mha_weights;

typedef struct mha_model mha_model;

/* Copies what it needs, packed for the active ISA's kernels (the ISA is chosen once
 * per process and never changes, so a model always matches it): the caller may
 * free its arrays afterwards. */
MHA_API mha_status mha_model_create(const mha_config *config, const mha_weights *weights,
                                    mha_model **model);
MHA_API void mha_model_destroy(mha_model *model); /* NULL is a no-op */

/* The effective configuration, every default resolved; out_dim is the width of the
 * forward's output (H*d_v without an output projection). */
MHA_API mha_status mha_model_config(const mha_model *model, mha_config *config);

/* --------------------------------------------------------------- forward */

typedef struct mha_forward_args {
    int64_t batch;      /* B */
    int64_t len_q;      /* Lq */
    int64_t len_k;      /* Lk: ignored for self-attention (Lk = Lq) */
    const float *query; /* [B, Lq, E] */
    const float *key;   /* [B, Lk, kdim], or NULL for self-attention */
    const float *value; /* [B, Lk, vdim], or NULL for self-attention (both NULL or neither) */
    mha_mask mask;      /* bool/float mask heads dimension is H */
    float *out;         /* [B, Lq, O], or [B, Lq, H*d_v] without an output projection */
    int num_threads;    /* 0..MHA_MAX_THREADS, 0 = the default (threads section) */
} mha_forward_args;

/* Bytes of workspace mha_forward needs for this shape and thread count (len_k = 0
 * or len_q: self-attention). Shapes only, so it can size workspaces at start-up: a
 * workspace sized for one shape serves any call whose batch, lengths and threads
 * are no larger (num_threads = 0 counts as its resolved default). */
MHA_API mha_status mha_forward_workspace_size(const mha_model *model, int64_t batch,
                                              int64_t len_q, int64_t len_k, int num_threads,
                                              size_t *bytes);

/* The whole forward pass. `workspace` must hold the bytes the size query gave for this
 * call's (or a larger) shape; any alignment. It must not overlap inputs, masks or
 * output (MHA_ERR_ALIAS). */
MHA_API mha_status mha_forward(const mha_model *model, const mha_forward_args *args,
                               void *workspace, size_t workspace_bytes);

/* ------------------------------------------------------ attention only */

/*
 * Like torch.nn.functional.scaled_dot_product_attention on projected tensors:
 *   q [B, H, Lq, d_k], k [B, G, Lk, d_k], v [B, G, Lk, d_v], out [B, H, Lq, d_v].
 * Each tensor is described by element strides for its first three dimensions
 * (stride[0] batch, stride[1] head, stride[2] row); the last dimension is
 * contiguous. A [B, L, H, d] buffer (heads not yet transposed) is stride
 * {L*H*d, d, H*d}; a key/value cache [B, L_max, G, d] filled up to Lk is stride
 * {L_max*G*d, d, G*d}. Strides must be >= 0; inputs may broadcast with a zero
 * stride, but no two output elements may share an address (MHA_ERR_STRIDE).
 * Up to 4 query rows (decoding) read K and V in place; longer queries pack them
 * into the workspace in rounds of a few MiB.
 */
typedef struct mha_attention_args {
    int64_t batch, num_heads, num_kv_heads; /* B, H, G (0 = H) */
    int64_t len_q, len_k, head_dim_qk, head_dim_v;
    const float *q; int64_t q_stride[3];
    const float *k; int64_t k_stride[3];
    const float *v; int64_t v_stride[3];
    float *out;     int64_t out_stride[3];
    float scale;    /* 0 = 1/sqrt(d_k) */
    mha_mask mask;
    int num_threads; /* 0..MHA_MAX_THREADS, 0 = the default (threads section) */
} mha_attention_args;

/* Bytes of workspace mha_attention needs for these arguments (all checked). */
MHA_API mha_status mha_attention_workspace_size(const mha_attention_args *args, size_t *bytes);
/* `workspace`: at least the bytes the size query gave, any alignment, overlapping
 * neither the inputs, the masks nor the output. */
MHA_API mha_status mha_attention(const mha_attention_args *args, void *workspace,
                                 size_t workspace_bytes);

/* ------------------------------------------------------------ reference */

/*
 * The float64 oracle: written straight from the formulas, sharing no code with the
 * fast paths, slow, and allocating. It reads the caller's raw weights, so it can
 * check a model without trusting it. Same argument checks and semantics as the
 * fast entries (workspace aside); num_threads is ignored.
 */
MHA_API mha_status mha_reference_forward(const mha_config *config, const mha_weights *weights,
                                         const mha_forward_args *args);
MHA_API mha_status mha_reference_attention(const mha_attention_args *args);

/* ------------------------------------------------- positional encoding */

/* table [len, dim]: P[pos, 2i] = sin(pos / 10000^(2i/dim)), P[pos, 2i+1] = cos(same
 * angle); an odd dim ends with a sine column. */
MHA_API mha_status mha_positional_encoding(int64_t len, int64_t dim, float *table);
/* x [batch, len, dim] += P, in place, computed on the fly (no table needed). */
MHA_API mha_status mha_add_positional_encoding(float *x, int64_t batch, int64_t len, int64_t dim);

#ifdef __cplusplus
}
#endif

#endif /* MHA_H */
