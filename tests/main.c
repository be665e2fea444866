/* CUnit runner: registers one suite per tests/test_<module>.c and runs them all, or only the
 * suite named on the command line (`cin-tests video`). */
#include <CUnit/Basic.h>
#include <stdio.h>

#define SUITE(name) int name##_register(void);
#include "suites.h"
#undef SUITE

int main(int argc, char **argv)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
#define SUITE(name)                                                                   \
    if (name##_register() != 0) {                                                     \
        fprintf(stderr, "cannot register suite %s\n", #name);                         \
        CU_cleanup_registry();                                                        \
        return 2;                                                                     \
    }
#include "suites.h"
#undef SUITE
    CU_basic_set_mode(CU_BRM_NORMAL);
    CU_pSuite only = argc > 1 ? CU_get_suite(argv[1]) : NULL;
    if (argc > 1 && !only) {
        fprintf(stderr, "no suite named %s\n", argv[1]);
        CU_cleanup_registry();
        return 2;
    }
    if (only)
        CU_basic_run_suite(only);
    else
        CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    return (failed || ran == 0) ? 1 : 0;
}
