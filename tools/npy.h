/* A small reader and writer of NumPy .npy files (format versions 1-3, C order,
 * little-endian), enough for the CLI and the golden-vector tests. */
#ifndef MHA_TOOLS_NPY_H
#define MHA_TOOLS_NPY_H

#include <stddef.h>
#include <stdint.h>

typedef enum npy_dtype {
    NPY_F32,  /* '<f4' */
    NPY_F64,  /* '<f8' */
    NPY_BOOL, /* '|b1' */
    NPY_U8,   /* '|u1' */
    NPY_I32,  /* '<i4' */
    NPY_I64   /* '<i8' */
} npy_dtype;

#define NPY_MAX_DIMS 8

typedef struct npy_array {
    npy_dtype dtype;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    size_t count; /* product of the shape (1 for a 0-d array) */
    void *data;   /* count elements of dtype, malloc'd */
} npy_array;

/* Loads a whole file. Returns 0, or -1 with a sentence naming the file in err. */
int npy_load(const char *path, npy_array *out, char *err, size_t err_len);
/* Writes a float32 array to a temporary file beside path, then renames it to path:
 * path is either the complete new file or untouched (and no temporary file is left
 * behind). Returns 0, or -1 with a sentence in err. */
int npy_save_f32(const char *path, const float *data, int ndim, const int64_t *shape, char *err,
                 size_t err_len);
void npy_free(npy_array *a);
const char *npy_dtype_name(npy_dtype t);

#endif
