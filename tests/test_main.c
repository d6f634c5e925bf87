/* Runs every suite under the ISA chosen by the environment (MHA_ISA), and proves
 * the chosen ISA is the expected one (MHA_EXPECT_ISA). Exits 77 (skip) when
 * MHA_ISA names an ISA this host cannot run. No OpenMP here: libgomp is not
 * fork-safe and Check forks each test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

START_TEST(test_active_isa_is_expected)
{
    const char *expect = getenv("MHA_EXPECT_ISA");
    mha_runtime_info info;
    mha_get_runtime_info(&info);
    ck_assert_ptr_nonnull(expect);
    ck_assert_msg(strcmp(mha_isa_name(info.active_isa), expect) == 0,
                  "active ISA %s, expected %s (%s)", mha_isa_name(info.active_isa), expect,
                  info.choice);
    ck_assert_int_eq(info.active_isa, mha_active_isa());
}
END_TEST

static Suite *suite_dispatch(void)
{
    Suite *s = suite_create("dispatch");
    TCase *tc = tcase_create("isa");
    if (getenv("MHA_EXPECT_ISA"))
        tcase_add_test(tc, test_active_isa_is_expected);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *force = getenv("MHA_ISA");
    mha_runtime_info info;
    mha_get_runtime_info(&info);
    printf("mha tests: ISA %s (%s)\n", mha_isa_name(info.active_isa), info.choice);
    if (force && *force && !info.forced) {
        printf("SKIP: MHA_ISA=%s cannot run here: %s\n", force, info.choice);
        return 77;
    }

    SRunner *sr = srunner_create(suite_dispatch());
    srunner_add_suite(sr, suite_kernels());
    srunner_add_suite(sr, suite_api());
    srunner_add_suite(sr, suite_validate());
    srunner_add_suite(sr, suite_masks());
    srunner_add_suite(sr, suite_layouts());
    srunner_add_suite(sr, suite_decode());
    srunner_add_suite(sr, suite_scenarios());
    srunner_add_suite(sr, suite_golden());
    srunner_add_suite(sr, suite_limits());
    srunner_add_suite(sr, suite_serve());
    srunner_add_suite(sr, suite_serve_layer());
    srunner_add_suite(sr, suite_serve_validate());
    srunner_add_suite(sr, suite_workspace());
    srunner_add_suite(sr, suite_additive());
    srunner_add_suite(sr, suite_additive_golden());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
