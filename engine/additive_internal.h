/* Engine-internal declarations of the additive and concat attention modules: the
 * checks shared by the fast paths and the float64 oracles. */
#ifndef MHA_ADDITIVE_INTERNAL_H
#define MHA_ADDITIVE_INTERNAL_H

#include "internal.h"

/* TODO(h9-core): mha.h defines MHA_MAX_THREADS once it lands; same value. */
#ifndef MHA_MAX_THREADS
#define MHA_MAX_THREADS 256
#endif

/* Resolves the defaults of *in into *out and checks the sizes. */
mha_status mha_additive_config_resolve(const mha_additive_config *in, mha_additive_config *out);
mha_status mha_additive_weights_check(const mha_additive_weights *w);
/* Every check of a forward call against a resolved config, workspace aside. */
mha_status mha_additive_args_check(const mha_additive_config *c, const mha_additive_args *a);
/* The mask as the shared mask checks see it: one head, Lq query rows, Lk keys. */
mha_shape mha_additive_shape(const mha_additive_args *a);

mha_status mha_concat_config_resolve(const mha_concat_config *in, mha_concat_config *out);
mha_status mha_concat_weights_check(const mha_concat_weights *w);
mha_status mha_concat_args_check(const mha_concat_config *c, const mha_concat_args *a);

/* A thread count the caller may ask for: 0 (the default) or 1..MHA_MAX_THREADS. */
static inline bool mha_threads_valid(int n)
{
    return n >= 0 && n <= MHA_MAX_THREADS;
}

#endif /* MHA_ADDITIVE_INTERNAL_H */
