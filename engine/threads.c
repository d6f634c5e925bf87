/* The thread count of a call: the caller's, or a default bounded by the machine. */
#include <omp.h>

#include "internal.h"

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
