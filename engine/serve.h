/* Serving internals: the plan kept in the caller's storage, the resolved cache
 * view, and the pieces the entries share (checks, addressing, attention tasks). */
#ifndef MHA_SERVE_H
#define MHA_SERVE_H

#include "internal.h"

/* Rows of a decode: up to this many new rows of a sequence take the direct path
 * (K and V rows read in place in key chunks, merged by LSE). */
#define SERVE_DECODE_ROWS 4
/* Keys per decode chunk: one task each, so a long decode fills the cores; a
 * fixed size keeps the arithmetic independent of the thread count. */
#define SERVE_CHUNK MHA_DECODE_CHUNK
/* Keys per block in a prefill task: packed once per kv head for all its query heads. */
#define SERVE_BK 256
/* Flops a thread must have for the plan to use it (about 20 us of work). */
#define SERVE_WORK_PER_THREAD 2e6
/* Query rows a task may hold (heads of the group x rows). */
#define SERVE_GROUP_ROWS 256

/* One unit of work, run once per kv head: rows [row0, row0 + rows) of sequence
 * seq over keys [key0, key1). chunk >= 0: chunk of a decode whose (m, l, O)
 * states are described by merge `merge`; -1: a prefill block written out directly. */
typedef struct serve_item {
    int32_t seq, row0, rows, chunk;
    int32_t key0, key1, merge;
} serve_item;

/* A prefill of several query blocks: its keys packed once for all of them, in
 * key blocks of SERVE_BK; block k of kv head g at floats off + (g*blocks + k) *
 * (serve_pack_k_floats + serve_pack_v_floats) of the workspace's pack slice, K
 * panels first, then V panels of the block's key count. */
typedef struct serve_pack {
    int32_t seq, blocks;
    int64_t off;
} serve_pack;

/* A decode sequence's chunk states: state (h, i, c) at state0 + ((h*q_len + i)*chunks + c). */
typedef struct serve_merge {
    int32_t seq, chunks;
    int64_t state0;
} serve_merge;

struct mha_serve_plan {
    uint64_t magic;
    const mha_model *model;       /* NULL: attention only */
    mha_shape dims;               /* heads, kv_heads, dk, dv (batch, lengths unused) */
    int64_t embed_dim, kdim, vdim, out_dim, ncat; /* with a model */
    mha_kv_layout layout;
    int64_t block_size, slots;    /* cache slots the append bitmap covers */
    int64_t num_seqs, total_rows;
    int non_causal;
    int requested;                /* the caller's num_threads (0: the shared default) */
    int threads;                  /* the most a run uses (workspace slices) */
    int64_t bq;                   /* prefill rows per item */
    int64_t n_items, n_merges, n_packs;
    int64_t pack_k_floats, pack_v_floats; /* one packed key block: K panels, V panels */
    size_t state_floats;          /* one (m, l, O) state: d_v + 2, rounded */
    size_t thread_floats;         /* per-thread scratch */
    /* Workspace byte offsets (from its 64-byte aligned start) and total. */
    size_t ws_q, ws_k, ws_v, ws_cat, ws_bits, ws_pack, ws_states, ws_threads, ws_total;
    /* Arrays after the header, 8-byte aligned: q_start [n+1], kv_len [n], items,
     * merges, packs. */
    size_t off_q_start, off_kv_len, off_items, off_merges, off_packs, bytes;
};

static inline const int32_t *plan_q_start(const mha_serve_plan *p)
{
    return (const int32_t *)((const char *)p + p->off_q_start);
}
static inline const int32_t *plan_kv_len(const mha_serve_plan *p)
{
    return (const int32_t *)((const char *)p + p->off_kv_len);
}
static inline const serve_item *plan_items(const mha_serve_plan *p)
{
    return (const serve_item *)((const char *)p + p->off_items);
}
static inline const serve_merge *plan_merges(const mha_serve_plan *p)
{
    return (const serve_merge *)((const char *)p + p->off_merges);
}
static inline const serve_pack *plan_packs(const mha_serve_plan *p)
{
    return (const serve_pack *)((const char *)p + p->off_packs);
}

/* The cache as the tasks read it: strides resolved. */
typedef struct serve_cache {
    mha_kv_layout layout;
    int64_t G, dk, dv;
    float *k, *v;
    int64_t ks[3], vs[3];         /* contiguous: row, head, token */
    int64_t bs, num_blocks;       /* paged */
    int64_t rows, max_len;        /* contiguous */
} serve_cache;

/* Checks (serve_check.c). Each returns MHA_OK or the status to report. */
mha_status serve_check_lengths(const mha_batch *b, const mha_kv_cache *c, bool for_model);
mha_status serve_check_plan(const mha_serve_plan *p, const mha_batch *b);
mha_status serve_check_cache(const mha_serve_plan *p, const mha_batch *b, const mha_kv_cache *c,
                             serve_cache *view);
/* Byte extents of the two pools. */
void serve_cache_bytes(const serve_cache *c, size_t *k_bytes, size_t *v_bytes);
/* q, out, lse of an attention call: strides resolved (qs, os), scale resolved. */
mha_status serve_check_attention(const mha_serve_plan *p, const mha_batch *b,
                                 const mha_serve_attention_args *a, const serve_cache *c,
                                 int64_t qs[2], int64_t os[2], float *scale);
/* What the checks of an attention call resolve. */
typedef struct serve_call {
    serve_cache c;
    int64_t qs[2], os[2];
    float scale;
} serve_call;
/* All three above, for the attention-only entry and its oracle. */
mha_status serve_check_attention_call(const mha_serve_plan *p, const mha_batch *b, const mha_kv_cache *cache,
                                      const mha_serve_attention_args *a, serve_call *k);
/* True when [p, p+n) overlaps the batch's index arrays (and the cache pools). */
bool serve_overlaps_batch(const mha_batch *b, const void *p, size_t n);
bool serve_overlaps_inputs(const mha_batch *b, const serve_cache *c, const void *p, size_t n);

/* A caller's byte range, for the overlap checks. */
typedef struct serve_range {
    const void *p;
    size_t n;
} serve_range;

/* The checks every entry with a model shares (kv_append.c): model, plan, batch,
 * cache (into *view), workspace size and its overlaps with the pools, the batch,
 * the plan and the call's tensors (r[0..n)). */
mha_status serve_check_model_call(const mha_model *model, const mha_serve_plan *p,
                                  const mha_batch *b, const mha_kv_cache *cache, serve_cache *view,
                                  void *ws, size_t ws_bytes, const serve_range *r, int n);
/* Appended slots in range and distinct (bits: the plan's bitmap), and the pools
 * overlapping nothing the append reads. */
mha_status serve_append_check(const mha_serve_plan *p, const mha_batch *b, const serve_cache *c,
                              const int64_t *slots, uint64_t *bits);
/* Stores k [T, G*d_k], v [T, G*d_v] into the rows' slots, on at most `threads`. */
void serve_append_store(const mha_serve_plan *p, const mha_batch *b, const serve_cache *c,
                        const int64_t *slots, const float *k, const float *v, int threads);

/* Addressing (serve_kv.c): the run of keys of sequence s starting at position j,
 * kv head g, at most want long and within one block: *k, *v point at key j, *ldk,
 * *ldv are the token strides; returns the run's length. */
int64_t serve_kv_run(const serve_cache *c, const mha_batch *b, int64_t s, int64_t g, int64_t j,
                     int64_t want, const float **k, const float **v, int64_t *ldk, int64_t *ldv);
/* Slot of row i of sequence s when appended at the end of its sequence. */
int64_t serve_slot_of(const serve_cache *c, const mha_batch *b, int64_t s, int64_t pos);
/* Pointers of slot for kv head g. */
void serve_slot_ptrs(const serve_cache *c, int64_t slot, int64_t g, float **k, float **v);

/* Attention of the plan's items (serve_attend.c) on at most `threads` (<= the
 * plan's): q rows [T, H, d_k] at strides qs, out [T, H, d_v] at os, lse [T, H] or
 * NULL. ws: the workspace's aligned start. */
void serve_attend(const mha_kernels *kern, const mha_serve_plan *p, const mha_batch *b,
                  const serve_cache *c, const float *q, const int64_t qs[2], float scale,
                  float *out, const int64_t os[2], float *lse, char *ws, int threads);

/* The threads a run of plan p starts on now: the plan's, fewer while other calls
 * are in flight and the caller asked for the default (engine/threads.c). Pair
 * with mha_threads_leave. */
static inline int serve_threads_enter(const mha_serve_plan *p)
{
    int n = mha_threads_enter(p->requested);
    return n < p->threads ? n : p->threads;
}

/* Aligned start of a workspace or storage buffer. */
static inline char *serve_align(void *p)
{
    return (char *)(((uintptr_t)p + MHA_ALIGN - 1) & ~(uintptr_t)(MHA_ALIGN - 1));
}

#endif /* MHA_SERVE_H */
