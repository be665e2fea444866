/* A source of feature vectors for the transformer models: one vector of `dim` floats per frame,
 * one record per line, from a file, stdin, a FIFO or a local socket.
 *
 *     feat_opts o = {.uri = "feats.jsonl", .dim = 512, .format = FEAT_JSONL};
 *     feat_src *src;
 *     if (feat_open(&o, &src, &err) != 0)
 *         return err.code;
 *     float vec[512];
 *     int64_t frame;
 *     int r;
 *     while ((r = feat_read(src, vec, &frame, &err)) == 1)
 *         step(frame, vec);                   // every value is finite
 *     feat_close(src);                        // r == 0: end of input; r < 0: err says why
 *
 * Records, one per line (a final line without a newline counts):
 *   FEAT_JSONL  {"frame": 12, "features": [0.1, ...]} ("frame" optional, other keys ignored)
 *               or a bare array [0.1, ...]
 *   FEAT_CSV    f0,...,f{dim-1} or frame,f0,...,f{dim-1}; spaces around fields are allowed,
 *               and a first line whose first field is not a number is a header and is skipped.
 * A malformed line (wrong count, a field that is not a number, invalid JSON, an empty line, a
 * line over FEAT_MAX_LINE bytes) is skipped, counted and reported through opts.warn. A value
 * that is NaN or infinite (JSON null, CSV nan/inf, or too large for a float) is set to 0 and
 * counted, so no NaN reaches a model. Python's json.dumps writes NaN, Infinity and -Infinity,
 * which are not JSON; they are read as null.
 *
 * A source is not thread-safe: one thread reads from it at a time. Different sources are
 * independent.
 */
#ifndef CIN_FEAT_H
#define CIN_FEAT_H

#include <stdatomic.h>
#include <stdint.h>

#include "error.h"

/* Longest line kept, in bytes without its newline; the read buffer never grows beyond it. */
#define FEAT_MAX_LINE (16 << 20)

typedef enum { FEAT_JSONL, FEAT_CSV } feat_format;

/* Receives one warning, "<uri>:<line>: <reason>" ("stdin" for "-"), without a newline. */
typedef void (*feat_warn_fn)(void *user, const char *msg);

typedef struct feat_opts {
    const char *uri;      /* a file path, "-" for stdin, "tcp://127.0.0.1:PORT" (connect),
                             "unix:/path/to.sock" (connect), "udp://127.0.0.1:PORT" (bind;
                             see lines.h); copied by feat_open */
    int dim;              /* floats per vector, >= 1 */
    feat_format format;
    feat_warn_fn warn;    /* told about each skipped line; may be NULL */
    void *warn_user;
    const atomic_int *stop;    /* as lines_opts.stop; may be NULL */
    double open_timeout;  /* as lines_opts: seconds to connect, 0: no limit */
    double read_timeout;  /* as lines_opts: seconds a wait for bytes may take, 0: no limit */
} feat_opts;

typedef struct feat_src feat_src;

/* Opens the file or connects to the socket named by o->uri; a FIFO blocks here until a writer
 * opens it. A TCP host must be a numeric address (no name lookup; IPv6 as [::1]). Returns 0,
 * CIN_E_INVAL (bad options or uri), CIN_E_IO (cannot open or connect) or CIN_E_NOMEM; the
 * message names the uri. *out is NULL on error; free a source with feat_close. */
int feat_open(const feat_opts *o, feat_src **out, cin_err *err);

/* Reads the next well-formed record. Returns 1 with the vector in vec[dim] and its frame index
 * in *frame (the one given, or one more than the previous record's, from 0); 0 at the end of
 * the input (and on every later call); CIN_E_IO if reading failed (also on later calls), or
 * CIN_E_NOMEM. vec is only meaningful when 1 is returned. Blocks until a line or the end
 * arrives. Lines are cut in one buffer and CSV rows are parsed without allocating; a JSON line
 * is parsed by jansson, which allocates its tree for each line. */
int feat_read(feat_src *s, float *vec, int64_t *frame, cin_err *err);

/* Malformed lines skipped so far. */
int64_t feat_skipped(const feat_src *s);

/* Values of returned records that were NaN, infinite or null and were set to 0, so far. */
int64_t feat_masked(const feat_src *s);

/* Closes the file or socket (stdin stays open) and frees s. NULL is allowed. */
void feat_close(feat_src *s);

#endif
