/* Suite "features": the feature-vector source (io/feat.h) over files, stdin, and unix and TCP
 * sockets served by a thread of the test, with malformed, non-finite and fuzzed input, and the
 * timeouts of senders that go silent or never answer. */
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "feat.h"
#include "util.h"

#define WARN_KEEP 16

/* The warnings a source reported: all counted, the first WARN_KEEP kept. */
typedef struct warnings {
    int n;
    char msg[WARN_KEEP][256];
} warnings;

static void collect(void *user, const char *msg)
{
    warnings *w = user;
    if (w->n < WARN_KEEP)
        snprintf(w->msg[w->n], sizeof w->msg[0], "%s", msg);
    w->n++;
}

static feat_src *open_src(const char *uri, int dim, feat_format format, warnings *w)
{
    feat_opts o = {.uri = uri, .dim = dim, .format = format, .warn = collect, .warn_user = w};
    feat_src *s = NULL;
    cin_err err;
    int rc = feat_open(&o, &s, &err);
    if (rc != 0)
        fprintf(stderr, "feat_open: %s\n", err.msg);
    CU_ASSERT_EQUAL(rc, 0);
    return s;
}

/* Reads every record into vecs[max][dim] and frames[max]; the end must be reached, and stay. */
static int read_all(feat_src *s, int dim, float *vecs, int64_t *frames, int max)
{
    cin_err err;
    int n = 0, rc;
    float *scratch = malloc(sizeof(float) * (size_t)dim);
    int64_t frame;
    while ((rc = feat_read(s, n < max ? vecs + (size_t)n * dim : scratch, &frame, &err)) == 1) {
        if (n < max)
            frames[n] = frame;
        n++;
    }
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(feat_read(s, scratch, &frame, &err), 0);
    free(scratch);
    return n;
}

/* Reads the file holding `text` (len bytes, NULs allowed) named `name` under the temp dir. */
static int read_text(const char *name, const char *text, size_t len, int dim, feat_format fmt,
                     float *vecs, int64_t *frames, int max, warnings *w, int64_t *skipped,
                     int64_t *masked)
{
    const char *path = tu_tmp_path(name);
    CU_ASSERT_FATAL(tu_write_file(path, text, len) == 0);
    feat_src *s = open_src(path, dim, fmt, w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    int n = read_all(s, dim, vecs, frames, max);
    *skipped = feat_skipped(s);
    *masked = feat_masked(s);
    feat_close(s);
    return n;
}

/* Asserts that warning i reads "<tmp path of name>:<line>: <reason>". */
static void check_warning(const warnings *w, int i, const char *name, int line,
                          const char *reason)
{
    char want[512];
    snprintf(want, sizeof want, "%s:%d: %s", tu_tmp_path(name), line, reason);
    CU_ASSERT_FATAL(i < w->n && i < WARN_KEEP);
    if (strncmp(w->msg[i], want, strlen(want)) != 0)
        fprintf(stderr, "\nwarning %d: got \"%s\", want \"%s...\"\n", i, w->msg[i], want);
    CU_ASSERT_EQUAL(strncmp(w->msg[i], want, strlen(want)), 0);
}

static uint32_t xorshift(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

/* The float extremes, a denormal and signed zero, then magnitudes from 2^-101 to 2^98. */
static float test_value(uint32_t *rng, int k)
{
    static const float edge[] = {0.0f, -0.0f, FLT_MAX, -FLT_MAX, FLT_MIN, 1.4e-45f, 1.0f, -1.0f};
    if (k < (int)(sizeof edge / sizeof edge[0]))
        return edge[k];
    double u = (double)xorshift(rng) / 4294967296.0 - 0.5;
    return (float)ldexp(u, (int)(xorshift(rng) % 200) - 100);
}

/* rows records of dim values; JSON lines alternate objects with a frame and bare arrays, CSV
 * rows alternate a frame column and none. Frames given are 100 + row. */
static char *write_records(feat_format fmt, const float *v, int rows, int dim, size_t *len)
{
    char *text = NULL;
    FILE *m = open_memstream(&text, len);
    for (int r = 0; r < rows; r++) {
        int framed = r % 2 == 0;
        if (fmt == FEAT_JSONL)
            fprintf(m, framed ? "{\"frame\": %d, \"features\": [" : "[", 100 + r);
        else if (framed)
            fprintf(m, "%d, ", 100 + r);
        for (int i = 0; i < dim; i++)
            fprintf(m, "%s%.9g", i ? (fmt == FEAT_CSV && r % 3 ? " ,  " : ",") : "",
                    (double)v[r * dim + i]);
        fputs(fmt == FEAT_JSONL ? (framed ? "]}\n" : "]\n") : "\n", m);
    }
    fclose(m);
    return text;
}

/* How many got[i] == want[i] (so -0 matches 0: JSON reads "-0" as the integer 0). */
static int count_equal(const float *got, const float *want, int n)
{
    int equal = 0;
    for (int i = 0; i < n; i++)
        equal += got[i] == want[i];
    return equal;
}

static void check_round_trip(feat_format fmt, const char *name)
{
    enum { ROWS = 40, DIM = 7 };
    float v[ROWS * DIM], got[ROWS * DIM];
    int64_t frames[ROWS], skipped, masked;
    uint32_t rng = 12345;
    for (int k = 0; k < ROWS * DIM; k++)
        v[k] = test_value(&rng, k);
    size_t len;
    char *text = write_records(fmt, v, ROWS, DIM, &len);
    warnings w = {0};
    int n = read_text(name, text, len, DIM, fmt, got, frames, ROWS, &w, &skipped, &masked);
    free(text);

    CU_ASSERT_EQUAL_FATAL(n, ROWS);
    CU_ASSERT_EQUAL(skipped, 0);
    CU_ASSERT_EQUAL(masked, 0);
    CU_ASSERT_EQUAL(w.n, 0);
    CU_ASSERT_EQUAL(count_equal(got, v, ROWS * DIM), ROWS * DIM);
    for (int r = 0; r < ROWS; r++)
        CU_ASSERT_EQUAL(frames[r], 100 + r);    /* odd rows count on from the even ones */
}

static void test_jsonl_file_round_trips_exact_values(void)
{
    check_round_trip(FEAT_JSONL, "round.jsonl");
}

static void test_csv_file_round_trips_exact_values(void)
{
    check_round_trip(FEAT_CSV, "round.csv");
}

static void test_frame_indices_given_or_counted(void)
{
    static const char jsonl[] = "[1, 2]\n"
                                "{\"frame\": 10, \"features\": [3, 4]}\n"
                                "[5, 6]\n"
                                "{\"features\": [7, 8], \"pts\": 1.5}\n"
                                "{\"frame\": 3, \"features\": [9, 10]}\n"
                                "[11, 12]\n";
    static const char csv[] = "1,2\n10,3,4\n5,6\n";
    float v[6 * 2];
    int64_t frames[6], skipped, masked;
    warnings w = {0};
    int n = read_text("frames.jsonl", jsonl, strlen(jsonl), 2, FEAT_JSONL, v, frames, 6, &w,
                      &skipped, &masked);
    CU_ASSERT_EQUAL_FATAL(n, 6);
    const int64_t want[6] = {0, 10, 11, 12, 3, 4};
    for (int i = 0; i < 6; i++) {
        CU_ASSERT_EQUAL(frames[i], want[i]);
        CU_ASSERT_EQUAL(v[2 * i], 2 * i + 1);
    }

    n = read_text("frames.csv", csv, strlen(csv), 2, FEAT_CSV, v, frames, 6, &w, &skipped,
                  &masked);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT_EQUAL(frames[0], 0);
    CU_ASSERT_EQUAL(frames[1], 10);
    CU_ASSERT_EQUAL(frames[2], 11);
    CU_ASSERT_EQUAL(v[2], 3.0f);
    CU_ASSERT_EQUAL(v[5], 6.0f);
    CU_ASSERT_EQUAL(w.n, 0);
}

static void test_csv_header_is_skipped_once(void)
{
    static const char csv[] = "frame, f0, f1\n0, 1.5, 2.5\nf0,f1\n3.5,4.5\n";
    static const char bom[] = "\xEF\xBB\xBF" "1,2\n3,4\n";
    float v[4 * 2];
    int64_t frames[4], skipped, masked;
    warnings w = {0};
    int n = read_text("header.csv", csv, strlen(csv), 2, FEAT_CSV, v, frames, 4, &w, &skipped,
                      &masked);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_EQUAL(v[0], 1.5f);
    CU_ASSERT_EQUAL(v[3], 4.5f);
    CU_ASSERT_EQUAL(frames[1], 1);
    CU_ASSERT_EQUAL(skipped, 1);
    CU_ASSERT_EQUAL_FATAL(w.n, 1);
    check_warning(&w, 0, "header.csv", 3, "field 1 (\"f0\") is not a number");

    w.n = 0;
    n = read_text("bom.csv", bom, strlen(bom), 2, FEAT_CSV, v, frames, 4, &w, &skipped,
                  &masked);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(v[0], 1.0f);
    CU_ASSERT_EQUAL(skipped, 0);
}

static void test_malformed_jsonl_lines_are_skipped_with_line_numbers(void)
{
    static const char text[] = "[1, 2, 3]\n"
                               "[1, 2]\n"
                               "hello\n"
                               "{\"features\": [1, 2, 3]\n"
                               "\n"
                               "{\"frame\": 5, \"features\": [4, 5, 6]}\n"
                               "[\"a\", 2, 3]\n"
                               "{\"frame\": -1, \"features\": [1, 2, 3]}\n"
                               "{\"feature\": [1, 2, 3]}\n"
                               "[1, 2, 3, 4]\n"
                               "[7, 8, 9]\n";
    const char *name = "bad.jsonl";
    float v[4 * 3];
    int64_t frames[4], skipped, masked;
    warnings w = {0};
    int n = read_text(name, text, strlen(text), 3, FEAT_JSONL, v, frames, 4, &w, &skipped,
                      &masked);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT_EQUAL(frames[1], 5);
    CU_ASSERT_EQUAL(frames[2], 6);
    CU_ASSERT_EQUAL(v[8], 9.0f);
    CU_ASSERT_EQUAL(skipped, 8);
    CU_ASSERT_EQUAL_FATAL(w.n, 8);
    check_warning(&w, 0, name, 2, "expected 3 numbers, got 2");
    check_warning(&w, 1, name, 3, "invalid JSON");
    check_warning(&w, 2, name, 4, "invalid JSON");
    check_warning(&w, 3, name, 5, "empty line");
    check_warning(&w, 4, name, 7, "features[0] is a string, not a number");
    check_warning(&w, 5, name, 8, "\"frame\" is not an integer");
    check_warning(&w, 6, name, 9, "no \"features\" array");
    check_warning(&w, 7, name, 10, "expected 3 numbers, got 4");
}

static void test_malformed_csv_lines_are_skipped_with_line_numbers(void)
{
    static const char text[] = "1,2,3\n"
                               "1,2\n"
                               "a,b,c\n"
                               "1,,3\n"
                               "  \n"
                               "9, 4, 5, 6\n"
                               "1,2,3,4,5\n"
                               "-1,1,2,3\n"
                               "1.5x,2,3\n"
                               "1,2,3 junk\n"
                               "7,8,9\n"
                               "1,2,3\0" "4\n";
    const char *name = "bad.csv";
    float v[4 * 3];
    int64_t frames[4], skipped, masked;
    warnings w = {0};
    int n = read_text(name, text, sizeof text - 1, 3, FEAT_CSV, v, frames, 4, &w, &skipped,
                      &masked);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT_EQUAL(frames[1], 9);
    CU_ASSERT_EQUAL(frames[2], 10);
    CU_ASSERT_EQUAL(v[3], 4.0f);
    CU_ASSERT_EQUAL(skipped, 9);
    CU_ASSERT_EQUAL_FATAL(w.n, 9);
    check_warning(&w, 0, name, 2, "expected 3 numbers (4 fields with a frame), got 2 fields");
    check_warning(&w, 1, name, 3, "field 1 (\"a\") is not a number");
    check_warning(&w, 2, name, 4, "field 2 (\"\") is not a number");
    check_warning(&w, 3, name, 5, "empty line");
    check_warning(&w, 4, name, 7, "expected 3 numbers (4 fields with a frame), got 5 fields");
    check_warning(&w, 5, name, 8, "frame field is not an integer");
    check_warning(&w, 6, name, 9, "field 1 (\"1.5x\") is not a number");
    check_warning(&w, 7, name, 10, "field 3 (\"3 junk\") is not a number");
    check_warning(&w, 8, name, 12, "field 3 (\"3\") is not a number");
}

static void check_all_finite(const float *v, int n)
{
    int finite = 0;
    for (int i = 0; i < n; i++)
        finite += isfinite(v[i]) != 0;
    CU_ASSERT_EQUAL(finite, n);
}

static void test_nan_inf_null_are_masked_and_counted(void)
{
    static const char jsonl[] = "[null, 1, 1e300]\n[\"x\", null, 1]\n[-1e300, null, 2.5]\n";
    static const char csv[] = "nan, inf, -inf\nNaN,1\n1e39, -1e39, 2\nINFINITY,1,nan(0x1)\n";
    float v[3 * 3];
    int64_t frames[3], skipped, masked;
    warnings w = {0};
    int n = read_text("nan.jsonl", jsonl, strlen(jsonl), 3, FEAT_JSONL, v, frames, 3, &w,
                      &skipped, &masked);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_EQUAL(masked, 4);    /* the skipped line's null is not counted */
    CU_ASSERT_EQUAL(skipped, 1);
    CU_ASSERT_EQUAL(v[0], 0.0f);
    CU_ASSERT_EQUAL(v[1], 1.0f);
    CU_ASSERT_EQUAL(v[5], 2.5f);
    check_all_finite(v, 6);

    n = read_text("nan.csv", csv, strlen(csv), 3, FEAT_CSV, v, frames, 3, &w, &skipped,
                  &masked);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    CU_ASSERT_EQUAL(masked, 7);
    CU_ASSERT_EQUAL(skipped, 1);
    CU_ASSERT_EQUAL(v[5], 2.0f);
    CU_ASSERT_EQUAL(v[7], 1.0f);
    check_all_finite(v, 9);
}

/* Python's json.dumps writes NaN and Infinity: they are masked like null; inside a string they
 * are text. */
static void test_python_nan_and_infinity_tokens_are_masked(void)
{
    static const char jsonl[] = "[NaN, Infinity, -Infinity]\n"
                                "{\"tag\": \"NaN\", \"features\": [1, NaN, 3]}\n"
                                "[NaNa, 1, 2]\n";
    float v[2 * 3];
    int64_t frames[2], skipped, masked;
    warnings w = {0};
    int n = read_text("py.jsonl", jsonl, strlen(jsonl), 3, FEAT_JSONL, v, frames, 2, &w,
                      &skipped, &masked);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_EQUAL(masked, 4);
    CU_ASSERT_EQUAL(skipped, 1); /* NaNa is not a token */
    CU_ASSERT_EQUAL(v[3], 1.0f);
    CU_ASSERT_EQUAL(v[4], 0.0f);
    CU_ASSERT_EQUAL(v[5], 3.0f);
    check_all_finite(v, 6);
}

static void test_last_line_without_newline_is_read(void)
{
    static const char csv[] = "1,2\r\n3,4";
    static const char jsonl[] = "[1, 2]\n{\"frame\": 7, \"features\": [3, 4]}";
    float v[2 * 2];
    int64_t frames[2], skipped, masked;
    warnings w = {0};
    int n = read_text("last.csv", csv, strlen(csv), 2, FEAT_CSV, v, frames, 2, &w, &skipped,
                      &masked);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_EQUAL(v[1], 2.0f);
    CU_ASSERT_EQUAL(v[3], 4.0f);
    n = read_text("last.jsonl", jsonl, strlen(jsonl), 2, FEAT_JSONL, v, frames, 2, &w,
                  &skipped, &masked);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT_EQUAL(frames[1], 7);
    CU_ASSERT_EQUAL(v[3], 4.0f);
    CU_ASSERT_EQUAL(w.n, 0);
}

/* "1,2" padded with blanks to `bytes`, then a newline if `newline`. */
static void put_padded_row(FILE *f, size_t bytes, int newline)
{
    fputs("1,2", f);
    for (size_t i = 3; i < bytes; i++)
        fputc(' ', f);
    if (newline)
        fputc('\n', f);
}

static void test_huge_lines_are_skipped(void)
{
    const char *name = "huge.csv";
    FILE *f = fopen(tu_tmp_path(name), "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("5,6\n", f);
    put_padded_row(f, (size_t)FEAT_MAX_LINE + (1 << 20), 1);
    fputs("7,8\n", f);
    put_padded_row(f, (size_t)FEAT_MAX_LINE + 3, 0);
    CU_ASSERT_FATAL(fclose(f) == 0);

    warnings w = {0};
    feat_src *s = open_src(tu_tmp_path(name), 2, FEAT_CSV, &w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    float v[2 * 2];
    int64_t frames[2];
    CU_ASSERT_EQUAL(read_all(s, 2, v, frames, 2), 2);
    CU_ASSERT_EQUAL(v[2], 7.0f);
    CU_ASSERT_EQUAL(feat_skipped(s), 2);
    feat_close(s);
    CU_ASSERT_EQUAL_FATAL(w.n, 2);
    check_warning(&w, 0, name, 2, "line longer than 16777216 bytes");
    check_warning(&w, 1, name, 4, "line longer than 16777216 bytes");
}

static void test_line_of_exactly_the_limit_is_kept(void)
{
    const char *name = "limit.csv";
    FILE *f = fopen(tu_tmp_path(name), "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    put_padded_row(f, FEAT_MAX_LINE, 1);
    put_padded_row(f, (size_t)FEAT_MAX_LINE + 1, 1);
    put_padded_row(f, FEAT_MAX_LINE, 0);
    CU_ASSERT_FATAL(fclose(f) == 0);

    warnings w = {0};
    feat_src *s = open_src(tu_tmp_path(name), 2, FEAT_CSV, &w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    float v[2 * 2];
    int64_t frames[2];
    CU_ASSERT_EQUAL(read_all(s, 2, v, frames, 2), 2);
    CU_ASSERT_EQUAL(v[3], 2.0f);
    CU_ASSERT_EQUAL(feat_skipped(s), 1);
    feat_close(s);
    CU_ASSERT_EQUAL_FATAL(w.n, 1);
    check_warning(&w, 0, name, 2, "line longer than");
}

/* ---- stdin and sockets ------------------------------------------------------------------ */

enum { STREAM_ROWS = 300, STREAM_DIM = 16 };

/* What a writer thread sends in pieces of `chunk` bytes, pausing now and then so the reader
 * sees lines split across reads; it closes its end when done. */
typedef struct sender {
    int fd;
    int listen;                 /* 1: fd listens; send to the first connection accepted */
    const char *fifo;           /* not NULL: open this FIFO and send to it instead */
    const char *data;
    size_t len, chunk;
    int interrupt;              /* 1: signal `reader` while it waits for data */
    pthread_t reader;
} sender;

static int sender_open(const sender *sd)
{
    if (sd->fifo)
        return open(sd->fifo, O_WRONLY);
    return sd->listen ? accept(sd->fd, NULL, NULL) : sd->fd;
}

/* Gives the reader time to block in read(2), interrupts it, and gives it time to see that
 * no data came (data arriving with the signal would complete the read instead). */
static void interrupt_reader(const sender *sd)
{
    struct timespec wait = {0, 20000000};
    nanosleep(&wait, NULL);
    pthread_kill(sd->reader, SIGUSR1);
    nanosleep(&wait, NULL);
}

static void *send_all(void *arg)
{
    sender *sd = arg;
    sigset_t pipe_signal;   /* a reader gone early gives EPIPE, not the end of the runner */
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_signal, NULL);
    int fd = sender_open(sd);
    struct timespec pause = {0, 200000};
    for (size_t off = 0, k = 0; fd >= 0 && off < sd->len; k++) {
        if (sd->interrupt && k % 4 == 0)
            interrupt_reader(sd);
        size_t n = sd->len - off < sd->chunk ? sd->len - off : sd->chunk;
        ssize_t w = write(fd, sd->data + off, n);
        if (w <= 0)
            break;
        off += (size_t)w;
        if (k % 64 == 0)
            nanosleep(&pause, NULL);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static char *stream_text(float *v, size_t *len)
{
    uint32_t rng = 777;
    for (int k = 0; k < STREAM_ROWS * STREAM_DIM; k++)
        v[k] = test_value(&rng, k);
    return write_records(FEAT_JSONL, v, STREAM_ROWS, STREAM_DIM, len);
}

/* Lets the writer thread finish when the source could not be opened. */
static void release_sender(const sender *sd)
{
    char sink[4096];
    if (sd->listen) {
        shutdown(sd->fd, SHUT_RDWR);
        return;
    }
    int fd = sd->fifo ? open(sd->fifo, O_RDONLY) : STDIN_FILENO;
    while (fd >= 0 && read(fd, sink, sizeof sink) > 0)
        continue;
    if (sd->fifo && fd >= 0)
        close(fd);
}

/* Reads uri while sd runs in a thread; every record must arrive in order, then the end. */
static void check_stream(const char *uri, sender *sd, const float *want)
{
    pthread_t th;
    CU_ASSERT_FATAL(pthread_create(&th, NULL, send_all, sd) == 0);
    warnings w = {0};
    feat_src *s = open_src(uri, STREAM_DIM, FEAT_JSONL, &w);
    if (s) {
        float *got = malloc(sizeof(float) * STREAM_ROWS * STREAM_DIM);
        int64_t frames[STREAM_ROWS];
        CU_ASSERT_EQUAL(read_all(s, STREAM_DIM, got, frames, STREAM_ROWS), STREAM_ROWS);
        CU_ASSERT_EQUAL(count_equal(got, want, STREAM_ROWS * STREAM_DIM),
                        STREAM_ROWS * STREAM_DIM);
        CU_ASSERT_EQUAL(frames[STREAM_ROWS - 1], 100 + STREAM_ROWS - 1);
        CU_ASSERT_EQUAL(w.n, 0);
        free(got);
        feat_close(s);
    } else
        release_sender(sd);
    pthread_join(th, NULL);
}

static void test_stdin_pipe_is_read(void)
{
    float want[STREAM_ROWS * STREAM_DIM];
    size_t len;
    char *text = stream_text(want, &len);
    int p[2];
    CU_ASSERT_FATAL(pipe(p) == 0);
    int saved = dup(STDIN_FILENO);
    CU_ASSERT_FATAL(saved >= 0 && dup2(p[0], STDIN_FILENO) == STDIN_FILENO);
    close(p[0]);

    sender sd = {.fd = p[1], .data = text, .len = len, .chunk = 4093};
    check_stream("-", &sd, want);
    /* feat_close left stdin open: it is still the pipe, now at its end */
    char c;
    CU_ASSERT_EQUAL(read(STDIN_FILENO, &c, 1), 0);

    CU_ASSERT(dup2(saved, STDIN_FILENO) == STDIN_FILENO);
    close(saved);
    free(text);
}

static void on_signal(int sig)
{
    (void)sig;
}

static void test_fifo_read_survives_interrupting_signals(void)
{
    float want[STREAM_ROWS * STREAM_DIM];
    size_t len;
    char *text = stream_text(want, &len);
    const char *path = tu_tmp_path("feats.fifo");
    CU_ASSERT_FATAL(mkfifo(path, 0600) == 0);
    /* no SA_RESTART: a blocked read(2) returns EINTR, which the source must retry */
    struct sigaction sa = {.sa_handler = on_signal}, old;
    sigemptyset(&sa.sa_mask);
    CU_ASSERT_FATAL(sigaction(SIGUSR1, &sa, &old) == 0);

    sender sd = {.fifo = path, .data = text, .len = len, .chunk = 4093, .interrupt = 1,
                 .reader = pthread_self()};
    check_stream(path, &sd, want);
    sigaction(SIGUSR1, &old, NULL);
    free(text);
}

static void test_unix_socket_delivers_all_then_end(void)
{
    float want[STREAM_ROWS * STREAM_DIM];
    size_t len;
    char *text = stream_text(want, &len);
    const char *path = tu_tmp_path("feat.sock");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 1) == 0);

    char uri[300];
    snprintf(uri, sizeof uri, "unix:%s", path);
    sender sd = {.fd = fd, .listen = 1, .data = text, .len = len, .chunk = 1000};
    check_stream(uri, &sd, want);
    close(fd);
    free(text);
}

/* A TCP socket bound to 127.0.0.1 on a free port; *port receives the port. */
static int bind_loopback(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static void test_tcp_socket_delivers_all_then_end(void)
{
    float want[STREAM_ROWS * STREAM_DIM];
    size_t len;
    char *text = stream_text(want, &len);
    int port = 0;
    int fd = bind_loopback(&port);
    CU_ASSERT_FATAL(fd >= 0 && listen(fd, 1) == 0);

    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    sender sd = {.fd = fd, .listen = 1, .data = text, .len = len, .chunk = 777};
    check_stream(uri, &sd, want);
    close(fd);
    free(text);
}

/* feat_open(uri) must fail with `code` and a message that starts with the uri. */
static void check_open_fails(const char *uri, int dim, int code)
{
    feat_opts o = {.uri = uri, .dim = dim, .format = FEAT_CSV};
    feat_src *s = (feat_src *)&o;
    cin_err err = {0};
    CU_ASSERT_EQUAL(feat_open(&o, &s, &err), code);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_EQUAL(err.code, code);
    CU_ASSERT_EQUAL(strncmp(err.msg, uri, strlen(uri)), 0);
}

static void test_missing_file_or_refused_connection_names_the_uri(void)
{
    check_open_fails("no/such/feats.csv", 4, CIN_E_IO);
    check_open_fails(tu_tmp_path(""), 4, CIN_E_IO);           /* a directory */
    char uri[300];
    snprintf(uri, sizeof uri, "unix:%s", tu_tmp_path("nobody.sock"));
    check_open_fails(uri, 4, CIN_E_IO);

    int port = 0;
    int fd = bind_loopback(&port);      /* bound, not listening: connections are refused */
    CU_ASSERT_FATAL(fd >= 0);
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    check_open_fails(uri, 4, CIN_E_IO);
    close(fd);
}

/* ---- timeouts on sockets ----------------------------------------------------------------- */

/* Generous bounds: the machine is shared and the suite also runs under the sanitizers. */
#define TIMEOUT_SLACK 1.5

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A server that accepts one connection, sends `rows`, then stays silent with the connection
 * open until the reader closes it. */
typedef struct silent_server {
    int listen_fd;
    const char *rows;
} silent_server;

static void *serve_then_go_silent(void *arg)
{
    const silent_server *sv = arg;
    int fd = accept(sv->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    size_t len = strlen(sv->rows);
    CU_ASSERT_EQUAL(write(fd, sv->rows, len), (ssize_t)len);
    char c;
    while (read(fd, &c, 1) > 0)
        continue;
    close(fd);
    return NULL;
}

static feat_src *open_timed(const char *uri, double open_timeout, double read_timeout,
                            cin_err *err, int *rc)
{
    feat_opts o = {.uri = uri, .dim = 2, .format = FEAT_CSV, .open_timeout = open_timeout,
                   .read_timeout = read_timeout};
    feat_src *s = NULL;
    *rc = feat_open(&o, &s, err);
    return s;
}

/* The error of a timed-out read names the uri and the timeout, as a video source's does. */
static void check_read_timeout_message(const cin_err *err, const char *uri, const char *secs)
{
    char want[160];
    snprintf(want, sizeof want, "%s: timed out: no data for %s s (read timeout)", uri, secs);
    CU_ASSERT_EQUAL(err->code, CIN_E_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err->msg, want));
    if (!strstr(err->msg, want))
        fprintf(stderr, "got \"%s\", expected \"%s...\"\n", err->msg, want);
}

static void test_silent_tcp_sender_times_out_after_its_rows(void)
{
    int port = 0;
    int fd = bind_loopback(&port);
    CU_ASSERT_FATAL(fd >= 0 && listen(fd, 1) == 0);
    silent_server sv = {.listen_fd = fd, .rows = "0,1.5,2.5\n1,3.5,4.5\n"};
    pthread_t th;
    CU_ASSERT_FATAL(pthread_create(&th, NULL, serve_then_go_silent, &sv) == 0);
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);

    cin_err err;
    int rc;
    feat_src *s = open_timed(uri, 5, 1, &err, &rc);
    CU_ASSERT_EQUAL(rc, 0);
    float v[2];
    int64_t frame = -1;
    for (int i = 0; s && i < 2; i++) {
        CU_ASSERT_EQUAL(feat_read(s, v, &frame, &err), 1);
        CU_ASSERT_EQUAL(frame, i);
        CU_ASSERT_DOUBLE_EQUAL(v[1], 2.5 + 2 * i, 0.0);
    }
    double t0 = now_s();
    rc = s ? feat_read(s, v, &frame, &err) : CIN_E_IO;
    double took = now_s() - t0;
    CU_ASSERT_EQUAL(rc, CIN_E_IO);
    check_read_timeout_message(&err, uri, "1");
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "after 2 lines"));
    CU_ASSERT(took >= 0.9 && took <= 1 + TIMEOUT_SLACK);
    fprintf(stderr, "\n    silent TCP sender detected after %.3f s (read_timeout 1) ", took);
    CU_ASSERT_EQUAL(feat_read(s, v, &frame, &err), CIN_E_IO);     /* and on later calls */
    feat_close(s);
    if (!s)
        shutdown(fd, SHUT_RDWR);
    pthread_join(th, NULL);
    close(fd);
}

static void test_udp_source_without_sender_times_out(void)
{
    int port = 0;
    int fd = bind_loopback(&port);      /* a free port number; UDP and TCP ports are apart */
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    char uri[64];
    snprintf(uri, sizeof uri, "udp://127.0.0.1:%d", port);
    cin_err err;
    int rc;
    feat_src *s = open_timed(uri, 0, 0.5, &err, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    float v[2];
    int64_t frame;
    double t0 = now_s();
    CU_ASSERT_EQUAL(feat_read(s, v, &frame, &err), CIN_E_IO);
    double took = now_s() - t0;
    check_read_timeout_message(&err, uri, "0.5");
    CU_ASSERT(took >= 0.4 && took <= 0.5 + TIMEOUT_SLACK);
    fprintf(stderr, "\n    silent UDP port detected after %.3f s (read_timeout 0.5) ", took);
    feat_close(s);
}

/* A stdin pipe whose writer is alive but silent times out too; a file is never waited for. */
static void test_silent_pipe_times_out_and_a_file_does_not(void)
{
    int p[2];
    CU_ASSERT_FATAL(pipe(p) == 0);
    int saved = dup(STDIN_FILENO);
    CU_ASSERT_FATAL(saved >= 0 && dup2(p[0], STDIN_FILENO) == STDIN_FILENO);
    close(p[0]);
    CU_ASSERT_EQUAL(write(p[1], "0,1,2\n", 6), 6);
    cin_err err;
    int rc;
    feat_src *s = open_timed("-", 0, 0.3, &err, &rc);
    float v[2];
    int64_t frame;
    CU_ASSERT(s && feat_read(s, v, &frame, &err) == 1);
    CU_ASSERT(s && feat_read(s, v, &frame, &err) == CIN_E_IO);
    check_read_timeout_message(&err, "stdin", "0.3");
    feat_close(s);
    close(p[1]);
    CU_ASSERT(dup2(saved, STDIN_FILENO) == STDIN_FILENO);
    close(saved);

    const char *path = tu_tmp_path("timed.csv");
    CU_ASSERT_FATAL(tu_write_file(path, "0,1,2\n", 6) == 0);
    s = open_timed(path, 0, 0.001, &err, &rc);
    CU_ASSERT(s && feat_read(s, v, &frame, &err) == 1);
    CU_ASSERT(s && feat_read(s, v, &frame, &err) == 0);
    feat_close(s);
}

static void test_refused_connection_fails_at_once(void)
{
    int port = 0;
    int fd = bind_loopback(&port);      /* bound, not listening: connections are refused */
    CU_ASSERT_FATAL(fd >= 0);
    char uri[64], want[192];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    snprintf(want, sizeof want, "%s: cannot connect: %s", uri, strerror(ECONNREFUSED));
    cin_err err;
    int rc;
    double t0 = now_s();
    feat_src *s = open_timed(uri, 5, 0, &err, &rc);
    double took = now_s() - t0;
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_EQUAL(rc, CIN_E_IO);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
    CU_ASSERT(took < 1.0);
    close(fd);
}

/* A listener whose backlog is full leaves a new connection unanswered (its SYN is dropped),
 * as a frozen or unreachable host does. */
static void test_unanswered_connect_times_out(void)
{
    int port = 0;
    int fd = bind_loopback(&port);
    CU_ASSERT_FATAL(fd >= 0 && listen(fd, 0) == 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof sa);
    }
    char uri[64], want[192];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    snprintf(want, sizeof want, "%s: cannot connect: timed out, no answer within 0.5 s (open "
             "timeout)", uri);
    cin_err err;
    int rc;
    double t0 = now_s();
    feat_src *s = open_timed(uri, 0.5, 0, &err, &rc);
    double took = now_s() - t0;
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_EQUAL(rc, CIN_E_IO);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
    CU_ASSERT(took >= 0.4 && took <= 0.5 + TIMEOUT_SLACK);
    fprintf(stderr, "\n    unanswered connect detected after %.3f s (open_timeout 0.5) ", took);
    feat_close(s);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(fd);
}

/* A Unix listener with a full backlog refuses a non-blocking connect (EAGAIN) instead of
 * queueing it; the source tries again until open_timeout. */
static void test_unix_listener_with_full_backlog_times_out(void)
{
    const char *path = tu_tmp_path("full.sock");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 0) == 0);
    int fill[2];
    for (int i = 0; i < 2; i++) {
        fill[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof sa);
    }
    char uri[300];
    snprintf(uri, sizeof uri, "unix:%s", path);
    cin_err err;
    int rc;
    double t0 = now_s();
    feat_src *s = open_timed(uri, 0.3, 0, &err, &rc);
    double took = now_s() - t0;
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_EQUAL(rc, CIN_E_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "cannot connect: timed out, no answer within 0.3 s"));
    CU_ASSERT(took >= 0.25 && took <= 0.3 + TIMEOUT_SLACK);
    for (int i = 0; i < 2; i++)
        close(fill[i]);
    close(fd);
}

static void test_negative_timeouts_are_invalid(void)
{
    cin_err err;
    int rc;
    CU_ASSERT_PTR_NULL(open_timed("x.csv", -1, 0, &err, &rc));
    CU_ASSERT(rc == CIN_E_INVAL && strstr(err.msg, "x.csv: open_timeout is -1"));
    CU_ASSERT_PTR_NULL(open_timed("x.csv", 0, NAN, &err, &rc));
    CU_ASSERT(rc == CIN_E_INVAL && strstr(err.msg, "x.csv: read_timeout is nan"));
}

static void test_bad_options_are_invalid(void)
{
    check_open_fails("feats.csv", 0, CIN_E_INVAL);
    check_open_fails("tcp://localhost:9000", 4, CIN_E_INVAL);   /* names are not looked up */
    check_open_fails("tcp://127.0.0.1:99999", 4, CIN_E_INVAL);
    check_open_fails("tcp://127.0.0.1", 4, CIN_E_INVAL);
    check_open_fails("unix:", 4, CIN_E_INVAL);
    feat_opts o = {.uri = "x.csv", .dim = 4, .format = (feat_format)7};
    feat_src *s;
    cin_err err;
    CU_ASSERT_EQUAL(feat_open(&o, &s, &err), CIN_E_INVAL);
    feat_close(NULL);
}

/* ---- fuzz ------------------------------------------------------------------------------- */

/* One valid line of 4 values, then up to four edits drawn from bytes that matter to parsers.
 * No newline is drawn, so each line stays one line. */
static void fuzz_line(feat_format fmt, uint32_t *rng, char *line, size_t cap, size_t *len)
{
    static const char pool[] = "0123456789.,-+eE[]{}\":nulaif \t\r\\x\xff\x80";
    int n = fmt == FEAT_JSONL
                ? snprintf(line, cap, "{\"frame\": %u, \"features\": [%.9g, %.9g, -1e-3, 4]}",
                           xorshift(rng) % 1000, (double)xorshift(rng) / 7, 0.5)
                : snprintf(line, cap, "%u, %.9g,%.9g, -1e-3 ,4", xorshift(rng) % 1000,
                           (double)xorshift(rng) / 7, 0.5);
    size_t l = (size_t)n;
    for (uint32_t e = xorshift(rng) % 5; e > 0 && l > 0; e--) {
        size_t at = xorshift(rng) % l;
        char c = xorshift(rng) % 16 ? pool[xorshift(rng) % (sizeof pool - 1)] : '\0';
        switch (xorshift(rng) % 4) {
        case 0: line[at] = c; break;
        case 1: memmove(line + at, line + at + 1, l-- - at - 1); break;
        case 2: l = at; break;
        default:
            if (l + 1 < cap) {
                memmove(line + at + 1, line + at, l++ - at);
                line[at] = c;
            }
        }
    }
    *len = l;
}

static void check_fuzz(feat_format fmt, const char *name)
{
    enum { LINES = 1000 };
    uint32_t rng = fmt == FEAT_JSONL ? 2024 : 4202;
    char *text = NULL;
    size_t text_len;
    FILE *m = open_memstream(&text, &text_len);
    for (int i = 0; i < LINES; i++) {
        char line[160];
        size_t len;
        fuzz_line(fmt, &rng, line, sizeof line, &len);
        fwrite(line, 1, len, m);
        fputc('\n', m);
    }
    fclose(m);

    float v[LINES * 4];
    int64_t frames[LINES], skipped, masked;
    warnings w = {0};
    int n = read_text(name, text, text_len, 4, fmt, v, frames, LINES, &w, &skipped, &masked);
    free(text);
    check_all_finite(v, n * 4);
    CU_ASSERT_EQUAL(w.n, skipped);
    /* every line is a record or a skipped line, but for a CSV header */
    CU_ASSERT(n + skipped == LINES || (fmt == FEAT_CSV && n + skipped == LINES - 1));
    CU_ASSERT(n > LINES / 10 && skipped > LINES / 10);    /* both paths were taken */
}

static void test_fuzzed_lines_never_crash(void)
{
    check_fuzz(FEAT_JSONL, "fuzz.jsonl");
    check_fuzz(FEAT_CSV, "fuzz.csv");
}

int test_features_register(void)
{
    CU_pSuite s = CU_add_suite("features", NULL, NULL);
    if (!s)
        return -1;
    struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        {"jsonl_file_round_trips_exact_values", test_jsonl_file_round_trips_exact_values},
        {"csv_file_round_trips_exact_values", test_csv_file_round_trips_exact_values},
        {"frame_indices_given_or_counted", test_frame_indices_given_or_counted},
        {"csv_header_is_skipped_once", test_csv_header_is_skipped_once},
        {"malformed_jsonl_lines_are_skipped_with_line_numbers",
         test_malformed_jsonl_lines_are_skipped_with_line_numbers},
        {"malformed_csv_lines_are_skipped_with_line_numbers",
         test_malformed_csv_lines_are_skipped_with_line_numbers},
        {"nan_inf_null_are_masked_and_counted", test_nan_inf_null_are_masked_and_counted},
        {"python_nan_and_infinity_tokens_are_masked",
         test_python_nan_and_infinity_tokens_are_masked},
        {"last_line_without_newline_is_read", test_last_line_without_newline_is_read},
        {"huge_lines_are_skipped", test_huge_lines_are_skipped},
        {"line_of_exactly_the_limit_is_kept", test_line_of_exactly_the_limit_is_kept},
        {"stdin_pipe_is_read", test_stdin_pipe_is_read},
        {"fifo_read_survives_interrupting_signals",
         test_fifo_read_survives_interrupting_signals},
        {"unix_socket_delivers_all_then_end", test_unix_socket_delivers_all_then_end},
        {"tcp_socket_delivers_all_then_end", test_tcp_socket_delivers_all_then_end},
        {"missing_file_or_refused_connection_names_the_uri",
         test_missing_file_or_refused_connection_names_the_uri},
        {"silent_tcp_sender_times_out_after_its_rows",
         test_silent_tcp_sender_times_out_after_its_rows},
        {"udp_source_without_sender_times_out", test_udp_source_without_sender_times_out},
        {"silent_pipe_times_out_and_a_file_does_not",
         test_silent_pipe_times_out_and_a_file_does_not},
        {"refused_connection_fails_at_once", test_refused_connection_fails_at_once},
        {"unanswered_connect_times_out", test_unanswered_connect_times_out},
        {"unix_listener_with_full_backlog_times_out",
         test_unix_listener_with_full_backlog_times_out},
        {"negative_timeouts_are_invalid", test_negative_timeouts_are_invalid},
        {"bad_options_are_invalid", test_bad_options_are_invalid},
        {"fuzzed_lines_never_crash", test_fuzzed_lines_never_crash},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
