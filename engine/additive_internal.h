/* Engine-internal declarations of the additive and concat attention modules: the
 * checks shared by the fast paths and the float64 oracles. */
#ifndef MHA_ADDITIVE_INTERNAL_H
#define MHA_ADDITIVE_INTERNAL_H

#include "internal.h"

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

#endif /* MHA_ADDITIVE_INTERNAL_H */
