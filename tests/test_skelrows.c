/* Suites "skelrows", "skelnorm" and "pyjson": the live skeleton-row source (io/skelrows.h) over
 * files, a stdin pipe and a TCP socket served by a thread of the test, with malformed,
 * non-finite, late and gapped input; the frame normalisation (io/skelnorm.h); and the reading
 * of Python's NaN/Infinity tokens (io/pyjson.h) that it shares with the feature source. */
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lines.h"
#include "pyjson.h"
#include "skelnorm.h"
#include "skelrows.h"
#include "util.h"

#define TOL 1e-6
#define WARN_KEEP 16

/* ---- helpers ---------------------------------------------------------------------------- */

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

enum { KEEP_FRAMES = 16, KEEP_LEN = 4 * 25 * 2 };

/* What reading a whole input gave: the first KEEP_FRAMES frames, and every count. */
typedef struct frames {
    int c, with_score, v, m;
    int n;                              /* frames read */
    int64_t index[KEEP_FRAMES];
    float val[KEEP_FRAMES][KEEP_LEN];
    int64_t nonfinite_out;              /* values returned that were not finite */
    skelrows_stats st;
    int64_t masked;
    warnings w;
} frames;

static skelrows_opts layout(skelrows_format fmt, int c, int with_score, int v, int m)
{
    return (skelrows_opts){.format = fmt, .c = c, .with_score = with_score, .v = v, .m = m};
}

/* Value of channel ch, joint j, person p in frame f: [c][v][m]. */
static float at(const frames *g, int f, int ch, int j, int p)
{
    return g->val[f][(ch * g->v + j) * g->m + p];
}

static int count_nonzero(const frames *g, int f)
{
    int n = 0, len = (g->c + g->with_score) * g->v * g->m;
    for (int i = 0; i < len; i++)
        n += g->val[f][i] != 0.0f;
    return n;
}

/* Reads every frame of s into g; the end must be reached, and stay. */
static void read_all(skelrows_src *s, frames *g)
{
    cin_err err;
    size_t len = skelrows_frame_len(s);
    float *scratch = malloc(sizeof(float) * len);
    int64_t index;
    int rc;
    CU_ASSERT_FATAL(scratch != NULL && len <= KEEP_LEN);
    while ((rc = skelrows_read(s, scratch, &index, &err)) == 1) {
        for (size_t i = 0; i < len; i++)
            g->nonfinite_out += !isfinite(scratch[i]);
        if (g->n < KEEP_FRAMES) {
            memcpy(g->val[g->n], scratch, sizeof(float) * len);
            g->index[g->n] = index;
        }
        g->n++;
    }
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(skelrows_read(s, scratch, &index, &err), 0);
    skelrows_get_stats(s, &g->st);
    g->masked = skelrows_masked(s);
    CU_ASSERT_EQUAL(g->st.skipped, skelrows_skipped(s));
    free(scratch);
}

static skelrows_src *open_src(skelrows_opts o, const char *uri, frames *g)
{
    memset(g, 0, sizeof *g);
    g->c = o.c;
    g->with_score = o.with_score;
    g->v = o.v;
    g->m = o.m;
    o.uri = uri;
    o.warn = collect;
    o.warn_user = &g->w;
    skelrows_src *s = NULL;
    cin_err err;
    int rc = skelrows_open(&o, &s, &err);
    if (rc != 0)
        fprintf(stderr, "skelrows_open: %s\n", err.msg);
    CU_ASSERT_EQUAL(rc, 0);
    return s;
}

/* Reads the file holding text[len] (NULs allowed), named `name` under the temp dir. */
static void read_text(const char *name, const char *text, size_t len, skelrows_opts o,
                      frames *g)
{
    const char *path = tu_tmp_path(name);
    CU_ASSERT_FATAL(tu_write_file(path, text, len) == 0);
    skelrows_src *s = open_src(o, path, g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    read_all(s, g);
    skelrows_close(s);
    CU_ASSERT_EQUAL(g->nonfinite_out, 0);
}

static void read_string(const char *name, const char *text, skelrows_opts o, frames *g)
{
    read_text(name, text, strlen(text), o, g);
}

/* Asserts that warning i reads "<tmp path of name>:<line>: <reason>...". */
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

/* Asserts x, y, z, score of joint j of person p in frame f (c = 3, with_score). */
static void check_joint4(const frames *g, int f, int j, int p, float x, float y, float z,
                         float score)
{
    CU_ASSERT_DOUBLE_EQUAL(at(g, f, 0, j, p), x, TOL);
    CU_ASSERT_DOUBLE_EQUAL(at(g, f, 1, j, p), y, TOL);
    CU_ASSERT_DOUBLE_EQUAL(at(g, f, 2, j, p), z, TOL);
    CU_ASSERT_DOUBLE_EQUAL(at(g, f, 3, j, p), score, TOL);
}

/* ---- grouping and the two JSON forms ---------------------------------------------------- */

static void test_rows_are_grouped_into_frames(void)
{
    static const char text[] =
        "{\"frame\": 0, \"person\": 0, \"joint\": 0, \"x\": 0.5, \"y\": 1.5, \"z\": 2.5, "
        "\"score\": 0.75}\n"
        "{\"joint\": 2, \"person\": 1, \"frame\": 0, \"y\": -1, \"x\": 3, \"z\": 4, "
        "\"score\": 0.5, \"track\": \"a\"}\n"
        "{\"frame\": 0, \"person\": 0, \"joint\": 1, \"x\": 1, \"y\": 2, \"z\": 3, "
        "\"score\": 1}\n"
        "{\"frame\": 1, \"person\": 1, \"joint\": 0, \"x\": 7, \"y\": 8, \"z\": 9, "
        "\"score\": 0.25}\n";
    frames g;
    read_string("group.jsonl", text, layout(SKELROWS_JSONL, 3, 1, 3, 2), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 2);
    CU_ASSERT_EQUAL(g.index[0], 0);
    CU_ASSERT_EQUAL(g.index[1], 1);
    check_joint4(&g, 0, 0, 0, 0.5f, 1.5f, 2.5f, 0.75f);
    check_joint4(&g, 0, 2, 1, 3.0f, -1.0f, 4.0f, 0.5f);
    check_joint4(&g, 0, 1, 0, 1.0f, 2.0f, 3.0f, 1.0f);
    CU_ASSERT_EQUAL(count_nonzero(&g, 0), 12);
    check_joint4(&g, 1, 0, 1, 7.0f, 8.0f, 9.0f, 0.25f);
    CU_ASSERT_EQUAL(count_nonzero(&g, 1), 4);
    /* frame 0: joint 2 of person 0, joints 0 and 1 of person 1; frame 1: two of person 1 */
    CU_ASSERT_EQUAL(g.st.missing_joints, 5);
    CU_ASSERT_EQUAL(g.masked, 5);
    CU_ASSERT_EQUAL(g.st.frames, 2);
    CU_ASSERT_EQUAL(g.st.skipped, 0);
    CU_ASSERT_EQUAL(g.w.n, 0);
}

static void test_whole_frame_lines_merge_and_complete_their_frame(void)
{
    static const char text[] =
        "{\"frame\": 4, \"persons\": [[[1, 2, 9, 0.5], [3, 4], null], null]}\n"
        "{\"frame\": 5, \"person\": 1, \"joint\": 1, \"x\": 5, \"y\": 6}\n"
        "{\"frame\": 5, \"persons\": [[[1, 1], [1, 1], [1, 1]]]}\n"
        "{\"frame\": 5, \"person\": 0, \"joint\": 0, \"x\": 9, \"y\": 9}\n"
        "{\"frame\": 6, \"persons\": []}\n";
    frames g;
    read_string("whole.jsonl", text, layout(SKELROWS_JSONL, 2, 1, 3, 2), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 3);
    CU_ASSERT_EQUAL(g.index[0], 4);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 0, 0, 0), 1.0, TOL);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 1, 0, 0), 2.0, TOL);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 2, 0, 0), 0.5, TOL);     /* z is no channel when c = 2 */
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 0, 1, 0), 3.0, TOL);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 2, 1, 0), 1.0, TOL);     /* no score given: 1 */
    CU_ASSERT_EQUAL(count_nonzero(&g, 0), 6);

    CU_ASSERT_EQUAL(g.index[1], 5);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 1, 0, 1, 1), 5.0, TOL);     /* the row, merged */
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 1, 1, 1, 1), 6.0, TOL);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 1, 0, 0, 0), 1.0, TOL);     /* not the late row's 9 */
    CU_ASSERT_EQUAL(g.index[2], 6);
    CU_ASSERT_EQUAL(count_nonzero(&g, 2), 0);

    CU_ASSERT_EQUAL(g.st.late_lines, 1);
    CU_ASSERT_EQUAL(g.st.missing_joints, 1 + 2);  /* joint 2 at 4; person 1 at 5 has one */
    CU_ASSERT_EQUAL_FATAL(g.w.n, 1);
    check_warning(&g.w, 0, "whole.jsonl", 4, "frame 5 was already returned");
}

/* A whole-frame line is returned before any later line arrives. The writer stays open, so a
 * source that waited for the next frame would block here (the alarm ends the run then). */
static void test_whole_frame_line_is_returned_without_waiting(void)
{
    static const char first[] = "{\"frame\": 0, \"persons\": [[[1, 2], [3, 4]]]}\n";
    static const char second[] = "{\"frame\": 1, \"person\": 0, \"joint\": 1, \"x\": 5, "
                                 "\"y\": 6}";
    int p[2];
    CU_ASSERT_FATAL(pipe(p) == 0);
    int saved = dup(STDIN_FILENO);
    CU_ASSERT_FATAL(saved >= 0 && dup2(p[0], STDIN_FILENO) == STDIN_FILENO);
    close(p[0]);
    CU_ASSERT_FATAL(write(p[1], first, strlen(first)) == (ssize_t)strlen(first));

    frames g;
    skelrows_src *s = open_src(layout(SKELROWS_JSONL, 2, 0, 2, 1), "-", &g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    float f[4];
    int64_t index;
    cin_err err;
    unsigned left = alarm(10);
    CU_ASSERT_EQUAL(skelrows_read(s, f, &index, &err), 1);
    CU_ASSERT_EQUAL(index, 0);
    CU_ASSERT_DOUBLE_EQUAL(f[3], 4.0, TOL);             /* y of joint 1: [1][1][0] */
    CU_ASSERT_FATAL(write(p[1], second, strlen(second)) == (ssize_t)strlen(second));
    close(p[1]);
    CU_ASSERT_EQUAL(skelrows_read(s, f, &index, &err), 1);
    CU_ASSERT_EQUAL(index, 1);
    CU_ASSERT_DOUBLE_EQUAL(f[1], 5.0, TOL);
    CU_ASSERT_EQUAL(skelrows_read(s, f, &index, &err), 0);
    alarm(left);
    skelrows_close(s);

    CU_ASSERT(dup2(saved, STDIN_FILENO) == STDIN_FILENO);
    close(saved);
}

/* ---- CSV, optional fields --------------------------------------------------------------- */

static void test_csv_rows_are_read_by_position_without_header(void)
{
    static const char text[] = "0,0,0,1,2\n"
                               "0,0,1,1,2,3\n"
                               "0, 1 ,2, 1 , 2 , 3 , 0.5\n"
                               "1,0,0,4,5,6,0.25\n";
    frames g;
    read_string("plain.csv", text, layout(SKELROWS_CSV, 3, 1, 3, 2), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 2);
    check_joint4(&g, 0, 0, 0, 1.0f, 2.0f, 0.0f, 1.0f);
    check_joint4(&g, 0, 1, 0, 1.0f, 2.0f, 3.0f, 1.0f);
    check_joint4(&g, 0, 2, 1, 1.0f, 2.0f, 3.0f, 0.5f);
    check_joint4(&g, 1, 0, 0, 4.0f, 5.0f, 6.0f, 0.25f);
    CU_ASSERT_EQUAL(g.st.skipped, 0);
    CU_ASSERT_EQUAL(g.w.n, 0);
}

static void test_csv_header_names_the_columns(void)
{
    /* 2-D with a score: the header says the sixth column is the score, not z */
    static const char named[] = "\xEF\xBB\xBF" "Frame, Person,Joint,X,Y,Score,ts\n"
                                "0,0,1,0.5,0.25,0.75,123.4\n"
                                "0,0,0,1,1,1\n";
    static const char unnamed[] = "f,p,j,a,b\n0,0,0,1,2\n";
    frames g;
    read_string("named.csv", named, layout(SKELROWS_CSV, 2, 1, 2, 1), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 0, 1, 0), 0.5, TOL);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 1, 1, 0), 0.25, TOL);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 2, 1, 0), 0.75, TOL);
    CU_ASSERT_EQUAL(g.st.skipped, 1);
    CU_ASSERT_EQUAL_FATAL(g.w.n, 1);
    check_warning(&g.w, 0, "named.csv", 3, "expected 7 fields as the header names, got 6");

    read_string("unnamed.csv", unnamed, layout(SKELROWS_CSV, 2, 0, 2, 1), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 1, 0, 0), 2.0, TOL);
    CU_ASSERT_EQUAL(g.st.skipped, 0);
    CU_ASSERT_EQUAL_FATAL(g.w.n, 1);
    check_warning(&g.w, 0, "unnamed.csv", 1, "the header does not name frame, person");
}

static void test_z_and_score_are_optional(void)
{
    static const char text[] =
        "{\"frame\": 0, \"person\": 0, \"joint\": 0, \"x\": 1, \"y\": 2}\n"
        "{\"frame\": 0, \"person\": 0, \"joint\": 1, \"x\": 1, \"y\": 2, \"z\": 3}\n"
        "{\"frame\": 0, \"person\": 0, \"joint\": 2, \"x\": 1, \"y\": 2, \"score\": 0.5}\n";
    frames g;
    read_string("optional.jsonl", text, layout(SKELROWS_JSONL, 3, 1, 3, 1), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    check_joint4(&g, 0, 0, 0, 1.0f, 2.0f, 0.0f, 1.0f);
    check_joint4(&g, 0, 1, 0, 1.0f, 2.0f, 3.0f, 1.0f);
    check_joint4(&g, 0, 2, 0, 1.0f, 2.0f, 0.0f, 0.5f);
    CU_ASSERT_EQUAL(g.masked, 0);

    read_string("optional2d.jsonl", text, layout(SKELROWS_JSONL, 2, 0, 3, 1), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 0, 1, 0), 1.0, TOL);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 1, 1, 0), 2.0, TOL);
    CU_ASSERT_EQUAL(count_nonzero(&g, 0), 6);
}

/* ---- masking ---------------------------------------------------------------------------- */

static void test_missing_and_nonfinite_joints_are_masked_and_counted(void)
{
    static const char jsonl[] =
        "{\"frame\": 0, \"person\": 0, \"joint\": 0, \"x\": null, \"y\": 2, \"z\": 3, "
        "\"score\": 0.9}\n"
        "{\"frame\": 0, \"person\": 0, \"joint\": 1, \"x\": 1, \"y\": 2, \"z\": 3, "
        "\"score\": null}\n"
        "{\"frame\": 0, \"person\": 1, \"joint\": 2, \"x\": 1e300, \"y\": 2}\n";
    static const char csv[] = "1,0,0,nan,1,1,1\n"
                              "1,0,1,1,2,inf,1\n"
                              "1,0,2,,2,3,0.5\n"
                              "1,1,0,1,2,3,-nan\n";
    frames g;
    read_string("mask.jsonl", jsonl, layout(SKELROWS_JSONL, 3, 1, 3, 2), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    check_joint4(&g, 0, 0, 0, 0.0f, 0.0f, 0.0f, 0.0f);      /* a null coordinate: all 0 */
    check_joint4(&g, 0, 1, 0, 1.0f, 2.0f, 3.0f, 0.0f);      /* a null score: the score 0 */
    check_joint4(&g, 0, 2, 1, 0.0f, 0.0f, 0.0f, 0.0f);      /* beyond the float range */
    CU_ASSERT_EQUAL(g.st.nonfinite, 3);
    CU_ASSERT_EQUAL(g.st.missing_joints, 1 + 2);
    CU_ASSERT_EQUAL(g.masked, 6);
    CU_ASSERT_EQUAL(g.st.skipped, 0);

    read_string("mask.csv", csv, layout(SKELROWS_CSV, 3, 1, 3, 2), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    CU_ASSERT_EQUAL(g.index[0], 1);
    CU_ASSERT_EQUAL(count_nonzero(&g, 0), 3);               /* person 1: x, y, z; score 0 */
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 2, 0, 1), 3.0, TOL);
    CU_ASSERT_EQUAL(g.st.nonfinite, 4);
    CU_ASSERT_EQUAL(g.st.missing_joints, 2);
    CU_ASSERT_EQUAL(g.st.skipped, 0);
}

static void test_persons_beyond_m_are_dropped_and_counted(void)
{
    static const char text[] =
        "{\"frame\": 0, \"person\": 0, \"joint\": 0, \"x\": 1, \"y\": 1}\n"
        "{\"frame\": 1, \"person\": 2, \"joint\": 0, \"x\": 1, \"y\": 1}\n"
        "{\"frame\": 1, \"person\": 5, \"joint\": 1, \"x\": 1, \"y\": 1}\n"
        "{\"frame\": 2, \"persons\": [null, null, [[1, 1], [1, 1], null]]}\n";
    frames g;
    read_string("extra.jsonl", text, layout(SKELROWS_JSONL, 2, 0, 3, 2), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 3);
    CU_ASSERT_EQUAL(g.index[1], 1);
    CU_ASSERT_EQUAL(count_nonzero(&g, 1), 0);               /* seen, nobody in it */
    CU_ASSERT_EQUAL(count_nonzero(&g, 2), 0);
    CU_ASSERT_EQUAL(g.st.extra_persons, 4);
    CU_ASSERT_EQUAL(g.st.missing_joints, 2);
    CU_ASSERT_EQUAL(g.masked, 6);
    CU_ASSERT_EQUAL_FATAL(g.w.n, 1);                        /* reported once */
    check_warning(&g.w, 0, "extra.jsonl", 2, "person 2 is beyond the 2 the model takes");
}

/* ---- frame order and gaps --------------------------------------------------------------- */

static void test_backwards_or_repeated_frame_is_dropped_with_a_warning(void)
{
    static const char text[] =
        "{\"frame\": 5, \"person\": 0, \"joint\": 0, \"x\": 1, \"y\": 1}\n"
        "{\"frame\": 6, \"person\": 0, \"joint\": 0, \"x\": 2, \"y\": 2}\n"
        "{\"frame\": 5, \"person\": 0, \"joint\": 1, \"x\": 9, \"y\": 9}\n"
        "{\"frame\": 5, \"person\": 0, \"joint\": 2, \"x\": 9, \"y\": 9}\n"
        "{\"frame\": 6, \"person\": 0, \"joint\": 1, \"x\": 3, \"y\": 3}\n"
        "{\"frame\": 7, \"person\": 0, \"joint\": 0, \"x\": 4, \"y\": 4}\n"
        "{\"frame\": 6, \"person\": 0, \"joint\": 0, \"x\": 9, \"y\": 9}\n"
        "{\"frame\": 7, \"persons\": [[[5, 5], [5, 5], [5, 5]]]}\n"
        "{\"frame\": 7, \"person\": 0, \"joint\": 0, \"x\": 9, \"y\": 9}\n";
    frames g;
    read_string("late.jsonl", text, layout(SKELROWS_JSONL, 2, 0, 3, 1), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 3);
    CU_ASSERT_EQUAL(g.index[0], 5);
    CU_ASSERT_EQUAL(g.index[1], 6);
    CU_ASSERT_EQUAL(g.index[2], 7);
    CU_ASSERT_EQUAL(count_nonzero(&g, 0), 2);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 1, 0, 0, 0), 2.0, TOL);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 1, 0, 1, 0), 3.0, TOL);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 2, 0, 0, 0), 5.0, TOL);
    CU_ASSERT_EQUAL(g.st.late_lines, 4);
    CU_ASSERT_EQUAL(g.st.skipped, 0);
    CU_ASSERT_EQUAL_FATAL(g.w.n, 3);
    check_warning(&g.w, 0, "late.jsonl", 3, "frame index goes back from 6 to 5");
    check_warning(&g.w, 1, "late.jsonl", 7, "frame index goes back from 7 to 6");
    check_warning(&g.w, 2, "late.jsonl", 9, "frame 7 was already returned");
}

/* One wrong index far ahead (or a sender that restarts its count) does not block the stream:
 * an index more than max_gap below the current one starts counting again. */
static void test_an_index_far_back_is_taken_as_counting_again(void)
{
    static const char text[] = "0,0,0,1,1\n1,0,0,2,2\n5000,0,0,3,3\n2,0,0,4,4\n3,0,0,5,5\n"
                               "1,0,0,9,9\n";
    skelrows_opts o = layout(SKELROWS_CSV, 2, 0, 1, 1);
    frames g;
    read_string("restart.csv", text, o, &g);
    const int64_t want[] = {0, 1, 5000, 2, 3};
    CU_ASSERT_EQUAL_FATAL(g.n, 5);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(g.index[i], want[i]);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 3, 0, 0, 0), 4.0, TOL);
    CU_ASSERT_EQUAL(g.st.restarts, 1);
    CU_ASSERT_EQUAL(g.st.unfilled, 4998);
    CU_ASSERT_EQUAL(g.st.late_lines, 1);        /* 1 after 3: a small step back is late */
    CU_ASSERT_EQUAL_FATAL(g.w.n, 3);
    check_warning(&g.w, 1, "restart.csv", 4,
                  "frame index goes back from 5000 to 2, more than 1000 frames: taken as");
}

static void test_gaps_are_filled_with_zero_frames_up_to_max_gap(void)
{
    static const char text[] = "3,0,0,1,1\n7,0,0,2,2\n8,0,0,3,3\n";
    skelrows_opts o = layout(SKELROWS_CSV, 2, 0, 1, 1);
    frames g;
    read_string("gap.csv", text, o, &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 6);
    for (int i = 0; i < 6; i++)
        CU_ASSERT_EQUAL(g.index[i], 3 + i);
    CU_ASSERT_EQUAL(count_nonzero(&g, 1) + count_nonzero(&g, 2) + count_nonzero(&g, 3), 0);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 4, 0, 0, 0), 2.0, TOL);
    CU_ASSERT_EQUAL(g.st.gap_frames, 3);
    CU_ASSERT_EQUAL(g.st.frames, 6);
    CU_ASSERT_EQUAL(g.w.n, 0);

    o.max_gap = 2;
    read_string("gap2.csv", text, o, &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 3);
    CU_ASSERT_EQUAL(g.index[1], 7);
    CU_ASSERT_EQUAL(g.st.unfilled, 3);
    CU_ASSERT_EQUAL_FATAL(g.w.n, 1);
    check_warning(&g.w, 0, "gap2.csv", 2, "frame index jumps from 3 to 7; the 3 frames between "
                  "are not filled (max_gap 2)");

    o.max_gap = -1;
    read_string("gapnone.csv", text, o, &g);
    CU_ASSERT_EQUAL(g.n, 3);
    CU_ASSERT_EQUAL(g.st.unfilled, 3);
    CU_ASSERT_EQUAL(g.w.n, 0);
}

static void test_gap_bound_defaults_to_1000(void)
{
    static const char text[] = "0,0,0,1,1\n1001,0,0,1,1\n2003,0,0,1,1\n";
    frames g;
    read_string("gapbound.csv", text, layout(SKELROWS_CSV, 2, 0, 1, 1), &g);
    CU_ASSERT_EQUAL(g.n, 1 + 1000 + 1 + 1);
    CU_ASSERT_EQUAL(g.st.gap_frames, 1000);
    CU_ASSERT_EQUAL(g.st.unfilled, 1001);
    CU_ASSERT_EQUAL_FATAL(g.w.n, 1);
    check_warning(&g.w, 0, "gapbound.csv", 3, "frame index jumps from 1001 to 2003");
}

/* ---- malformed lines -------------------------------------------------------------------- */

static void test_malformed_jsonl_lines_are_skipped_with_line_numbers(void)
{
    static const char text[] =
        "{\"frame\": 0, \"person\": 0, \"joint\": 0, \"x\": 1, \"y\": 1}\n"
        "{\"frame\": 0, \"person\": 0, \"joint\": 0, \"x\": 1, \"y\": 1\n"
        "[1, 2]\n"
        "{\"person\": 0, \"joint\": 0, \"x\": 1, \"y\": 1}\n"
        "{\"frame\": 0, \"person\": -1, \"joint\": 0, \"x\": 1, \"y\": 1}\n"
        "{\"frame\": 0, \"person\": 0, \"joint\": 3, \"x\": 1, \"y\": 1}\n"
        "{\"frame\": 0, \"person\": 0, \"joint\": 1.5, \"x\": 1, \"y\": 1}\n"
        "{\"frame\": 0, \"person\": 0, \"joint\": 1, \"x\": \"1\", \"y\": 1}\n"
        "{\"frame\": 0, \"person\": 0, \"joint\": 1, \"x\": 1}\n"
        "\n"
        "{\"frame\": 0, \"persons\": {\"a\": 1}}\n"
        "{\"frame\": 0, \"persons\": [[[1, 1], [1, 1]]]}\n"
        "{\"frame\": 0, \"persons\": [[[1, 1], [1, 1], [1, 1, 1, 1, 1]]]}\n"
        "{\"frame\": 0, \"persons\": [null, [[1, 1], \"a\", null]]}\n"
        "{\"frame\": 0, \"persons\": [[[1, true], null, null]]}\n"
        "{\"frame\": -2, \"person\": 0, \"joint\": 1, \"x\": 1, \"y\": 1}\n"
        "{\"frame\": 0, \"person\": 0, \"joint\": 1, \"x\": 2, \"y\": 2}\n";
    static const char *const want[] = {
        "invalid JSON",
        "expected an object, got an array",
        "no \"frame\"",
        "\"person\" is not an integer >= 0",
        "joint 3 is out of range 0..2",
        "\"joint\" is not an integer >= 0",
        "\"x\" is a string, not a number",
        "no \"y\"",
        "empty line",
        "\"persons\" is an object, not an array",
        "persons[0] has 2 joints, expected 3",
        "persons[0][2] has 5 numbers, expected 2 to 4",
        "persons[1][1] is a string, not [x, y(, z(, score))]",
        "persons[0][0][1] is a boolean, not a number",
        "\"frame\" is not an integer from 0 to 9223372036854775806",
    };
    frames g;
    read_string("bad.jsonl", text, layout(SKELROWS_JSONL, 2, 0, 3, 2), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    CU_ASSERT_EQUAL(count_nonzero(&g, 0), 4);   /* nothing of the bad whole frames */
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 0, 1, 0), 2.0, TOL);
    CU_ASSERT_EQUAL(g.st.skipped, 15);
    CU_ASSERT_EQUAL_FATAL(g.w.n, 15);
    for (int i = 0; i < 15; i++)
        check_warning(&g.w, i, "bad.jsonl", i + 2, want[i]);
}

static void test_malformed_csv_lines_are_skipped_with_line_numbers(void)
{
    static const char text[] = "0,0,0,1,1\n"
                               "0,0,x,1,1\n"
                               "0,0,3,1,1\n"
                               "0,-1,0,1,1\n"
                               "0,0,0,1,1,1,1,1\n"
                               "0,0,0,1\n"
                               "0,0,0,abc,1\n"
                               "0,0,0,1,2 junk\n"
                               "99999999999999999999,0,0,1,1\n"
                               "0,0,1.5,1,1\n"
                               "0,0,0\0,1,1\n"
                               "  \n"
                               "0,0,1,2,2\n";
    static const char *const want[] = {
        "field 3 (joint) \"x\" is not an integer >= 0",
        "joint 3 is out of range 0..2",
        "field 2 (person) \"-1\" is not an integer >= 0",
        "expected 5 to 7 fields (frame,person,joint,x,y[,z[,score]]), got 8",
        "expected 5 to 7 fields (frame,person,joint,x,y[,z[,score]]), got 4",
        "field 4 (x) \"abc\" is not a number",
        "field 5 (y) \"2 junk\" is not a number",
        "field 1 (frame) \"99999999999999999999\" is not an integer from 0 to "
        "9223372036854775806",
        "field 3 (joint) \"1.5\" is not an integer >= 0",
        "a NUL byte at column 6",
        "empty line",
    };
    frames g;
    read_text("bad.csv", text, sizeof text - 1, layout(SKELROWS_CSV, 2, 0, 3, 2), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    CU_ASSERT_EQUAL(count_nonzero(&g, 0), 4);
    CU_ASSERT_EQUAL(g.st.skipped, 11);
    CU_ASSERT_EQUAL_FATAL(g.w.n, 11);
    for (int i = 0; i < 11; i++)
        check_warning(&g.w, i, "bad.csv", i + 2, want[i]);
}

static void test_python_nan_and_infinity_tokens_are_masked(void)
{
    static const char text[] =
        "{\"frame\": 0, \"person\": 0, \"joint\": 0, \"x\": NaN, \"y\": 1, \"z\": 1}\n"
        "{\"frame\": 0, \"person\": 0, \"joint\": 1, \"x\": 1, \"y\": 2, \"z\": 3, "
        "\"score\": -Infinity}\n"
        "{\"tag\": \"a\\\\\", \"frame\": 1, \"persons\": [[[Infinity, 1, 1], [1, 2, 3, NaN], "
        "null]], \"note\": \"NaN\"}\n";
    frames g;
    read_string("py.jsonl", text, layout(SKELROWS_JSONL, 3, 1, 3, 1), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 2);
    check_joint4(&g, 0, 0, 0, 0.0f, 0.0f, 0.0f, 0.0f);
    check_joint4(&g, 0, 1, 0, 1.0f, 2.0f, 3.0f, 0.0f);
    check_joint4(&g, 1, 0, 0, 0.0f, 0.0f, 0.0f, 0.0f);
    check_joint4(&g, 1, 1, 0, 1.0f, 2.0f, 3.0f, 0.0f);
    CU_ASSERT_EQUAL(g.st.nonfinite, 4);
    CU_ASSERT_EQUAL(g.st.missing_joints, 2);
    CU_ASSERT_EQUAL(g.st.skipped, 0);
}

static void test_last_line_without_newline_is_read_or_reported(void)
{
    static const char csv[] = "0,0,0,1,2\r\n0,0,1,3,4";
    static const char jsonl[] =
        "{\"frame\": 0, \"person\": 0, \"joint\": 0, \"x\": 1, \"y\": 2}\n"
        "{\"frame\": 1, \"person\": 0, \"joint\": 0, \"x\": 3, \"y\": 4}";
    static const char cut[] =
        "{\"frame\": 0, \"person\": 0, \"joint\": 0, \"x\": 1, \"y\": 2}\n"
        "{\"frame\": 1, \"person\": 0, \"jo";
    frames g;
    read_string("last.csv", csv, layout(SKELROWS_CSV, 2, 0, 2, 1), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 1, 1, 0), 4.0, TOL);
    CU_ASSERT_EQUAL(g.w.n, 0);

    read_string("last.jsonl", jsonl, layout(SKELROWS_JSONL, 2, 0, 2, 1), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 2);
    CU_ASSERT_EQUAL(g.index[1], 1);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 1, 1, 0, 0), 4.0, TOL);

    read_string("cut.jsonl", cut, layout(SKELROWS_JSONL, 2, 0, 2, 1), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);                          /* frame 0 is not lost */
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 1, 0, 0), 2.0, TOL);
    CU_ASSERT_EQUAL(g.st.skipped, 1);
    CU_ASSERT_EQUAL_FATAL(g.w.n, 1);
    check_warning(&g.w, 0, "cut.jsonl", 2, "invalid JSON");
}

static void test_huge_numbers_are_masked_or_reported(void)
{
    static const char jsonl[] =
        "{\"frame\": 0, \"person\": 0, \"joint\": 0, \"x\": 1e300, \"y\": 1}\n"
        "{\"frame\": 0, \"person\": 0, \"joint\": 1, \"x\": 0.5, \"y\": -3.4e38}\n"
        "{\"frame\": 0, \"person\": 1, \"joint\": 1, \"x\": 3.5e38, \"y\": 1}\n"
        "{\"frame\": 0, \"person\": 0, \"joint\": 1, \"x\": 1e400, \"y\": 1}\n"
        "{\"frame\": 0, \"person\": 1000000000000, \"joint\": 0, \"x\": 1, \"y\": 1}\n"
        "{\"frame\": 99999999999999999999, \"person\": 0, \"joint\": 0, \"x\": 1, \"y\": 1}\n"
        "{\"frame\": 9223372036854775807, \"person\": 0, \"joint\": 0, \"x\": 1, \"y\": 1}\n"
        "{\"frame\": 9223372036854775806, \"person\": 0, \"joint\": 0, \"x\": 1e-45, "
        "\"y\": 3e38}\n";
    static const char csv[] = "0,0,0,1e39,-1e39\n0,0,1,0x1p-3,1\n";
    frames g;
    read_string("huge.jsonl", jsonl, layout(SKELROWS_JSONL, 2, 0, 2, 2), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 2);
    CU_ASSERT_EQUAL(count_nonzero(&g, 0), 2);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 1, 1, 0), -3.4e38, 1e32);
    CU_ASSERT_EQUAL(g.index[1], LLONG_MAX - 1);
    CU_ASSERT(at(&g, 1, 0, 0, 0) > 0.0f);                  /* the smallest denormal */
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 1, 1, 0, 0), 3e38, 1e32);
    CU_ASSERT_EQUAL(g.st.nonfinite, 2);
    CU_ASSERT_EQUAL(g.st.extra_persons, 1);
    CU_ASSERT_EQUAL(g.st.skipped, 3);
    CU_ASSERT_EQUAL(g.st.unfilled, LLONG_MAX - 2);
    CU_ASSERT_EQUAL_FATAL(g.w.n, 5);
    check_warning(&g.w, 0, "huge.jsonl", 4, "invalid JSON");
    check_warning(&g.w, 1, "huge.jsonl", 5, "person 1000000000000 is beyond");
    check_warning(&g.w, 2, "huge.jsonl", 6, "invalid JSON");
    check_warning(&g.w, 3, "huge.jsonl", 7, "\"frame\" is not an integer from 0");
    check_warning(&g.w, 4, "huge.jsonl", 8, "frame index jumps from 0 to 9223372036854775806");

    read_string("huge.csv", csv, layout(SKELROWS_CSV, 2, 0, 2, 1), &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    CU_ASSERT_EQUAL(g.st.nonfinite, 1);
    CU_ASSERT_DOUBLE_EQUAL(at(&g, 0, 0, 1, 0), 0.125, TOL);
}

static void test_empty_input_gives_no_frame(void)
{
    frames g;
    read_string("empty.jsonl", "", layout(SKELROWS_JSONL, 2, 0, 2, 1), &g);
    CU_ASSERT_EQUAL(g.n, 0);
    CU_ASSERT_EQUAL(g.w.n, 0);
    read_string("header.csv", "frame,person,joint,x,y\n", layout(SKELROWS_CSV, 2, 0, 2, 1), &g);
    CU_ASSERT_EQUAL(g.n, 0);
    CU_ASSERT_EQUAL(g.st.skipped, 0);
    read_string("blank.csv", "\n \r\n", layout(SKELROWS_CSV, 2, 0, 2, 1), &g);
    CU_ASSERT_EQUAL(g.n, 0);
    CU_ASSERT_EQUAL(g.st.skipped, 2);
}

/* ---- stdin and sockets ------------------------------------------------------------------ */

enum { STREAM_FRAMES = 200, STREAM_V = 25, STREAM_M = 2, STREAM_CH = 4 };
#define STREAM_LEN (STREAM_CH * STREAM_V * STREAM_M)

/* A value for every channel, joint and person; person 1 appears in every third frame only. */
static float stream_value(int f, int ch, int j, int p)
{
    if (p == 1 && f % 3)
        return 0.0f;
    return ch == 3 ? 0.5f + (float)j / 64.0f : (float)(f * 0.125 + j * 0.5 + p * 10 + ch * 100);
}

static void put_joint_row(FILE *m, int f, int j, int p)
{
    fprintf(m, "{\"frame\": %d, \"person\": %d, \"joint\": %d, \"x\": %.9g, \"y\": %.9g, "
            "\"z\": %.9g, \"score\": %.9g}\n", f, p, j, (double)stream_value(f, 0, j, p),
            (double)stream_value(f, 1, j, p), (double)stream_value(f, 2, j, p),
            (double)stream_value(f, 3, j, p));
}

static void put_whole_frame(FILE *m, int f)
{
    fprintf(m, "{\"frame\": %d, \"persons\": [", f);
    for (int p = 0; p < (f % 3 ? 1 : STREAM_M); p++) {
        fputs(p ? "], [" : "[", m);
        for (int j = 0; j < STREAM_V; j++)
            fprintf(m, "%s[%.9g, %.9g, %.9g, %.9g]", j ? ", " : "",
                    (double)stream_value(f, 0, j, p), (double)stream_value(f, 1, j, p),
                    (double)stream_value(f, 2, j, p), (double)stream_value(f, 3, j, p));
    }
    fputs("]]}\n", m);
}

/* Even frames as joint rows (persons interleaved), odd frames as whole-frame lines. */
static char *stream_text(size_t *len)
{
    char *text = NULL;
    FILE *m = open_memstream(&text, len);
    for (int f = 0; f < STREAM_FRAMES; f++) {
        if (f % 2) {
            put_whole_frame(m, f);
            continue;
        }
        for (int j = 0; j < STREAM_V; j++)
            for (int p = 0; p < (f % 3 ? 1 : STREAM_M); p++)
                put_joint_row(m, f, j, p);
    }
    fclose(m);
    return text;
}

/* What a writer thread sends in pieces of `chunk` bytes; it closes its end when done. */
typedef struct sender {
    int fd;
    int listen;                 /* 1: fd listens; send to the first connection accepted */
    const char *data;
    size_t len, chunk;
} sender;

static void *send_all(void *arg)
{
    sender *sd = arg;
    sigset_t pipe_signal;       /* a reader gone early gives EPIPE, not the end of the runner */
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_signal, NULL);
    int fd = sd->listen ? accept(sd->fd, NULL, NULL) : sd->fd;
    struct timespec pause = {0, 100000};
    for (size_t off = 0, k = 0; fd >= 0 && off < sd->len; k++) {
        size_t n = sd->len - off < sd->chunk ? sd->len - off : sd->chunk;
        ssize_t w = write(fd, sd->data + off, n);
        if (w <= 0)
            break;
        off += (size_t)w;
        if (k % 32 == 0)
            nanosleep(&pause, NULL);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* Reads every frame of uri while sd runs in a thread and compares each with stream_value. */
static void check_stream(const char *uri, sender *sd)
{
    pthread_t th;
    CU_ASSERT_FATAL(pthread_create(&th, NULL, send_all, sd) == 0);
    frames g;
    skelrows_src *s = open_src(layout(SKELROWS_JSONL, 3, 1, STREAM_V, STREAM_M), uri, &g);
    if (!s) {
        if (sd->listen)
            shutdown(sd->fd, SHUT_RDWR);
        pthread_join(th, NULL);
        return;
    }
    float got[STREAM_LEN];
    int64_t index;
    cin_err err;
    int n = 0, wrong = 0;
    while (skelrows_read(s, got, &index, &err) == 1) {
        for (int ch = 0; ch < STREAM_CH; ch++)
            for (int j = 0; j < STREAM_V; j++)
                for (int p = 0; p < STREAM_M; p++)
                    wrong += got[(ch * STREAM_V + j) * STREAM_M + p] !=
                             stream_value(n, ch, j, p);
        wrong += index != n++;
    }
    CU_ASSERT_EQUAL(n, STREAM_FRAMES);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(skelrows_masked(s), 0);
    CU_ASSERT_EQUAL(g.w.n, 0);
    skelrows_close(s);
    pthread_join(th, NULL);
}

static void test_stdin_pipe_delivers_every_frame(void)
{
    size_t len;
    char *text = stream_text(&len);
    int p[2];
    CU_ASSERT_FATAL(pipe(p) == 0);
    int saved = dup(STDIN_FILENO);
    CU_ASSERT_FATAL(saved >= 0 && dup2(p[0], STDIN_FILENO) == STDIN_FILENO);
    close(p[0]);
    sender sd = {.fd = p[1], .data = text, .len = len, .chunk = 4093};
    check_stream("-", &sd);
    CU_ASSERT(dup2(saved, STDIN_FILENO) == STDIN_FILENO);
    close(saved);
    free(text);
}

static void test_tcp_socket_delivers_every_frame(void)
{
    size_t len;
    char *text = stream_text(&len);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sa_len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 1) == 0 &&
                    getsockname(fd, (struct sockaddr *)&sa, &sa_len) == 0);
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", ntohs(sa.sin_port));
    sender sd = {.fd = fd, .listen = 1, .data = text, .len = len, .chunk = 777};
    check_stream(uri, &sd);
    close(fd);
    free(text);
}

/* What a UDP sender thread sends: each line of data as a datagram of its own, without its
 * newline, then a row of frame `last` so the reader is given the frame before it. */
typedef struct dgram_sender {
    int port, last;
    const char *data;
    size_t len;
} dgram_sender;

static void *send_datagrams(void *arg)
{
    dgram_sender *sd = arg;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sd->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct timespec pause = {0, 1000000};
    const char *line = sd->data, *end = sd->data + sd->len;
    for (int k = 0; fd >= 0 && line < end; k++) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(end - line);
        sendto(fd, line, n, 0, (struct sockaddr *)&to, sizeof to);
        line += n + 1;
        if (k % 8 == 0)
            nanosleep(&pause, NULL);
    }
    char last[96];
    int n = snprintf(last, sizeof last, "{\"frame\": %d, \"person\": 0, \"joint\": 0, "
                     "\"x\": 0, \"y\": 0}", sd->last);
    if (fd >= 0) {
        sendto(fd, last, (size_t)n, 0, (struct sockaddr *)&to, sizeof to);
        close(fd);
    }
    return NULL;
}

/* A free UDP port on the loopback address (bound, read and released). */
static int free_udp_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sa_len = sizeof sa;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
             getsockname(fd, (struct sockaddr *)&sa, &sa_len) == 0;
    if (fd >= 0)
        close(fd);
    return ok ? ntohs(sa.sin_port) : -1;
}

/* A datagram source never ends: the test reads the frames it expects and stops. */
static void test_udp_datagrams_deliver_every_frame(void)
{
    size_t len;
    char *text = stream_text(&len);
    int port = free_udp_port();
    CU_ASSERT_FATAL(port > 0);
    char uri[64];
    snprintf(uri, sizeof uri, "udp://127.0.0.1:%d", port);
    frames g;
    skelrows_src *s = open_src(layout(SKELROWS_JSONL, 3, 1, STREAM_V, STREAM_M), uri, &g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    dgram_sender sd = {.port = port, .last = STREAM_FRAMES, .data = text, .len = len};
    pthread_t th;
    CU_ASSERT_FATAL(pthread_create(&th, NULL, send_datagrams, &sd) == 0);
    float got[STREAM_LEN];
    int64_t index;
    int n = 0, wrong = 0;
    while (n < STREAM_FRAMES && skelrows_read(s, got, &index, NULL) == 1) {
        for (int ch = 0; ch < STREAM_CH; ch++)
            for (int j = 0; j < STREAM_V; j++)
                for (int p = 0; p < STREAM_M; p++)
                    wrong += got[(ch * STREAM_V + j) * STREAM_M + p] !=
                             stream_value(n, ch, j, p);
        wrong += index != n++;
    }
    CU_ASSERT_EQUAL(n, STREAM_FRAMES);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(skelrows_skipped(s), 0);
    CU_ASSERT_EQUAL(g.w.n, 0);
    pthread_join(th, NULL);
    skelrows_close(s);
    free(text);
}

/* Through lines.h itself, with a 16-byte line bound: a longer datagram is dropped whole and
 * counted, an empty one is no end, and datagrams without a newline end their line. */
static void test_udp_datagram_longer_than_a_line_is_dropped(void)
{
    int port = free_udp_port();
    CU_ASSERT_FATAL(port > 0);
    char uri[64];
    snprintf(uri, sizeof uri, "udp://127.0.0.1:%d", port);
    warnings w = {0};
    lines_opts o = {.uri = uri, .max_line = 16, .warn = collect, .warn_user = &w};
    lines_src *src;
    CU_ASSERT_EQUAL_FATAL(lines_open(&o, &src, NULL), 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    const char *sent[] = {"first", "", "a datagram of more than sixteen bytes", "two\nlines\n",
                          "last"};
    for (int i = 0; i < 5; i++)
        sendto(fd, sent[i], strlen(sent[i]), 0, (struct sockaddr *)&to, sizeof to);
    close(fd);
    const char *want[] = {"first", "two", "lines", "last"};
    char *line;
    size_t len;
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL_FATAL(lines_next(src, &line, &len, NULL), 1);
        CU_ASSERT_STRING_EQUAL(line, want[i]);
    }
    CU_ASSERT_EQUAL(lines_skipped(src), 1);
    CU_ASSERT(w.n == 1 && strstr(w.msg[0], "datagram longer than 16 bytes"));
    lines_close(src);
}

/* ---- options ---------------------------------------------------------------------------- */

/* skelrows_open must fail with `code` and a message that starts with the uri and holds
 * `field`. */
static void check_open_fails(skelrows_opts o, int code, const char *field)
{
    skelrows_src *s = (skelrows_src *)&o;
    cin_err err = {0};
    CU_ASSERT_EQUAL(skelrows_open(&o, &s, &err), code);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_EQUAL(err.code, code);
    CU_ASSERT_EQUAL(strncmp(err.msg, o.uri, strlen(o.uri)), 0);
    if (!strstr(err.msg, field))
        fprintf(stderr, "\n\"%s\" does not name %s\n", err.msg, field);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, field));
}

static void test_bad_options_are_invalid(void)
{
    skelrows_opts o = layout(SKELROWS_CSV, 3, 1, 25, 2);
    o.uri = "rows.csv";
    skelrows_opts bad = o;
    bad.c = 4;
    check_open_fails(bad, CIN_E_INVAL, "c is 4");
    bad = o;
    bad.with_score = 2;
    check_open_fails(bad, CIN_E_INVAL, "with_score");
    bad = o;
    bad.v = 0;
    check_open_fails(bad, CIN_E_INVAL, "v (joints)");
    bad = o;
    bad.m = SKELROWS_MAX_PERSONS + 1;
    check_open_fails(bad, CIN_E_INVAL, "m (persons)");
    bad = o;
    bad.format = (skelrows_format)7;
    check_open_fails(bad, CIN_E_INVAL, "format");
    bad = o;
    bad.uri = "no/such/rows.csv";
    check_open_fails(bad, CIN_E_IO, "cannot open");
    bad.uri = "tcp://localhost:9000";
    check_open_fails(bad, CIN_E_INVAL, "numeric");
    bad.uri = "udp://127.0.0.1";
    check_open_fails(bad, CIN_E_INVAL, "udp://HOST:PORT");
    skelrows_close(NULL);
}

/* ---- normalisation ---------------------------------------------------------------------- */

enum { NV = 4, NM = 3 };

/* Sets joint j of person p in frame [4][NV][NM] to x, y, z and score. */
static void set_joint(float *f, int j, int p, float x, float y, float z, float score)
{
    const float v[4] = {x, y, z, score};
    for (int ch = 0; ch < 4; ch++)
        f[(ch * NV + j) * NM + p] = v[ch];
}

static float get(const float *f, int ch, int j, int p)
{
    return f[(ch * NV + j) * NM + p];
}

static void check_xyz(const float *f, int j, int p, float x, float y, float z)
{
    CU_ASSERT_DOUBLE_EQUAL(get(f, 0, j, p), x, TOL);
    CU_ASSERT_DOUBLE_EQUAL(get(f, 1, j, p), y, TOL);
    CU_ASSERT_DOUBLE_EQUAL(get(f, 2, j, p), z, TOL);
}

static void test_norm_centres_on_root_and_scales_by_bone(void)
{
    float f[4 * NV * NM] = {0};
    set_joint(f, 0, 0, 1, 2, 3, 0.5f);          /* root */
    set_joint(f, 1, 0, 1, 2, 5, 0.5f);          /* bone 0-1: length 2 */
    set_joint(f, 2, 0, 3, 2, 3, 0.5f);          /* joint 3 missing */
    set_joint(f, 1, 2, 4, 4, 4, 0.25f);         /* person 2 without its root */
    skelnorm_opts o = {.c = 3, .with_score = 1, .v = NV, .m = NM, .root = 0, .bone_from = 0,
                       .bone_to = 1};
    cin_err err;
    CU_ASSERT_EQUAL_FATAL(skelnorm_check(&o, &err), 0);
    skelnorm_counts n = {0};
    skelnorm_apply(&o, f, &n);
    check_xyz(f, 0, 0, 0, 0, 0);
    check_xyz(f, 1, 0, 0, 0, 1);
    check_xyz(f, 2, 0, 1, 0, 0);
    check_xyz(f, 3, 0, 0, 0, 0);                /* missing stays 0, not -root */
    CU_ASSERT_DOUBLE_EQUAL(get(f, 3, 2, 0), 0.5, TOL);      /* score untouched */
    for (int j = 0; j < NV; j++)
        check_xyz(f, j, 1, 0, 0, 0);            /* absent person stays 0 */
    check_xyz(f, 1, 2, 4, 4, 4);                /* no root: left as it was */
    CU_ASSERT_DOUBLE_EQUAL(get(f, 3, 1, 2), 0.25, TOL);
    CU_ASSERT_EQUAL(n.uncentred, 1);
    CU_ASSERT_EQUAL(n.unscaled, 0);
}

static void test_norm_short_or_missing_bone_leaves_person_unscaled(void)
{
    float f[4 * NV * NM] = {0};
    set_joint(f, 0, 0, 1, 1, 1, 1);
    set_joint(f, 1, 0, 1, 1, 1 + 5e-7f, 1);     /* bone shorter than 1e-6 */
    set_joint(f, 2, 0, 2, 1, 1, 1);
    set_joint(f, 0, 1, 1, 1, 1, 1);             /* bone end 1 missing */
    set_joint(f, 2, 1, 1, 3, 1, 1);
    skelnorm_opts o = {.c = 3, .with_score = 1, .v = NV, .m = NM, .root = 0, .bone_from = 0,
                       .bone_to = 1};
    skelnorm_counts n = {0};
    skelnorm_apply(&o, f, &n);
    check_xyz(f, 2, 0, 1, 0, 0);
    check_xyz(f, 2, 1, 0, 2, 0);
    CU_ASSERT_EQUAL(n.unscaled, 2);
    CU_ASSERT_EQUAL(n.uncentred, 0);
}

static void test_norm_each_step_can_be_off(void)
{
    float f[4 * NV * NM] = {0};
    set_joint(f, 0, 0, 1, 2, 2, 1);
    set_joint(f, 1, 0, 1, 2, 6, 1);
    skelnorm_opts scale_only = {.c = 3, .with_score = 1, .v = NV, .m = NM, .root = -1,
                                .bone_from = 1, .bone_to = 0};
    skelnorm_counts n = {0};
    skelnorm_apply(&scale_only, f, &n);
    check_xyz(f, 0, 0, 0.25f, 0.5f, 0.5f);
    check_xyz(f, 1, 0, 0.25f, 0.5f, 1.5f);

    skelnorm_opts centre_only = scale_only;
    centre_only.root = 1;
    centre_only.bone_from = centre_only.bone_to = -1;
    skelnorm_apply(&centre_only, f, &n);
    check_xyz(f, 0, 0, 0, 0, -1);
    check_xyz(f, 1, 0, 0, 0, 0);
    CU_ASSERT_EQUAL(n.unscaled + n.uncentred, 0);
}

static void test_norm_2d_with_score_leaves_the_score(void)
{
    /* [3][2][1]: x, y, score of two joints of one person */
    float f[3 * 2] = {2, 2, 3, 5, 0.9f, 0.8f};
    skelnorm_opts o = {.c = 2, .with_score = 1, .v = 2, .m = 1, .root = 0, .bone_from = 0,
                       .bone_to = 1};
    skelnorm_counts n = {0};
    skelnorm_apply(&o, f, &n);
    const float want[6] = {0, 0, 0, 1, 0.9f, 0.8f};
    CU_ASSERT(tu_rel_err(f, want, 6) < TOL);
}

static void test_norm_check_rejects_bad_joints(void)
{
    skelnorm_opts o = {.c = 3, .with_score = 0, .v = NV, .m = NM, .root = 0, .bone_from = 0,
                       .bone_to = 1};
    cin_err err;
    skelnorm_opts bad = o;
    bad.root = NV;
    CU_ASSERT_EQUAL(skelnorm_check(&bad, &err), CIN_E_INVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "root is 4"));
    bad = o;
    bad.bone_to = 0;
    CU_ASSERT_EQUAL(skelnorm_check(&bad, &err), CIN_E_INVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "bone_from 0 and bone_to 0"));
    bad = o;
    bad.bone_to = -1;
    CU_ASSERT_EQUAL(skelnorm_check(&bad, &err), CIN_E_INVAL);
    bad = o;
    bad.c = 4;
    CU_ASSERT_EQUAL(skelnorm_check(&bad, &err), CIN_E_INVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "c 4"));
}

/* ---- pyjson ----------------------------------------------------------------------------- */

static void test_pyjson_tokens_outside_strings_become_null(void)
{
    static const char line[] = "[NaN, \"NaN\", \"a\\\\\", -Infinity, \"q\\\"NaN\", Infinity]";
    pyjson_buf b = {0};
    json_error_t jerr;
    json_t *root = pyjson_load(line, strlen(line), &b, &jerr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_EQUAL(json_array_size(root), 6);
    CU_ASSERT(json_is_null(json_array_get(root, 0)));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(root, 1)), "NaN");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(root, 2)), "a\\");
    CU_ASSERT(json_is_null(json_array_get(root, 3)));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(root, 4)), "q\"NaN");
    CU_ASSERT(json_is_null(json_array_get(root, 5)));
    json_decref(root);

    CU_ASSERT_PTR_NULL(pyjson_load("[NaNa]", 6, &b, &jerr));
    CU_ASSERT_PTR_NULL(pyjson_load("[1,", 3, &b, &jerr));
    json_t *obj = json_pack("{s:b}", "k", 1);
    CU_ASSERT_STRING_EQUAL(pyjson_type(json_object_get(obj, "k")), "a boolean");
    json_decref(obj);
    pyjson_buf_free(&b);
}

/* ---- registration ----------------------------------------------------------------------- */

typedef struct named_test {
    const char *name;
    CU_TestFunc fn;
} named_test;

static int add_suite(const char *name, const named_test *tests, size_t n)
{
    CU_pSuite s = CU_add_suite(name, NULL, NULL);
    if (!s)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}

#define TEST(name) {#name, test_##name}

int test_skelrows_register(void)
{
    static const named_test rows[] = {
        TEST(rows_are_grouped_into_frames),
        TEST(whole_frame_lines_merge_and_complete_their_frame),
        TEST(whole_frame_line_is_returned_without_waiting),
        TEST(csv_rows_are_read_by_position_without_header),
        TEST(csv_header_names_the_columns),
        TEST(z_and_score_are_optional),
        TEST(missing_and_nonfinite_joints_are_masked_and_counted),
        TEST(persons_beyond_m_are_dropped_and_counted),
        TEST(backwards_or_repeated_frame_is_dropped_with_a_warning),
        TEST(an_index_far_back_is_taken_as_counting_again),
        TEST(gaps_are_filled_with_zero_frames_up_to_max_gap),
        TEST(gap_bound_defaults_to_1000),
        TEST(malformed_jsonl_lines_are_skipped_with_line_numbers),
        TEST(malformed_csv_lines_are_skipped_with_line_numbers),
        TEST(python_nan_and_infinity_tokens_are_masked),
        TEST(last_line_without_newline_is_read_or_reported),
        TEST(huge_numbers_are_masked_or_reported),
        TEST(empty_input_gives_no_frame),
        TEST(stdin_pipe_delivers_every_frame),
        TEST(tcp_socket_delivers_every_frame),
        TEST(udp_datagrams_deliver_every_frame),
        TEST(udp_datagram_longer_than_a_line_is_dropped),
        TEST(bad_options_are_invalid),
    };
    static const named_test norm[] = {
        TEST(norm_centres_on_root_and_scales_by_bone),
        TEST(norm_short_or_missing_bone_leaves_person_unscaled),
        TEST(norm_each_step_can_be_off),
        TEST(norm_2d_with_score_leaves_the_score),
        TEST(norm_check_rejects_bad_joints),
    };
    static const named_test py[] = {
        TEST(pyjson_tokens_outside_strings_become_null),
    };
    if (add_suite("skelrows", rows, sizeof rows / sizeof rows[0]) ||
        add_suite("skelnorm", norm, sizeof norm / sizeof norm[0]))
        return -1;
    return add_suite("pyjson", py, sizeof py / sizeof py[0]);
}
