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
    MHA_ERR_ISA,               /* the model was created under another ISA than the active one */
    MHA_ERR_BATCH,             /* a ragged batch's lengths are inconsistent (serving) */
    MHA_ERR_CACHE,             /* a KV cache, block table or append slots do not fit the batch */
    MHA_ERR_PLAN               /* a serving plan made for other lengths, layout or model */
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
 * The default (0) is P = min(omp_get_max_threads(), omp_get_num_procs(),
 * MHA_MAX_THREADS) for the size queries and workspace checks, so their answers
 * never depend on other calls. A call runs on fewer:
 *   - P / n (at least 1) while n calls of this library are in flight in the
 *     process (counted in one atomic, the library's only mutable global beside the
 *     ISA choice): OpenMP gives each application thread its own team, so 4 server
 *     threads each taking P = 2 cores ran 8 busy threads on 2 cores: the
 *     forward's median latency (B 1, L 128, E 256, 4 heads; a shared 2-core
 *     machine) was 0.6-1.1 ms with num_threads = 1 and 1.7-12.7 ms with 0; with
 *     the shared default, 0 gives 0.7-1.2 ms;
 *   - 1 inside the caller's own active OpenMP parallel region (its team already
 *     has the cores).
 * Servers: with as many busy application threads as cores, pass num_threads = 1
 * (each request on its own core: best throughput, and latency does not depend on
 * the others); with fewer, pass cores / busy threads, or 0 to let the default
 * divide. Set OMP_WAIT_POLICY=passive when threads outnumber cores, so that idle
 * OpenMP workers sleep instead of spinning.
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
 * are no larger (num_threads = 0 counts as its resolved default), with any masks.
 * It grows as 4*B*(Lq*H*d_k + Lk*G*(d_k + d_v)) bytes for the projected Q, K and V,
 * 4*B*Lq*H*d_v more for the concatenated heads when there is an output projection
 * (it runs after the attention, over all rows; without one the heads are written
 * to out directly), plus the attention workspace of mha_attention_workspace_bound
 * (the laws of the attention section) and one A-packing buffer per thread for the
 * projections, independent of the lengths past 512 rows. */
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
 *
 * Workspace. Decoding (Lq <= 4 and Lq*H/G <= 256) reads K and V where they lie,
 * in chunks of 1024 keys (with token-major K and V, one task reads a chunk for up
 * to 16 kv heads, in address order); longer queries pack K and V of whole (batch, kv head)
 * groups into the workspace, so their workspace grows with Lk. In bytes, with
 * x' = x rounded up to the kernels' panel width nr (8 scalar and NEON, 16 AVX2,
 * 32 AVX-512) and T the threads the call uses (at most num_threads, at most its
 * tasks):
 *   decoding:  4*B*H*Lq*ceil(Lk/1024)*(d_v' + 2)     + T*S + 64
 *              (about 2 bytes per key and batch for H = 8, Lq = 1, d_v = 64)
 *   otherwise: min(B*G*P, max(4 MiB, P))              + T*S + 64,
 *              P = 4*(Lk'*d_k + Lk*d_v'): one group's packed K and V, about
 *              4*(d_k + d_v') bytes per key (512 for d = 64)
 *   S (per-thread tiles, independent of Lk) <= 4*(33000 + 288*d_k + 64*d_v').
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

/* Bytes of workspace mha_attention needs for these arguments (all checked): what
 * the path this call takes needs, by the law above. */
MHA_API mha_status mha_attention_workspace_size(const mha_attention_args *args, size_t *bytes);

/* Mask kinds the calls sized by a shape may use (bits of mha_attention_shape.masks). */
enum {
    MHA_MASK_CAUSAL = 1,      /* mask.causal != MHA_CAUSAL_NONE */
    MHA_MASK_KEY_LENGTHS = 2, /* mask.key_lengths */
    MHA_MASK_BOOL = 4,        /* mask.bool_mask */
    MHA_MASK_FLOAT = 8,       /* mask.float_mask */
    MHA_MASK_ALL = 15
};

/* The shape of attention calls, without tensors: for sizing workspaces before any
 * buffer exists (a server's per-thread workspaces at start-up). */
typedef struct mha_attention_shape {
    int64_t batch, num_heads, num_kv_heads; /* B, H, G (0 = H) */
    int64_t len_q, len_k, head_dim_qk, head_dim_v;
    unsigned masks;  /* MHA_MASK_* bits of the mask kinds the calls may use; other bits
                        MHA_ERR_MASK. No mask needs workspace today: the answer is the
                        same for every value, which later versions keep covering. */
    int num_threads; /* the largest num_threads of the calls, 0..MHA_MAX_THREADS */
} mha_attention_shape;

/* Bytes of workspace that serve every mha_attention call whose B, Lq, Lk, d_k, d_v
 * and thread count are no larger than the shape's (same H and G), with any
 * strides and masks of the kinds given, decoding or not: the larger of the two
 * laws above, with T = the resolved num_threads. Shapes only: no tensor needed. */
MHA_API mha_status mha_attention_workspace_bound(const mha_attention_shape *shape, size_t *bytes);
/* `workspace`: at least the bytes the size query gave, any alignment, overlapping
 * neither the inputs, the masks nor the output. */
MHA_API mha_status mha_attention(const mha_attention_args *args, void *workspace,
                                 size_t workspace_bytes);

/* --------------------------------------------------- additive attention */

/*
 * The attention of seq2seq decoders, in two PyTorch forms. Same conventions as
 * above: float32, row-major, nn.Linear layouts, every argument checked, nothing
 * written on error, no allocation per call, results independent of num_threads
 * (0..MHA_MAX_THREADS, 0 = the default: threads section). Every struct is
 * zero-initialized by the caller (designated initializers); each field's 0 is its
 * documented default.
 *
 * 1. Additive (Bahdanau) attention, d2l.ai's AdditiveAttention:
 *      score[b, i, j] = w_v . tanh(W_q q[b, i] + b_q + W_k k[b, j] + b_k)
 *      weights[b, i]  = softmax_j(score[b, i] + float mask, masked pairs removed)
 *      out[b, i]      = sum_j weights[b, i, j] v[b, j]
 *    q [B, Lq, Dq], k [B, Lk, Dk], v [B, Lk, Dv]; W_q [h, Dq], W_k [h, Dk], w_v [1, h].
 *    Masks: d2l's valid_lens, 1-D ([B]: mask.key_lengths) or 2-D ([B, Lq]:
 *    row_key_lengths), and the library's causal, boolean and float masks (heads
 *    dimension 1). d2l fills masked scores with -1e6; here they are removed, which
 *    is the same wherever a row sees a key. A row that sees no key gives zeros in
 *    out and in weights (d2l would average every value).
 *    The [B, Lq, Lk, h] tensor of the textbook code never exists: W_q q and W_k k
 *    are projected once, then each tile of query rows x keys evaluates tanh over h
 *    in cache-sized chunks. There are B*Lq*Lk*h tanh evaluations.
 */
typedef struct mha_additive_config {
    int64_t query_dim;  /* Dq (required) */
    int64_t key_dim;    /* Dk: 0 = Dq */
    int64_t hidden_dim; /* h (num_hiddens): 0 = Dq */
} mha_additive_config;

/* The state dict of AdditiveAttention: W_q.weight, W_k.weight, w_v.weight. A bias is
 * optional (d2l's layers have none): NULL = absent. Only b_q + b_k matters. A bias of
 * w_v would add the same constant to every score of a row, which softmax ignores. */
typedef struct mha_additive_weights {
    const float *q_weight; /* [h, Dq] (required) */
    const float *k_weight; /* [h, Dk] (required) */
    const float *v_weight; /* [1, h] (required) */
    const float *q_bias;   /* [h] or NULL */
    const float *k_bias;   /* [h] or NULL */
} mha_additive_weights;

typedef struct mha_additive_model mha_additive_model;

/* Copies the weights, packed for the active ISA; the caller may free its arrays. */
MHA_API mha_status mha_additive_model_create(const mha_additive_config *config,
                                             const mha_additive_weights *weights,
                                             mha_additive_model **model);
MHA_API void mha_additive_model_destroy(mha_additive_model *model); /* NULL is a no-op */

typedef struct mha_additive_args {
    int64_t batch, len_q, len_k, value_dim; /* B, Lq, Lk, Dv (all required) */
    const float *query;                     /* [B, Lq, Dq] */
    const float *key;                       /* [B, Lk, Dk] */
    const float *value;                     /* [B, Lk, Dv] */
    /* mha_mask with heads = 1 (leave stride_h 0): key_lengths [B] is d2l's 1-D
     * valid_lens; causal as above; bool_mask nonzero = may attend; float_mask added
     * to the scores. */
    mha_mask mask;
    /* [B, Lq] or NULL: row (b, i) attends keys j < row_key_lengths[b*Lq + i], each in
     * [0, Lk] (d2l's 2-D valid_lens). Combines with mask.key_lengths. */
    const int32_t *row_key_lengths;
    float *out;     /* [B, Lq, Dv] */
    float *weights; /* [B, Lq, Lk] attention weights, or NULL (not written) */
    int num_threads;
} mha_additive_args;

/*
 * Workspace bytes of mha_additive_forward (any value_dim; serves every call whose
 * batch, lengths and threads are no larger). With T threads, at most
 *   4 * (B*Lq*h + B*Lk*h + min(B*Lq*Lk, max(Lk, 2^18)) + T*8256) + T*P + 256
 * where P <= 2 MiB is one thread's A block of the projection GEMM (a quarter of
 * L2). It does not grow with Lq*Lk*h: the projected queries and keys, one round of
 * score rows (1 MiB when Lk <= 2^18) and a fixed tile per thread.
 */
MHA_API mha_status mha_additive_workspace_size(const mha_additive_model *model, int64_t batch,
                                               int64_t len_q, int64_t len_k, int num_threads,
                                               size_t *bytes);
/* `workspace`: at least the bytes of the size query, any alignment, overlapping no
 * argument (MHA_ERR_ALIAS); out and weights overlap no input nor each other. */
MHA_API mha_status mha_additive_forward(const mha_additive_model *model,
                                        const mha_additive_args *args, void *workspace,
                                        size_t workspace_bytes);

/*
 * 2. Concat attention, the decoder attention of PyTorch's seq2seq tutorial:
 *      attn         = nn.Linear(Dq + Dk, L)    W_a [L, Dq + Dk], b_a [L]
 *      attn_combine = nn.Linear(Dq + Dv, O)    W_c [O, Dq + Dv], b_c [O]
 *      weights = softmax(attn(cat(q, k)))      q [B, Dq], k [B, Dk] -> [B, L]
 *      applied = weights @ V                   V [B, L, Dv] (encoder outputs) -> [B, Dv]
 *      out     = attn_combine(cat(q, applied)) [B, O]
 *    The weights come from the query and key alone, one per encoder position
 *    (L = the tutorial's max_length). The tutorial's k is the decoder's hidden state.
 */
typedef struct mha_concat_config {
    int64_t query_dim; /* Dq (required) */
    int64_t key_dim;   /* Dk: 0 = Dq */
    int64_t value_dim; /* Dv: 0 = Dq */
    int64_t max_len;   /* L (required) */
    int64_t out_dim;   /* O: 0 = Dq */
} mha_concat_config;

/* State dict names: attn.weight, attn.bias, attn_combine.weight, attn_combine.bias.
 * Biases are optional: NULL = absent (nn.Linear(bias=False)). */
typedef struct mha_concat_weights {
    const float *attn_weight;    /* [L, Dq + Dk] (required) */
    const float *attn_bias;      /* [L] or NULL */
    const float *combine_weight; /* [O, Dq + Dv] (required) */
    const float *combine_bias;   /* [O] or NULL */
} mha_concat_weights;

typedef struct mha_concat_model mha_concat_model;

MHA_API mha_status mha_concat_model_create(const mha_concat_config *config,
                                           const mha_concat_weights *weights,
                                           mha_concat_model **model);
MHA_API void mha_concat_model_destroy(mha_concat_model *model); /* NULL is a no-op */

typedef struct mha_concat_args {
    int64_t batch;      /* B (required) */
    const float *query; /* [B, Dq] */
    const float *key;   /* [B, Dk] */
    const float *value; /* [B, L, Dv] */
    float *out;         /* [B, O] */
    float *weights;     /* [B, L], or NULL (not written) */
    int num_threads;
} mha_concat_args;

/* Workspace bytes: at most 4 * B * (Dq + Dk + L + Dq + Dv) + T*P + 256 for T threads
 * (the two concatenated inputs, the scores, and P <= 2 MiB per thread for the
 * GEMMs' A blocks). */
MHA_API mha_status mha_concat_workspace_size(const mha_concat_model *model, int64_t batch,
                                             int num_threads, size_t *bytes);
MHA_API mha_status mha_concat_forward(const mha_concat_model *model, const mha_concat_args *args,
                                      void *workspace, size_t workspace_bytes);

/* The float64 oracles of both modules (as mha_reference_forward below: straight from
 * the formulas, raw weights, same checks, allocating, num_threads ignored). */
MHA_API mha_status mha_reference_additive(const mha_additive_config *config,
                                          const mha_additive_weights *weights,
                                          const mha_additive_args *args);
MHA_API mha_status mha_reference_concat(const mha_concat_config *config,
                                        const mha_concat_weights *weights,
                                        const mha_concat_args *args);

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

/* -------------------------------------------------------------- serving */

/*
 * One attention layer of a decoding server: a ragged batch of sequences, each
 * with its own key/value cache length, prefills (many new rows) and decodes (one
 * or a few) mixed in one call, against caches the caller owns.
 *   plan    mha_serve_plan_create: from the batch's lengths, the cache layout and
 *           the thread count only (no tensor pointers), into caller storage;
 *           decides the work split and the workspace size. Never allocates.
 *   append  mha_kv_append: K, V of the new tokens through the model's W_k, W_v
 *           (+ biases), stored in their cache slots.
 *   run     mha_serve_layer: x [T, E] -> Q -> append -> attention of every row
 *           over its own sequence's cache -> output projection -> out [T, O];
 *           mha_serve_attention: attention only, on Q projected by the caller,
 *           with an optional log-sum-exp output; mha_lse_merge: two partial
 *           results (e.g. a shared prefix and the rest) merged by their LSEs.
 * None of them allocates. Bad input: status, nothing written (no output, no
 * cache slot); the workspace's content is unspecified after any call.
 * Results do not depend on the thread count (bitwise), as everywhere.
 * Zero is a valid default for every field of the structs below (designated
 * initializers: fields added later start at their 0 default).
 */

/* Element type of a tensor (bf16 and f16 caches come next). */
typedef enum mha_dtype { MHA_DTYPE_F32 = 0 } mha_dtype;

typedef enum mha_kv_layout {
    /* k [num_seqs, max_len, G, d_k], v [num_seqs, max_len, G, d_v], token-major;
     * each sequence owns one row (mha_batch.cache_seq). */
    MHA_KV_CONTIGUOUS = 0,
    /* Pools of blocks: k [num_blocks, G, block_size, d_k], v [num_blocks, G,
     * block_size, d_v], dense (head-major inside a block, so a block's keys of one
     * head are contiguous). Key j of a sequence is in slot j % block_size of its
     * block table's entry j / block_size. */
    MHA_KV_PAGED = 1
} mha_kv_layout;

/* The caller's key/value storage for one layer. */
typedef struct mha_kv_cache {
    mha_kv_layout layout;
    mha_dtype dtype;       /* of k and v; only MHA_DTYPE_F32 for now */
    int64_t num_kv_heads;  /* G: must be the model's (or the plan's) */
    int64_t head_dim_qk;   /* d_k: likewise */
    int64_t head_dim_v;    /* d_v: likewise */
    void *k, *v;           /* storage (only read by mha_serve_attention) */
    /* MHA_KV_CONTIGUOUS */
    int64_t num_seqs;      /* rows of the cache */
    int64_t max_len;       /* L_max: tokens per row */
    /* Element strides of (row, head, token), the head dim contiguous; a 0 takes
     * the dense value {max_len*G*d, d, G*d}. Rows, heads and tokens must not
     * overlap (MHA_ERR_STRIDE). */
    int64_t k_stride[3], v_stride[3];
    /* MHA_KV_PAGED */
    int64_t num_blocks;    /* blocks in each pool */
    int64_t block_size;    /* tokens per block: a positive multiple of 16 */
} mha_kv_cache;

/*
 * A ragged batch: n sequences whose new rows are packed one after the other in
 * [T, ...] tensors (T = q_start[n]).
 *   q_len[s] = q_start[s+1] - q_start[s] >= 1 new rows (a prefill: many; a
 *   decode: 1 to a few), kv_len[s] keys in the cache after this step, the new
 *   ones included: the new rows are the sequence's positions kv_len - q_len ..
 *   kv_len - 1, so q_len <= kv_len.
 *   Causal, bottom-right aligned per sequence: row i of s (0 <= i < q_len) sees
 *   keys j <= kv_len[s] - q_len[s] + i of its own sequence, never another's.
 * Where the keys are: MHA_KV_CONTIGUOUS, in cache row cache_seq[s] (NULL: row s;
 * two sequences may read one row, none may append to the same slots); MHA_KV_PAGED,
 * in the blocks listed by row s of the block table, either
 *   [n, max_blocks] with a row stride (block_start NULL), or
 *   CSR: row s is block_table[block_start[s] .. block_start[s+1]) (block_start
 *   [n+1], nondecreasing).
 * Only the first ceil(kv_len[s] / block_size) entries of a row are read; each must
 * be in [0, num_blocks) and the row must have that many (MHA_ERR_CACHE). Blocks may
 * be shared by sequences (a common prefix) and listed in any order.
 */
typedef struct mha_batch {
    int64_t num_seqs;             /* n >= 1 */
    const int32_t *q_start;       /* [n + 1]: q_start[0] = 0, increasing */
    const int32_t *kv_len;        /* [n] */
    /* 1: no causal mask, every row of s sees all kv_len[s] keys, and q_len may
     * exceed kv_len (attention only: a shared prefix's part, to be merged). */
    int non_causal;
    const int32_t *cache_seq;     /* contiguous: [n] or NULL */
    const int32_t *block_table;   /* paged */
    int64_t max_blocks;           /* paged, 2-D table: entries per row */
    int64_t block_table_stride;   /* paged, 2-D table: elements between rows; 0 = max_blocks */
    const int32_t *block_start;   /* paged, CSR: [n + 1], or NULL for the 2-D table */
} mha_batch;

typedef struct mha_serve_plan mha_serve_plan; /* lives in the caller's storage */

typedef struct mha_serve_plan_args {
    /* The model for mha_kv_append and mha_serve_layer (G, d_k, d_v, E, O from it,
     * and a workspace that holds the projections); NULL: attention only, with the
     * dimensions below. */
    const mha_model *model;
    int64_t num_heads, num_kv_heads, head_dim_qk, head_dim_v; /* H, G (0 = H), d_k, d_v */
    const mha_batch *batch;       /* read: num_seqs, q_start, kv_len, non_causal */
    const mha_kv_cache *cache;    /* read: layout, block_size, num_blocks, num_seqs, max_len */
    /* 0 = the default (threads section): the workspace is sized for all of it, and
     * each append/layer/attention call shares it with the calls then in flight;
     * results do not depend on it */
    int num_threads;
} mha_serve_plan_args;

/* Bytes of plan storage and of workspace for these lengths. */
MHA_API mha_status mha_serve_plan_size(const mha_serve_plan_args *args, size_t *plan_bytes,
                                       size_t *workspace_bytes);
/* Builds the plan in `storage` (at least plan_bytes, any alignment; *plan points
 * into it). A plan serves any call whose batch has exactly these lengths (checked:
 * MHA_ERR_PLAN otherwise) and whose cache has this layout; it can be reused and
 * shared by threads (it is only read). The work split: prefill rows in blocks of
 * up to 64 rows of one kv head's query heads, reading each key block once for
 * all of them (a prefill of several blocks packs its keys once for all blocks,
 * into the workspace: 4 * (d_k + d_v rounded up to the microkernel's 8-32) bytes
 * per key and kv head, keys rounded up to 256); decodes (up to 4 rows) in key chunks of 1024 merged by LSE, the
 * heads of a kv group sharing each K/V read and up to 16 kv heads reading a chunk
 * together in address order, so one long decode fills the cores.
 * It depends on the lengths only, never on the thread count. A batch too small to
 * pay for waking threads (under about 2 MFLOP per thread) runs on fewer than
 * num_threads (the results are the same bits). */
MHA_API mha_status mha_serve_plan_create(const mha_serve_plan_args *args, void *storage,
                                         size_t storage_bytes, mha_serve_plan **plan);

/* New tokens' keys and values through the model: K = key_src W_k^T + b_k,
 * V = value_src W_v^T + b_v, row t stored in its slot. */
typedef struct mha_kv_append_args {
    const float *key_src;    /* [T, kdim] */
    const float *value_src;  /* [T, vdim] (may be key_src) */
    /* [T] or NULL. NULL: row i of sequence s goes to position kv_len[s] - q_len[s]
     * + i of s (the end of its sequence). Otherwise explicit slots, as vLLM's slot
     * mapping: paged block * block_size + offset, contiguous row * max_len +
     * position; each in range. No two rows may share a slot (MHA_ERR_CACHE). */
    const int64_t *slots;
} mha_kv_append_args;

MHA_API mha_status mha_kv_append(const mha_model *model, const mha_serve_plan *plan,
                                 const mha_batch *batch, const mha_kv_cache *cache,
                                 const mha_kv_append_args *args, void *workspace,
                                 size_t workspace_bytes);

typedef struct mha_serve_layer_args {
    const float *x; /* [T, E]: the new tokens (self-attention: a model with kdim or vdim
                     * other than E gets MHA_ERR_NULL_POINTER, as mha_forward without
                     * key/value; use mha_kv_append + mha_serve_attention) */
    float *out;     /* [T, O], or [T, H*d_v] without an output projection */
} mha_serve_layer_args;

/* The layer step: append (NULL slots) then attention then the output projection.
 * Row t of out equals mha_forward on the sequence's whole history with
 * MHA_CAUSAL_BOTTOM_RIGHT, at that row's position. */
MHA_API mha_status mha_serve_layer(const mha_model *model, const mha_serve_plan *plan,
                                   const mha_batch *batch, const mha_kv_cache *cache,
                                   const mha_serve_layer_args *args, void *workspace,
                                   size_t workspace_bytes);

typedef struct mha_serve_attention_args {
    const float *q;         /* [T, H, d_k], already projected */
    int64_t q_stride[2];    /* elements between rows, between heads; 0 = dense {H*d_k, d_k} */
    float *out;             /* [T, H, d_v] */
    int64_t out_stride[2];  /* 0 = dense {H*d_v, d_v}; no two elements may share an address */
    /* [T, H] or NULL: lse[t*H + h] = ln sum_j exp(scale * q.k_j) over the keys the
     * row sees (NaN where a NaN reached the row). */
    float *lse;
    float scale;            /* 0 = 1/sqrt(d_k); must be finite */
} mha_serve_attention_args;

/* Attention of every row over its own sequence's cache (keys already there). The
 * plan must be one made without a model or with one; its H, G, d_k, d_v apply. */
MHA_API mha_status mha_serve_attention(const mha_serve_plan *plan, const mha_batch *batch,
                                       const mha_kv_cache *cache,
                                       const mha_serve_attention_args *args, void *workspace,
                                       size_t workspace_bytes);

/*
 * Merges two attention results over disjoint key sets A and B of the same rows:
 * out = (e^(lse_a - m) out_a + e^(lse_b - m) out_b) / (e^(lse_a - m) + e^(lse_b - m)),
 * m = max(lse_a, lse_b), and lse = m + ln(e^(lse_a - m) + e^(lse_b - m)): the result
 * of attending over A and B together. lse = -inf is an empty part (its out is
 * ignored); both empty give zeros and -inf. out_* [rows, H, d], lse_* [rows, H],
 * dense. out (and lse_out, which may be NULL) may be exactly an input, otherwise
 * must not overlap one.
 */
MHA_API mha_status mha_lse_merge(int64_t rows, int64_t num_heads, int64_t head_dim,
                                 const float *out_a, const float *lse_a, const float *out_b,
                                 const float *lse_b, float *out, float *lse_out);

/* The float64 oracle of mha_serve_attention (same checks; allocates; ignores the
 * work split): each row over its own sequence's keys, straight from the formula. */
MHA_API mha_status mha_reference_serve_attention(const mha_serve_plan *plan, const mha_batch *batch,
                                                 const mha_kv_cache *cache,
                                                 const mha_serve_attention_args *args);

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
