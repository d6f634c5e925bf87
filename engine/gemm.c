/*
 * Projection driver: C = A W^T + bias on weights packed at model creation, the
 * way BLIS and OpenBLAS block it. W is already in k-major panels of nr columns;
 * A is packed here, a block of mc rows x kc columns at a time, into micro-panels
 * of mr rows (kern->f32_pack_a), so the microkernel reads it contiguously
 * whatever the caller's row stride (rows 4 KiB apart alias in L1 when read in
 * place). Loop order as in BLIS, with the operands' roles as the row-major C
 * asks (the W panel is the microkernel's vector operand, A its broadcast one):
 * one micro-panel of A stays in L1 while the kernel walks across a column block
 * of W panels, whose kc-slices stay in L2 while every micro-panel of the A block
 * passes over them. C is then visited along its rows (sequential lines the
 * prefetchers follow), not down a column of tiles ldc apart; and kc, bounded by
 * the A micro-panel rather than by a W slice, can be 2-3x longer, so C is
 * revisited 2-3x less often (once per k block).
 */
#include <omp.h>

#include "internal.h"

/* k columns per block: the mr x kc micro-panel of A takes half of L1d (the W
 * slices stream through the rest from L2), a multiple of 8 within [64, 512]; k
 * is then split into equal blocks, so the sum order depends only on k and the
 * machine, never on threads, m or n. */
static int64_t block_k(const mha_kernels *kern, int64_t k)
{
    int64_t kc = (int64_t)(mha_cache_l1d_bytes() / 2 / (kern->gemm_mr * sizeof(float))) / 8 * 8;
    kc = kc < 64 ? 64 : kc > 512 ? 512 : kc;
    int64_t blocks = (k + kc - 1) / kc;
    int64_t even = blocks > 0 ? (k + blocks - 1) / blocks : 0;
    return (even + 7) / 8 * 8;
}

/* Largest row block: the packed mc x kc block of A takes half of L2 (a quarter
 * holds a column block's W slices, the rest C), a multiple of mr within [mr, 512].
 * Each row block streams all of W from L3 or memory once: with a quarter of L2,
 * twice as many passes cost 3-4% at 197x2304x768 and 2048x1024x4096 when the
 * other core also loads memory. */
static int64_t block_m_max(const mha_kernels *kern, int64_t kc)
{
    const int64_t mr = (int64_t)kern->gemm_mr;
    int64_t mc = (int64_t)(mha_cache_l2_bytes() / 2 / ((size_t)kc * sizeof(float))) / mr * mr;
    return mc < mr ? mr : mc > 512 ? 512 / mr * mr : mc;
}

/* W panels per column block: their kc-slices take a quarter of L2; at least 1. */
static int64_t block_panels(const mha_kernels *kern, int64_t kc)
{
    int64_t np = (int64_t)(mha_cache_l2_bytes() / 4 / ((size_t)kc * kern->gemm_nr * sizeof(float)));
    return np < 1 ? 1 : np;
}

static int64_t round_to(int64_t n, int64_t m)
{
    return (n + m - 1) / m * m;
}

size_t mha_gemm_pack_floats(const mha_kernels *kern, int64_t rows, int64_t k)
{
    const int64_t kc = block_k(kern, k), mc = block_m_max(kern, kc);
    int64_t m = round_to(rows < mc ? rows : mc, (int64_t)kern->gemm_mr);
    return mha_round_up((size_t)(m * kc) * sizeof(float)) / sizeof(float);
}

/* C[m, panels [panel0, panel1) of w] = A[m, k] W^T + bias (k >= 1), on one thread,
 * A packed into pack (mha_gemm_pack_floats(m, k) floats) one block at a time. */
static void gemm_block(const mha_kernels *kern, const float *a, int64_t lda, int64_t m,
                       const mha_packed *w, int64_t panel0, int64_t panel1, float *c, int64_t ldc,
                       float *pack)
{
    const int64_t mr = (int64_t)kern->gemm_mr, nr = (int64_t)kern->gemm_nr, k = w->k;
    const int64_t kc = block_k(kern, k), mc = block_m_max(kern, kc);
    /* Column blocks of equal width (the last one no narrower than needed). */
    const int64_t np_max = block_panels(kern, kc), panels = panel1 - panel0;
    const int64_t col_blocks = (panels + np_max - 1) / np_max;
    const int64_t np = col_blocks > 0 ? (panels + col_blocks - 1) / col_blocks : 0;
    for (int64_t r0 = 0; r0 < m; r0 += mc) {
        const int64_t mb = m - r0 < mc ? m - r0 : mc;
        for (int64_t p0 = 0; p0 < k; p0 += kc) {
            const int64_t kb = k - p0 < kc ? k - p0 : kc;
            kern->f32_pack_a((size_t)mb, (size_t)kb, a + r0 * lda + p0, (size_t)lda, pack);
            for (int64_t j0 = panel0; j0 < panel1; j0 += np) {
                const int64_t j1 = j0 + np < panel1 ? j0 + np : panel1;
                for (int64_t r = 0; r < mb; r += mr) {
                    const float *ap = pack + r * kb;
                    float *cr = c + (r0 + r) * ldc;
                    const size_t rows = (size_t)(mb - r < mr ? mb - r : mr);
                    for (int64_t panel = j0; panel < j1; panel++) {
                        const int64_t col = panel * nr, n = w->n - col < nr ? w->n - col : nr;
                        const float *b = w->panels + panel * k * nr + p0 * nr;
                        /* The bias goes in with the first k block, later blocks add to C. */
                        const float *bias = p0 == 0 && w->bias ? w->bias + col : NULL;
                        kern->f32_gemm_pa(rows, (size_t)n, (size_t)kb, ap, b, cr + col, (size_t)ldc,
                                          bias, p0 > 0);
                    }
                }
            }
        }
    }
}

/* How one job is cut into tasks: row blocks of mc rows x column chunks of cp
 * panels. */
typedef struct job_split {
    int64_t mc, row_blocks, cp, col_chunks;
} job_split;

/* want: tasks this job should make. Rows are split first (each task packs only
 * its own rows; blocks of at least 64 rows keep a W slice reused across 8
 * micro-panels or more), then columns (each column chunk packs its rows again). */
static job_split split_job(const mha_kernels *kern, const mha_gemm_job *job, int64_t want)
{
    job_split s;
    const int64_t mr = (int64_t)kern->gemm_mr, nr = (int64_t)kern->gemm_nr;
    const int64_t mc_max = block_m_max(kern, block_k(kern, job->w->k));
    const int64_t panels = (job->w->n + nr - 1) / nr;
    int64_t by_rows = job->m / 64 < want ? job->m / 64 : want;
    s.row_blocks = (job->m + mc_max - 1) / mc_max;
    if (by_rows > s.row_blocks)
        s.row_blocks = by_rows;
    s.mc = round_to((job->m + s.row_blocks - 1) / s.row_blocks, mr);
    s.row_blocks = (job->m + s.mc - 1) / s.mc;
    int64_t chunks = (want + s.row_blocks - 1) / s.row_blocks;
    s.col_chunks = chunks < panels ? chunks : panels;
    s.cp = (panels + s.col_chunks - 1) / s.col_chunks;
    s.col_chunks = (panels + s.cp - 1) / s.cp;
    return s;
}

void mha_gemm_run(const mha_kernels *kern, const mha_gemm_job *jobs, int njobs, int threads,
                  float *pack)
{
    job_split split[4];
    int64_t first[4] = {0}, total = 0;
    size_t stride = 0;
    /* 3 tasks per thread over all the jobs: enough for the dynamic schedule to
     * even out a thread that lost its core, few enough that A is rarely packed
     * twice; with one thread, A is packed once per block. */
    const int64_t want = threads > 1 ? (3 * (int64_t)threads + njobs - 1) / njobs : 1;
    for (int j = 0; j < njobs; j++) {
        split[j] = split_job(kern, &jobs[j], want);
        first[j] = total;
        total += split[j].row_blocks * split[j].col_chunks;
        size_t f = mha_gemm_pack_floats(kern, jobs[j].m, jobs[j].w->k);
        stride = f > stride ? f : stride;
    }
    threads = mha_threads_for(threads, total);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *mine = pack + (size_t)omp_get_thread_num() * stride;
        /* Dynamic: on a shared machine a thread that lost its core would hold up
         * the others; the result does not depend on which thread runs a task. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < total; t++) {
            int j = njobs - 1;
            while (first[j] > t)
                j--;
            const mha_gemm_job *job = &jobs[j];
            const job_split *s = &split[j];
            const int64_t rb = (t - first[j]) / s->col_chunks, cc = (t - first[j]) % s->col_chunks;
            const int64_t r0 = rb * s->mc, m = job->m - r0 < s->mc ? job->m - r0 : s->mc;
            const int64_t panels = (job->w->n + (int64_t)kern->gemm_nr - 1) / (int64_t)kern->gemm_nr;
            const int64_t p0 = cc * s->cp, p1 = p0 + s->cp < panels ? p0 + s->cp : panels;
            gemm_block(kern, job->a + r0 * job->lda, job->lda, m, job->w, p0, p1, job->c + r0 * job->ldc,
                       job->ldc, mine);
        }
    }
}
