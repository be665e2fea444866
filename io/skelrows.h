/* A live source of skeleton frames for skeleton models (ST-GCN-style graph convolutions): rows
 * of joints, one per line, from a file, stdin, a FIFO or a local socket (see lines.h), gathered
 * into one frame float32 [C][V][M] per frame index, masked as training data is.
 *
 *     skelrows_opts o = {.uri = "tcp://127.0.0.1:9000", .format = SKELROWS_JSONL,
 *                        .c = 3, .with_score = 0, .v = 25, .m = 2};
 *     skelrows_src *src;
 *     if (skelrows_open(&o, &src, &err) != 0)
 *         return err.code;
 *     float *frame = malloc(sizeof(float) * skelrows_frame_len(src));
 *     int64_t t;
 *     int r;
 *     while ((r = skelrows_read(src, frame, &t, &err)) == 1)
 *         step(t, frame);                     // [3][25][2], every value finite
 *     skelrows_close(src);                    // r == 0: end of input; r < 0: err says why
 *
 * Lines (a final line without a newline counts):
 *   SKELROWS_JSONL  one joint: {"frame": 12, "person": 0, "joint": 3, "x": 0.1, "y": 0.2,
 *                   "z": 0.3, "score": 0.9}; "z" and "score" optional, keys in any order,
 *                   other keys ignored;
 *                   or a whole frame: {"frame": 12, "persons": [[[x, y, z, score], ...], ...]},
 *                   persons[p][j] being [x, y], [x, y, z] or [x, y, z, score], or null for a
 *                   joint not given; a person is an array of exactly V joints, or null.
 *   SKELROWS_CSV    frame,person,joint,x,y[,z[,score]]; blanks around fields are allowed. A
 *                   first line whose first field is not a number is a header: when it names
 *                   frame, person, joint, x and y once each (any case), columns are taken by
 *                   those names (with z and score if named; other columns ignored), else the
 *                   order above is used and a warning says so. An empty x, y, z or score field
 *                   is null, as pandas writes NaN.
 * "frame" (in both forms), "person" and "joint" are required integers from 0, joint < V; a
 * person >= M is not malformed (see masking). A malformed line (invalid JSON, a field that is
 * not a number, a missing key, an index out of range, a NUL byte, too many or too few fields,
 * an empty line, a line over SKELROWS_MAX_LINE bytes) is skipped, counted (skelrows_skipped)
 * and reported through opts.warn as "<uri>:<line>: <reason>".
 * Python's json.dumps NaN, Infinity and -Infinity tokens are read as null.
 *
 * Channels: x, y, then z when c == 3, then the score when with_score. A z not given is 0 (and
 * a z given is ignored when c == 2). A score not given is 1: the row says the joint is there.
 *
 * Frames. Rows are gathered by frame index. A frame of rows is returned when a row of a later
 * frame arrives, or at the end of the input (or before a read error, which the next call
 * reports), so one frame is held back until the next one starts; a whole-frame line is
 * returned as soon as it is read (and rows for its index already gathered are merged in).
 * Frames are returned in order of arrival with their own index. A line whose frame index is
 * lower than the frame being gathered, or not higher than the last returned, is dropped,
 * counted (late_lines) and reported once for each run of lines with that index; but an index
 * more than max_gap (SKELROWS_DEFAULT_MAX_GAP when max_gap < 0) below the current one is
 * taken as the source counting again (a restarted sender, or one wrong index before): the
 * frame being gathered is returned, the new index starts a frame, and the restart is counted
 * (restarts) and reported. A frame index seen only through persons >= M or "persons": []
 * still gives a frame, all zero.
 * Gaps: when the index jumps (3 -> 7), the missing frames (4, 5, 6) are returned as all-zero
 * frames with their indices, so the model's time stays aligned with the source's; a jump over
 * more than max_gap missing frames is reported and not filled (with max_gap < 0 none is,
 * and none is reported). Nothing is filled before the first index seen.
 *
 * Masking, as the training sets do (missing joints and persons are zeros in NTU RGB+D and
 * Kinetics-skeleton arrays): a joint not given for a person that is in the frame, a joint with
 * a NaN, infinite or null coordinate (all of its channels, score included, are 0), a score
 * alone that is not finite (the score is 0), and a joint of a person >= M (dropped) are set to
 * 0 and counted, one count a joint. Persons with no joint in a frame are zeros and not counted.
 * A joint given twice in a frame keeps the values of the last line.
 *
 * The frame is built in a buffer allocated at open; JSON lines are parsed by jansson, which
 * allocates its tree for each line. A source is not thread-safe: one thread reads from it at a
 * time. Different sources are independent.
 */
#ifndef CIN_SKELROWS_H
#define CIN_SKELROWS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Longest line kept, in bytes without its newline; the read buffer never grows beyond it. */
#define SKELROWS_MAX_LINE (4 << 20)
#define SKELROWS_MAX_JOINTS 1024
#define SKELROWS_MAX_PERSONS 64
/* The jump filled with zero frames when opts.max_gap is 0. */
#define SKELROWS_DEFAULT_MAX_GAP 1000

typedef enum { SKELROWS_JSONL, SKELROWS_CSV } skelrows_format;

/* Receives one warning, "<uri>:<line>: <reason>" ("stdin" for "-"), without a newline. */
typedef void (*skelrows_warn_fn)(void *user, const char *msg);

typedef struct skelrows_opts {
    const char *uri;        /* a file path, "-" for stdin, "tcp://127.0.0.1:PORT" (connect),
                               "unix:/path/to.sock" (connect); copied by skelrows_open */
    skelrows_format format;
    int c;                  /* coordinates the model takes: 2 (x, y) or 3 (x, y, z) */
    int with_score;         /* 1: one more channel, the confidence score */
    int v;                  /* joints, 1..SKELROWS_MAX_JOINTS */
    int m;                  /* persons, 1..SKELROWS_MAX_PERSONS */
    int max_gap;            /* missing frames filled at most; 0: SKELROWS_DEFAULT_MAX_GAP,
                               < 0: gaps are never filled */
    skelrows_warn_fn warn;  /* told about each skipped or dropped line; may be NULL */
    void *warn_user;
    const atomic_int *stop;    /* as lines_opts.stop; may be NULL */
    double open_timeout;    /* as lines_opts: seconds to connect, 0: no limit */
    double read_timeout;    /* as lines_opts: seconds a wait for bytes may take, 0: no limit */
} skelrows_opts;

/* What a source has seen so far. */
typedef struct skelrows_stats {
    int64_t frames;          /* returned, zero frames for gaps included */
    int64_t gap_frames;      /* all-zero frames returned for indices that were skipped */
    int64_t unfilled;        /* missing frames of jumps over max_gap, not returned */
    int64_t skipped;         /* malformed lines */
    int64_t late_lines;      /* lines dropped because their frame index went back or repeated */
    int64_t restarts;        /* times the frame index went back by more than max_gap */
    int64_t missing_joints;  /* joints not given for a person in the frame */
    int64_t nonfinite;       /* joints with a NaN, infinite or null value */
    int64_t extra_persons;   /* joints dropped because their person index was >= M */
} skelrows_stats;

typedef struct skelrows_src skelrows_src;

/* Checks the options, then opens the file or connects to the socket named by o->uri; a FIFO
 * blocks here until a writer opens it. A TCP host must be a numeric address (no name lookup).
 * Returns 0, CIN_E_INVAL (bad options or uri), CIN_E_IO (cannot open or connect) or
 * CIN_E_NOMEM; the message names the uri and the field. *out is NULL on error; free a source
 * with skelrows_close. */
int skelrows_open(const skelrows_opts *o, skelrows_src **out, cin_err *err);

/* Floats in one frame: (c + with_score) * v * m. */
size_t skelrows_frame_len(const skelrows_src *s);

/* Reads until the next frame is complete. Returns 1 with the frame in
 * frame[skelrows_frame_len(s)], laid out [channel][joint][person], and its index in *index;
 * 0 at the end of the input (and on every later call); CIN_E_IO if reading failed (also on
 * later calls), or CIN_E_NOMEM. frame is only written when 1 is returned. Blocks until a
 * frame is complete or the input ends. */
int skelrows_read(skelrows_src *s, float *frame, int64_t *index, cin_err *err);

/* Malformed lines skipped so far. */
int64_t skelrows_skipped(const skelrows_src *s);

/* Joints set to 0 or dropped so far: missing_joints + nonfinite + extra_persons. */
int64_t skelrows_masked(const skelrows_src *s);

/* Every count so far, in *out. */
void skelrows_get_stats(const skelrows_src *s, skelrows_stats *out);

/* Closes the file or socket (stdin stays open) and frees s. NULL is allowed. */
void skelrows_close(skelrows_src *s);

#endif
