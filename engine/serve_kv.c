/* Where a sequence's keys and values are: cache addressing for both layouts. */
#include "serve.h"

static const int32_t *blocks_of(const mha_batch *b, int64_t s)
{
    if (b->block_start)
        return b->block_table + b->block_start[s];
    return b->block_table + s * (b->block_table_stride ? b->block_table_stride : b->max_blocks);
}

int64_t serve_kv_run(const serve_cache *c, const mha_batch *b, int64_t s, int64_t g, int64_t j,
                     int64_t want, const float **k, const float **v, int64_t *ldk, int64_t *ldv)
{
    if (c->layout == MHA_KV_CONTIGUOUS) {
        int64_t row = b->cache_seq ? b->cache_seq[s] : s;
        *k = c->k + row * c->ks[0] + g * c->ks[1] + j * c->ks[2];
        *v = c->v + row * c->vs[0] + g * c->vs[1] + j * c->vs[2];
        *ldk = c->ks[2];
        *ldv = c->vs[2];
        return want;
    }
    int64_t blk = blocks_of(b, s)[j / c->bs], off = j % c->bs;
    *k = c->k + ((blk * c->G + g) * c->bs + off) * c->dk;
    *v = c->v + ((blk * c->G + g) * c->bs + off) * c->dv;
    *ldk = c->dk;
    *ldv = c->dv;
    return c->bs - off < want ? c->bs - off : want;
}

int64_t serve_slot_of(const serve_cache *c, const mha_batch *b, int64_t s, int64_t pos)
{
    if (c->layout == MHA_KV_CONTIGUOUS)
        return (b->cache_seq ? b->cache_seq[s] : s) * c->max_len + pos;
    return blocks_of(b, s)[pos / c->bs] * c->bs + pos % c->bs;
}

void serve_slot_ptrs(const serve_cache *c, int64_t slot, int64_t g, float **k, float **v)
{
    if (c->layout == MHA_KV_CONTIGUOUS) {
        int64_t row = slot / c->max_len, pos = slot % c->max_len;
        *k = c->k + row * c->ks[0] + g * c->ks[1] + pos * c->ks[2];
        *v = c->v + row * c->vs[0] + g * c->vs[1] + pos * c->vs[2];
        return;
    }
    int64_t blk = slot / c->bs, off = slot % c->bs;
    *k = c->k + ((blk * c->G + g) * c->bs + off) * c->dk;
    *v = c->v + ((blk * c->G + g) * c->bs + off) * c->dv;
}
