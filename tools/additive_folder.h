/* A folder of .npy files for the additive and concat attention modules (the format
 * of README.md, "Additive attention"), loaded into the library's argument structs.
 * Shared by `mha run --module` and the golden-vector tests. */
#ifndef MHA_TOOLS_ADDITIVE_FOLDER_H
#define MHA_TOOLS_ADDITIVE_FOLDER_H

#include <stddef.h>
#include <stdint.h>

#include "mha.h"
#include "npy.h"

typedef enum { MODULE_ADDITIVE, MODULE_CONCAT } additive_module;

enum {
    AF_QUERY, AF_KEY, AF_VALUE,
    /* concat */
    AF_ATTN_W, AF_ATTN_B, AF_COMBINE_W, AF_COMBINE_B,
    /* additive */
    AF_WQ, AF_WK, AF_WV, AF_BQ, AF_BK, AF_VALID_LENS, AF_BOOL_MASK,
    AF_COUNT
};

typedef struct additive_folder {
    additive_module module;
    npy_array a[AF_COUNT];
    int has[AF_COUNT];
    int32_t *valid_lens; /* int32 copy of valid_lens.npy */
    mha_additive_config acfg;
    mha_additive_weights aw;
    mha_additive_args aargs;
    mha_concat_config ccfg;
    mha_concat_weights cw;
    mha_concat_args cargs;
    /* Shapes of the outputs: out [B, Lq, Dv] or [B, O]; weights [B, Lq, Lk] or [B, L]. */
    int out_ndim, weights_ndim;
    int64_t out_shape[3], weights_shape[3];
    float *out, *weights; /* malloc'd, of those shapes */
} additive_folder;

/* Loads DIR for the module (causal: the additive module's causal mask, bottom-right)
 * and fills the argument structs with threads. 0, or -1 with a sentence in err. */
int additive_folder_load(const char *dir, additive_module module, int causal, int threads,
                         additive_folder *f, char *err, size_t err_len);
void additive_folder_free(additive_folder *f);
/* The element counts of the outputs. */
size_t additive_folder_out_count(const additive_folder *f);
size_t additive_folder_weights_count(const additive_folder *f);

#endif
