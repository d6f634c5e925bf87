/*
 * The thread count of a call: the caller's, or a default bounded by the machine
 * and shared among the calls running at the same time.
 *
 * Concurrency: OpenMP gives every application thread its own team, so 4 server
 * threads each asking for all of 2 cores ran 8 busy threads and doubled the
 * median latency (measured in mha.h's threads section). The default therefore
 * divides the processors among the calls in flight, counted in one atomic: a
 * hint for the thread count only (results do not depend on it), and the only
 * mutable global besides the one-time ISA choice.
 */
#include <omp.h>
#include <stdatomic.h>

#include "internal.h"

static atomic_int calls_in_flight;

int mha_threads(int requested)
{
    if (requested > 0)
        return requested;
    /* OMP_NUM_THREADS may be anything (100000 made libgomp abort): the default
     * never exceeds the processors this process may run on, nor the limit. */
    int n = omp_get_max_threads(), procs = omp_get_num_procs();
    if (n > procs)
        n = procs;
    if (n > MHA_MAX_THREADS)
        n = MHA_MAX_THREADS;
    return n > 0 ? n : 1;
}

int mha_threads_enter(int requested)
{
    int others = atomic_fetch_add_explicit(&calls_in_flight, 1, memory_order_relaxed);
    int n = mha_threads(requested);
    if (requested > 0)
        return n;
    /* Inside a caller's active parallel region its team has the cores already. */
    if (omp_get_active_level() > 0)
        return 1;
    n /= others + 1;
    return n > 0 ? n : 1;
}

void mha_threads_leave(void)
{
    atomic_fetch_sub_explicit(&calls_in_flight, 1, memory_order_relaxed);
}
