#include "mha.h"

const char *mha_status_message(mha_status status)
{
    switch (status) {
    case MHA_OK: return "success";
    case MHA_ERR_NULL_POINTER: return "a required pointer is NULL";
    case MHA_ERR_BAD_SIZE: return "a size or count is zero or negative";
    case MHA_ERR_HEADS:
        return "a width is not divisible by the number of heads, or num_kv_heads does not divide num_heads";
    case MHA_ERR_OVERFLOW:
        return "a tensor size overflows, or a tensor, copy or workspace would exceed 2^47 bytes";
    case MHA_ERR_MASK:
        return "the mask does not fit the shape: causal kind, key lengths outside [0, Lk], "
               "or mask strides negative or overlapping";
    case MHA_ERR_STRIDE: return "a tensor stride is negative, or makes output elements overlap";
    case MHA_ERR_SCALE: return "the softmax scale is NaN or infinite";
    case MHA_ERR_THREADS: return "num_threads is negative or above MHA_MAX_THREADS (256)";
    case MHA_ERR_WEIGHTS:
        return "weights missing or inconsistent with the config: give either in_proj_weight or "
               "q/k/v weights, biases exactly when has_bias, out_weight exactly when has_out_proj; "
               "has_bias and has_out_proj are 0 or 1";
    case MHA_ERR_WORKSPACE: return "the workspace is NULL or smaller than its size query";
    case MHA_ERR_ALIAS: return "the output overlaps an input or the workspace";
    case MHA_ERR_NO_MEMORY: return "out of memory";
    case MHA_ERR_ISA: return "the model was created under another ISA than the active one";
    case MHA_ERR_BATCH:
        return "the ragged batch is inconsistent: q_start must start at 0 and increase, kv_len >= 1 "
               "and >= each sequence's new rows (unless non_causal), within the cache's max_len";
    case MHA_ERR_CACHE:
        return "the KV cache does not fit the batch: dtype, layout, heads or dims differ, block size "
               "not a multiple of 16, block id or cache row out of range, block table shorter than "
               "kv_len, or two appended rows share a slot";
    case MHA_ERR_PLAN:
        return "the serving plan was made for other lengths, cache layout, model or dimensions "
               "(or the storage is not a plan)";
    }
    return "unknown status";
}
