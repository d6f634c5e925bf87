/* MHA_ISA is matched in any letter case: run with MHA_ISA=Scalar and
 * MHA_EXPECT_ISA=scalar, the forced ISA must be the expected one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha.h"

int main(void)
{
    const char *expect = getenv("MHA_EXPECT_ISA");
    mha_runtime_info info;
    mha_get_runtime_info(&info);
    if (!expect || !info.forced || strcmp(mha_isa_name(info.active_isa), expect) != 0) {
        printf("FAIL: MHA_ISA=%s gave %s, forced %d (%s)\n", getenv("MHA_ISA"),
               mha_isa_name(info.active_isa), info.forced, info.choice);
        return 1;
    }
    printf("PASS: MHA_ISA=%s chose %s\n", getenv("MHA_ISA"), expect);
    return 0;
}
