/* The library's own version, compiled in from the header it was built with. */
#include "mha.h"

#define MHA_STR_(x) #x
#define MHA_STR(x) MHA_STR_(x)

const char *mha_version(void)
{
    return MHA_STR(MHA_VERSION_MAJOR) "." MHA_STR(MHA_VERSION_MINOR) "." MHA_STR(MHA_VERSION_PATCH);
}

int mha_version_number(void)
{
    return MHA_VERSION_NUMBER;
}
