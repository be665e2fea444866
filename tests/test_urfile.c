/* Suite "urfile": the io_uring appender of the result sinks (io/urfile.h): bytes arrive whole
 * and in order across buffer switches and records longer than a buffer, the flush interval
 * puts records on disk before close, and a full disk or a closed pipe is reported. */
#include <CUnit/CUnit.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "urfile.h"
#include "util.h"

static void test_appends_arrive_whole_and_in_order(void)
{
    const char *path = tu_tmp_path("order.txt");
    urfile *f;
    CU_ASSERT_EQUAL_FATAL(urfile_open(path, 0.0, &f, NULL), 0);
    size_t cap = 3 * URFILE_BUFFER, n = 0;
    char *want = malloc(cap), line[64];
    int i = 0, bad = 0;
    while (n + sizeof line < cap) {
        int len = snprintf(line, sizeof line, "%d %.*s\n", i, i % 40, "abcdefghijklmnopqrstuvwxyz"
                           "abcdefghijklmnopqrstuvwxyz");
        memcpy(want + n, line, (size_t)len);
        n += (size_t)len;
        bad += urfile_append(f, line, (size_t)len, NULL) != 0;
        if (i++ % 100 == 0)
            bad += urfile_tick(f, i * 1e-3, NULL) != 0;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(urfile_close(f, NULL), 0);
    size_t len;
    unsigned char *got = tu_read_file(path, &len);
    CU_ASSERT_EQUAL(len, n);
    CU_ASSERT(got && memcmp(got, want, n) == 0);
    free(got);
    free(want);
}

static void test_a_record_longer_than_a_buffer_is_written_intact(void)
{
    const char *path = tu_tmp_path("long.txt");
    size_t n = 2 * URFILE_BUFFER + 13;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    urfile *f;
    CU_ASSERT_EQUAL_FATAL(urfile_open(path, 1.0, &f, NULL), 0);
    CU_ASSERT_EQUAL(urfile_append(f, "head\n", 5, NULL), 0);
    CU_ASSERT_EQUAL(urfile_append(f, big, n, NULL), 0);
    CU_ASSERT_EQUAL(urfile_flush(f, NULL), 0);
    CU_ASSERT_EQUAL(urfile_acked(f), (int64_t)(n + 5));
    CU_ASSERT_EQUAL(urfile_close(f, NULL), 0);
    size_t len;
    unsigned char *got = tu_read_file(path, &len);
    CU_ASSERT(got && len == n + 5 && memcmp(got + 5, big, n) == 0);
    free(got);
    free(big);
}

static off_t size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* A record waits in its buffer until the interval has passed, then reaches the file without
 * a flush. */
static void test_ticks_write_records_once_the_interval_has_passed(void)
{
    const char *path = tu_tmp_path("tick.txt");
    urfile *f;
    CU_ASSERT_EQUAL_FATAL(urfile_open(path, 0.5, &f, NULL), 0);
    CU_ASSERT_EQUAL(urfile_append(f, "one\n", 4, NULL), 0);
    CU_ASSERT_EQUAL(urfile_tick(f, 0.25, NULL), 0);
    usleep(20 * 1000);
    CU_ASSERT_EQUAL(size_of(path), 0);
    CU_ASSERT_EQUAL(urfile_tick(f, 0.75, NULL), 0);
    for (int i = 0; i < 200 && size_of(path) < 4; i++)
        usleep(5 * 1000);
    CU_ASSERT_EQUAL(size_of(path), 4);
    CU_ASSERT_EQUAL(urfile_tick(f, 0.8, NULL), 0);
    CU_ASSERT_EQUAL(urfile_acked(f), 4);
    CU_ASSERT_EQUAL(urfile_close(f, NULL), 0);
}

/* With a flush interval of 0 a record is submitted by the append itself, without a tick. */
static void test_flush_interval_zero_writes_each_record_at_once(void)
{
    const char *path = tu_tmp_path("now.txt");
    urfile *f;
    CU_ASSERT_EQUAL_FATAL(urfile_open(path, 0.0, &f, NULL), 0);
    CU_ASSERT_EQUAL(urfile_append(f, "one\n", 4, NULL), 0);
    for (int i = 0; i < 200 && size_of(path) < 4; i++)
        usleep(5 * 1000);
    CU_ASSERT_EQUAL(size_of(path), 4);
    CU_ASSERT_EQUAL(urfile_close(f, NULL), 0);
}

/* In a child whose files may not pass 10 KiB (as a disk that fills): 200 records of 100
 * bytes, one buffer never written whole. The file is cut back to the 102 records that fit,
 * not to the last whole buffer (none). */
static void test_a_filled_disk_keeps_every_whole_record(void)
{
    const char *path = tu_tmp_path("fsize.txt");
    pid_t pid = tu_fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        struct rlimit lim = {10240, 10240};
        signal(SIGXFSZ, SIG_IGN);
        urfile *f;
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0 || urfile_open(path, 60.0, &f, NULL) != 0)
            _exit(2);
        char rec[101];
        for (int i = 0; i < 200; i++) {
            snprintf(rec, sizeof rec, "%-99d\n", i);
            urfile_append(f, rec, 100, NULL);
        }
        _exit(urfile_close(f, NULL) == CIN_E_IO ? 0 : 1);
    }
    int status = tu_reap(pid, 10);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(size_of(path), 102 * 100);
}

static void expect_write_failure(const char *path, const char *reason)
{
    urfile *f;
    cin_err err = {0};
    CU_ASSERT_EQUAL_FATAL(urfile_open(path, 0.0, &f, NULL), 0);
    CU_ASSERT_EQUAL(urfile_append(f, "lost\n", 5, NULL), 0);
    CU_ASSERT_EQUAL(urfile_flush(f, &err), CIN_E_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, reason));
    CU_ASSERT_EQUAL(urfile_append(f, "more\n", 5, NULL), CIN_E_IO);
    CU_ASSERT_EQUAL(urfile_acked(f), 0);
    CU_ASSERT_EQUAL(urfile_close(f, NULL), CIN_E_IO);
}

static void test_a_full_disk_is_reported_and_stays_reported(void)
{
    expect_write_failure("/dev/full", "No space left on device");
}

static void test_a_closed_pipe_is_reported(void)
{
    int p[2];
    CU_ASSERT_EQUAL_FATAL(pipe(p), 0);
    close(p[0]);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    expect_write_failure(path, "Broken pipe");
    signal(SIGPIPE, old);
    close(p[1]);
}

static void test_an_unwritable_path_names_itself(void)
{
    urfile *f = (urfile *)1;
    cin_err err = {0};
    CU_ASSERT_EQUAL(urfile_open(tu_tmp_path("no/dir/x"), 0.0, &f, &err), CIN_E_IO);
    CU_ASSERT_PTR_NULL(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no/dir/x: cannot open for writing: No such file"));
}

int test_urfile_register(void)
{
    CU_pSuite s = CU_add_suite("urfile", NULL, NULL);
    if (!s)
        return -1;
    int ok = CU_add_test(s, "appends arrive whole and in order",
                         test_appends_arrive_whole_and_in_order) &&
             CU_add_test(s, "a record longer than a buffer is written intact",
                         test_a_record_longer_than_a_buffer_is_written_intact) &&
             CU_add_test(s, "ticks write records once the interval has passed",
                         test_ticks_write_records_once_the_interval_has_passed) &&
             CU_add_test(s, "a filled disk keeps every whole record",
                         test_a_filled_disk_keeps_every_whole_record) &&
             CU_add_test(s, "flush interval zero writes each record at once",
                         test_flush_interval_zero_writes_each_record_at_once) &&
             CU_add_test(s, "a full disk is reported and stays reported",
                         test_a_full_disk_is_reported_and_stays_reported) &&
             CU_add_test(s, "a closed pipe is reported", test_a_closed_pipe_is_reported) &&
             CU_add_test(s, "an unwritable path names itself",
                         test_an_unwritable_path_names_itself);
    return ok ? 0 : -1;
}
