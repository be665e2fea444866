/* CUnit runner: registers one suite per tests/test_<module>.c and runs them all, or only the
 * suite named on the command line (`cin-tests video`). */
#include <CUnit/Basic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "util.h"

#define SUITE(name) int name##_register(void);
#include "suites.h"
#undef SUITE

/* A test that hangs (a child that never exits, a lost wakeup) ends the run with status 124
 * after CIN_TESTS_TIMEOUT seconds (default 1800, some ten times a sanitizer run) rather than
 * holding CI until its own limit. */
static void time_limit_reached(int sig)
{
    (void)sig;
    tu_kill_children(); /* the servers and cin-runs a test started go too */
    static const char msg[] = "\ncin-tests: time limit reached (CIN_TESTS_TIMEOUT): a test hangs\n";
    ssize_t said = write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(said < 0 ? 125 : 124);
}

static void bound_the_run(void)
{
    const char *env = getenv("CIN_TESTS_TIMEOUT");
    long secs = env ? strtol(env, NULL, 10) : 1800;
    signal(SIGALRM, time_limit_reached);
    alarm(secs > 0 ? (unsigned)secs : 1800);
}

int main(int argc, char **argv)
{
    bound_the_run();
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
