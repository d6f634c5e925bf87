/*
 * The serving planner: from a ragged batch's lengths, the cache layout and the
 * thread count, the list of work items and the workspace layout, written into
 * the caller's storage. Items depend on the lengths only (never on threads), so
 * every row's arithmetic, and therefore every result bit, is fixed by the batch.
 *   prefill (more than SERVE_DECODE_ROWS new rows): blocks of bq rows, each over
 *     every key its last row sees, last blocks first (under the causal mask they
 *     are the longest, so they start early);
 *   decode: key chunks of SERVE_CHUNK, each leaving an (m, l, O) state per row
 *     and head, merged afterwards in chunk order;
 *   a prefill of several query blocks has its keys packed once per kv head into
 *     the workspace before the blocks run (each block would otherwise pack every
 *     key it sees again: about 8x the keys for a 1024-token prompt).
 * Every item runs once per kv head, for all the query heads of that group.
 */
#include <string.h>

#include "serve.h"

#define PLAN_MAGIC 0x6d68617365727665ull /* "mhaserve" */

static int64_t round_to(int64_t n, int64_t m)
{
    return (n + m - 1) / m * m;
}

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static bool is_decode(const mha_shape *d, int64_t q_len)
{
    return q_len <= SERVE_DECODE_ROWS && d->heads / d->kv_heads * q_len <= SERVE_GROUP_ROWS;
}

static bool is_packed_once(const mha_serve_plan *p, int64_t q_len)
{
    return !is_decode(&p->dims, q_len) && q_len > p->bq;
}

/* Dimensions from the model or the arguments. */
static mha_status plan_dims(const mha_serve_plan_args *a, mha_serve_plan *p)
{
    memset(p, 0, sizeof *p);
    p->model = a->model;
    if (a->model) {
        const mha_config *c = &a->model->cfg;
        p->dims = (mha_shape){0, c->num_heads, c->num_kv_heads, 0, 0, c->head_dim_qk, c->head_dim_v};
        p->embed_dim = c->embed_dim;
        p->kdim = c->kdim;
        p->vdim = c->vdim;
        p->out_dim = c->out_dim;
        p->ncat = c->num_heads * c->head_dim_v;
        return MHA_OK;
    }
    p->dims = (mha_shape){0, a->num_heads, a->num_kv_heads ? a->num_kv_heads : a->num_heads, 0, 0,
                          a->head_dim_qk, a->head_dim_v};
    if (a->num_heads <= 0 || a->num_kv_heads < 0 || a->head_dim_qk <= 0 || a->head_dim_v <= 0)
        return MHA_ERR_BAD_SIZE;
    if (a->num_heads % p->dims.kv_heads != 0)
        return MHA_ERR_HEADS;
    /* Bound the per-row sizes before anything multiplies them. */
    if (a->num_heads > ((int64_t)1 << 20) || a->head_dim_qk > ((int64_t)1 << 20) ||
        a->head_dim_v > ((int64_t)1 << 20))
        return MHA_ERR_OVERFLOW;
    return MHA_OK;
}

/* Fills the plan header (sizes, counts, workspace layout) without the arrays. */
static mha_status plan_layout(const mha_serve_plan_args *a, mha_serve_plan *p)
{
    if (!a || !a->batch || !a->cache)
        return MHA_ERR_NULL_POINTER;
    if (!mha_threads_valid(a->num_threads))
        return MHA_ERR_THREADS;
    mha_status st = plan_dims(a, p);
    if (st == MHA_OK)
        st = serve_check_lengths(a->batch, a->cache, a->model != NULL);
    if (st != MHA_OK)
        return st;
    const mha_batch *b = a->batch;
    const mha_kv_cache *c = a->cache;
    const mha_kernels *kern = mha_kernels_active();
    const mha_shape *d = &p->dims;
    const int64_t pg = d->heads / d->kv_heads, nr = (int64_t)kern->gemm_nr, n = b->num_seqs;
    p->magic = PLAN_MAGIC;
    p->layout = c->layout;
    p->block_size = c->layout == MHA_KV_PAGED ? c->block_size : 0;
    p->slots = c->layout == MHA_KV_PAGED ? c->num_blocks * c->block_size : c->num_seqs * c->max_len;
    p->num_seqs = n;
    p->total_rows = b->q_start[n];
    p->non_causal = b->non_causal != 0;
    p->requested = a->num_threads;
    p->threads = mha_threads(a->num_threads);
    p->bq = pg * 64 <= SERVE_GROUP_ROWS ? 64 : (SERVE_GROUP_ROWS / pg > 0 ? SERVE_GROUP_ROWS / pg : 1);
    p->state_floats = (size_t)round_to(d->dv + 2, 16);

    const int64_t ldo = round_to(d->dv, nr), dmax = d->dk > d->dv ? d->dk : d->dv;
    p->pack_k_floats = round_to(SERVE_BK, nr) * d->dk;
    p->pack_v_floats = SERVE_BK * ldo;
    int64_t states = 0, pre_rows = 0, fpack = 0, x;
    bool ok = true, any_prefill = false;
    double pairs = 0.0;
    for (int64_t s = 0; s < n; s++) {
        int64_t ql = b->q_start[s + 1] - b->q_start[s], kl = b->kv_len[s];
        if (is_decode(d, ql)) {
            int64_t chunks = (kl + SERVE_CHUNK - 1) / SERVE_CHUNK;
            p->n_items += chunks;
            p->n_merges++;
            ok = ok && mha_mul3(d->heads, ql, chunks, &x) && mha_add(states, x, &states);
        } else {
            p->n_items += (ql + p->bq - 1) / p->bq;
            any_prefill = true;
            pre_rows = pg * p->bq;
            if (is_packed_once(p, ql)) {
                p->n_packs++;
                ok = ok && mha_mul3(d->kv_heads, (kl + SERVE_BK - 1) / SERVE_BK,
                                    p->pack_k_floats + p->pack_v_floats, &x) &&
                     mha_add(fpack, x, &fpack);
            }
        }
        pairs += (double)ql * (double)kl;
    }
    /* A small batch runs on fewer threads: waking a thread costs more than a few
     * microseconds of work saves (on a loaded machine, a scheduler time slice).
     * Results do not depend on it. */
    double work = pairs * 2.0 * (double)(d->heads * (d->dk + d->dv));
    if (a->model)
        work += 2.0 * (double)p->total_rows *
                ((double)p->embed_dim * (double)(d->heads * d->dk + d->kv_heads * (d->dk + d->dv)) +
                 (double)p->ncat * (double)p->out_dim);
    if (work < (double)p->threads * SERVE_WORK_PER_THREAD)
        p->threads = work < SERVE_WORK_PER_THREAD ? 1 : (int)(work / SERVE_WORK_PER_THREAD);
    /* Per thread: decode what engine/decode_keys.c needs for any row count;
     * prefill the packed K and V block, scores, and every head's O, m, l, Q. */
    int64_t dec = 0;
    for (int64_t ql = 1; ql <= SERVE_DECODE_ROWS && is_decode(d, ql); ql++) {
        int64_t f = (int64_t)mha_decode_scratch_floats(mha_decode_span(d->kv_heads, pg * ql), pg * ql, d->dk);
        dec = f > dec ? f : dec;
    }
    int64_t pre = 0;
    if (any_prefill)
        pre = round_to(SERVE_BK, nr) * d->dk + SERVE_BK * ldo + SERVE_BK * dmax +
              p->bq * SERVE_BK + pre_rows * (ldo + 2 + d->dk) + 16 * 8;
    p->thread_floats = (size_t)round_to(dec > pre ? dec : pre, 16);
    if (a->model) {
        /* The projections (layer step, append) and the output projection pack
         * their A rows into the thread slices, free while they run. */
        const mha_config *mc = &a->model->cfg;
        const int64_t ks[4] = {mc->embed_dim, mc->kdim, mc->vdim, p->ncat};
        for (int i = 0; i < 4; i++) {
            size_t f = mha_gemm_pack_floats(kern, p->total_rows, ks[i]);
            if (f > p->thread_floats)
                p->thread_floats = f;
        }
    }

    /* Workspace: projections (with a model), append bitmap, states, threads.
     * Every slice in floats, checked, then laid out. */
    const int64_t T = p->total_rows;
    int64_t fq = 0, fk = 0, fv = 0, fcat = 0, fbits = 0, fstates = 0, fthreads = 0;
    if (a->model) {
        ok = ok && mha_mul3(T, d->heads, d->dk, &fq) && mha_mul3(T, d->kv_heads, d->dk, &fk) &&
             mha_mul3(T, d->kv_heads, d->dv, &fv) && mha_mul(T, p->ncat, &fcat);
        if (!a->model->o.panels)
            fcat = 0;
        fbits = (p->slots + 31) / 32; /* one bit per slot, in floats' worth of bytes */
    }
    ok = ok && mha_mul(states, (int64_t)p->state_floats, &fstates) &&
         mha_mul(p->threads, (int64_t)p->thread_floats, &fthreads);
    int64_t all = 0;
    const int64_t parts[7] = {fq, fk, fv, fcat, fbits, fpack, ok ? fstates : 0};
    for (int i = 0; i < 7; i++)
        ok = ok && mha_add(all, parts[i] + 16, &all);
    ok = ok && mha_add(all, fthreads, &all) && all <= MHA_MAX_ELEMS;
    if (!ok)
        return MHA_ERR_OVERFLOW;
    size_t off = 0, *slot[6] = {&p->ws_q, &p->ws_k, &p->ws_v, &p->ws_cat, &p->ws_bits, &p->ws_pack};
    for (int i = 0; i < 6; i++) {
        *slot[i] = off;
        off += mha_round_up((size_t)parts[i] * sizeof(float));
    }
    p->ws_states = off;
    off += mha_round_up((size_t)fstates * sizeof(float));
    p->ws_threads = off;
    off += (size_t)fthreads * sizeof(float);
    p->ws_total = off + MHA_ALIGN;

    p->off_q_start = align8(sizeof *p);
    p->off_kv_len = p->off_q_start + align8((size_t)(n + 1) * sizeof(int32_t));
    p->off_items = p->off_kv_len + align8((size_t)n * sizeof(int32_t));
    p->off_merges = p->off_items + align8((size_t)p->n_items * sizeof(serve_item));
    p->off_packs = p->off_merges + align8((size_t)p->n_merges * sizeof(serve_merge));
    p->bytes = p->off_packs + (size_t)p->n_packs * sizeof(serve_pack);
    return MHA_OK;
}

mha_status mha_serve_plan_size(const mha_serve_plan_args *args, size_t *plan_bytes,
                               size_t *workspace_bytes)
{
    mha_serve_plan p;
    if (!plan_bytes || !workspace_bytes)
        return MHA_ERR_NULL_POINTER;
    mha_status st = plan_layout(args, &p);
    if (st != MHA_OK)
        return st;
    *plan_bytes = p.bytes + MHA_ALIGN;
    *workspace_bytes = p.ws_total;
    return MHA_OK;
}

/* The items, merges and packs, prefills first. */
static void plan_items_fill(const mha_batch *b, mha_serve_plan *p)
{
    serve_item *it = (serve_item *)((char *)p + p->off_items);
    serve_merge *mg = (serve_merge *)((char *)p + p->off_merges);
    serve_pack *pk = (serve_pack *)((char *)p + p->off_packs);
    int64_t state = 0, pack_off = 0;
    int32_t merge = 0;
    for (int64_t s = 0; s < p->num_seqs; s++) {
        int32_t ql = b->q_start[s + 1] - b->q_start[s], kl = b->kv_len[s];
        if (is_decode(&p->dims, ql))
            continue;
        if (is_packed_once(p, ql)) {
            *pk = (serve_pack){(int32_t)s, (kl + SERVE_BK - 1) / SERVE_BK, pack_off};
            pack_off += p->dims.kv_heads * pk->blocks * (p->pack_k_floats + p->pack_v_floats);
            pk++;
        }
        int32_t blocks = (int32_t)((ql + p->bq - 1) / p->bq);
        for (int32_t k = blocks - 1; k >= 0; k--) {
            int32_t r0 = k * (int32_t)p->bq, rows = ql - r0 < p->bq ? ql - r0 : (int32_t)p->bq;
            int32_t end = p->non_causal ? kl : kl - ql + r0 + rows;
            *it++ = (serve_item){(int32_t)s, r0, rows, -1, 0, end, -1};
        }
    }
    for (int64_t s = 0; s < p->num_seqs; s++) {
        int32_t ql = b->q_start[s + 1] - b->q_start[s], kl = b->kv_len[s];
        if (!is_decode(&p->dims, ql))
            continue;
        int32_t chunks = (kl + SERVE_CHUNK - 1) / SERVE_CHUNK;
        for (int32_t c = 0; c < chunks; c++) {
            int32_t k1 = (c + 1) * SERVE_CHUNK < kl ? (c + 1) * SERVE_CHUNK : kl;
            *it++ = (serve_item){(int32_t)s, 0, ql, c, c * SERVE_CHUNK, k1, merge};
        }
        *mg++ = (serve_merge){(int32_t)s, chunks, state};
        merge++;
        state += p->dims.heads * ql * chunks;
    }
}

mha_status mha_serve_plan_create(const mha_serve_plan_args *args, void *storage,
                                 size_t storage_bytes, mha_serve_plan **plan)
{
    mha_serve_plan h;
    if (!storage || !plan)
        return MHA_ERR_NULL_POINTER;
    mha_status st = plan_layout(args, &h);
    if (st != MHA_OK)
        return st;
    if (storage_bytes < h.bytes + MHA_ALIGN)
        return MHA_ERR_WORKSPACE;
    if (mha_ranges_overlap(storage, storage_bytes, args->batch->q_start,
                           (size_t)(h.num_seqs + 1) * sizeof(int32_t)) ||
        mha_ranges_overlap(storage, storage_bytes, args->batch->kv_len,
                           (size_t)h.num_seqs * sizeof(int32_t)))
        return MHA_ERR_ALIAS;
    mha_serve_plan *p = (mha_serve_plan *)serve_align(storage);
    *p = h;
    memcpy((char *)p + p->off_q_start, args->batch->q_start, (size_t)(h.num_seqs + 1) * sizeof(int32_t));
    memcpy((char *)p + p->off_kv_len, args->batch->kv_len, (size_t)h.num_seqs * sizeof(int32_t));
    plan_items_fill(args->batch, p);
    *plan = p;
    return MHA_OK;
}
