/* Projection driver: C = A W^T + bias on weights packed at model creation. */
#include <omp.h>

#include "internal.h"

/* Rows per tile: a multiple of the microkernel's mr, small enough that a tile's
 * A rows stay in L2 while one packed panel of W is reused across them. */
static int64_t rows_per_tile(const mha_kernels *kern)
{
    int64_t mr = (int64_t)kern->gemm_mr;
    return mr * ((96 + mr - 1) / mr);
}

void mha_gemm_run(const mha_kernels *kern, const mha_gemm_job *jobs, int njobs, int threads)
{
    const int64_t mb = rows_per_tile(kern), nr = (int64_t)kern->gemm_nr, mr = (int64_t)kern->gemm_mr;
    int64_t first[4] = {0}, total = 0;
    for (int j = 0; j < njobs; j++) {
        first[j] = total;
        total += ((jobs[j].w->n + nr - 1) / nr) * ((jobs[j].m + mb - 1) / mb);
    }
    threads = mha_threads_for(threads, total);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t t = 0; t < total; t++) {
        int j = njobs - 1;
        while (first[j] > t)
            j--;
        const mha_gemm_job *job = &jobs[j];
        const mha_packed *w = job->w;
        int64_t row_blocks = (job->m + mb - 1) / mb;
        /* Panel-major order: consecutive tiles of a thread reuse one panel of W. */
        int64_t panel = (t - first[j]) / row_blocks, rb = (t - first[j]) % row_blocks;
        int64_t col = panel * nr, n = w->n - col < nr ? w->n - col : nr;
        const float *b = w->panels + panel * w->k * nr;
        const float *bias = w->bias ? w->bias + col : NULL;
        int64_t r_end = (rb + 1) * mb < job->m ? (rb + 1) * mb : job->m;
        for (int64_t r = rb * mb; r < r_end; r += mr) {
            int64_t m = r_end - r < mr ? r_end - r : mr;
            kern->f32_gemm((size_t)m, (size_t)n, (size_t)w->k, job->a + r * job->lda,
                           (size_t)job->lda, b, job->c + r * job->ldc + col, (size_t)job->ldc, bias, 0);
        }
    }
}
