/* Fuzzing of the .npy reader the CLI and the golden tests use: any file must load
 * consistently or be refused with a message, never crash or over-read. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("npy", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        abort();
    char path[64], err[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    npy_array a;
    if (npy_load(path, &a, err, sizeof err) == 0) {
        size_t count = 1;
        for (int i = 0; i < a.ndim; i++)
            count *= (size_t)a.shape[i];
        if (count != a.count || (count && !a.data))
            abort();
        npy_free(&a);
    } else if (!err[0]) {
        abort(); /* refused without saying why */
    }
    close(fd);
    return 0;
}
