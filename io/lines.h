/* Text lines from a file, stdin, a FIFO or a local socket, for the line-oriented sources
 * (feature vectors in feat.h, skeleton rows in skelrows.h): the transports, a bounded line
 * buffer, line numbers, and warnings that name the line.
 *
 *     lines_opts o = {.uri = "rows.csv", .max_line = 1 << 20, .warn = log_it};
 *     lines_src *src;
 *     if (lines_open(&o, &src, &err) != 0)
 *         return err.code;
 *     char *line;
 *     size_t len;
 *     int r;
 *     while ((r = lines_next(src, &line, &len, &err)) == 1)
 *         if (!parse(line, len))
 *             lines_skip(src, "not a row");   // "rows.csv:7: not a row", counted
 *     lines_close(src);                       // r == 0: end of input; r < 0: err says why
 *
 * A uri is a file path, "-" for stdin, "tcp://HOST:PORT" or "unix:/path/to.sock" (both
 * connect), or "udp://HOST:PORT" (binds that local address and reads the datagrams sent to it;
 * each datagram holds whole lines, and its end ends a line). Bytes are read through io_uring
 * (liburing; one read in flight, waited for) into one buffer that grows to the longest line
 * seen and never past max_line (plus two bytes); a longer line is dropped chunk by chunk,
 * counted and reported, never held whole; a longer datagram is dropped whole. Lines end at
 * "\n"; a "\r" before it and a UTF-8 byte order mark at the start of the first line are
 * removed; a last line without a newline counts.
 *
 * A source is not thread-safe: one thread reads from it at a time. Different sources are
 * independent.
 */
#ifndef CIN_LINES_H
#define CIN_LINES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Receives one warning, "<uri>:<line>: <reason>" ("stdin" for "-"), without a newline. */
typedef void (*lines_warn_fn)(void *user, const char *msg);

typedef struct lines_opts {
    const char *uri;        /* see above; copied by lines_open */
    size_t max_line;        /* longest line kept, in bytes without its newline; >= 1 */
    lines_warn_fn warn;     /* told about each skipped line and each lines_warn; may be NULL */
    void *warn_user;
    const atomic_int *stop; /* a read waiting for input gives up within 50 ms of *stop
                               being set (by a signal handler or another thread): the input
                               ends there; a connect waiting for an answer fails; may be NULL */
    double open_timeout;    /* seconds a tcp:// or unix: connect may take; 0: no limit */
    double read_timeout;    /* seconds a wait for the next bytes may take on anything but a
                               regular file (a socket, FIFO, pipe or terminal: where a sender
                               can freeze); 0: no limit */
} lines_opts;

typedef struct lines_src lines_src;

/* Opens the file, connects to the socket or binds the datagram socket named by o->uri; a FIFO
 * blocks here until a writer opens it (open_timeout is for connecting only). A datagram source
 * never ends by itself. A TCP or UDP host must be a numeric address (no name lookup; IPv6 as
 * [::1]). Returns 0, CIN_E_INVAL (bad options or uri), CIN_E_IO (cannot open, connect or
 * bind; "<uri>: cannot connect: timed out, no answer within 2 s (open timeout)") or
 * CIN_E_NOMEM; the message names the uri. *out is NULL on error; free a source with
 * lines_close. */
int lines_open(const lines_opts *o, lines_src **out, cin_err *err);

/* The next line, NUL-terminated in place, in *line (writable, valid until the next call) and
 * *len: returns 1; 0 at the end of the input (and on every later call); CIN_E_IO if reading
 * failed (also on later calls), or CIN_E_NOMEM. Blocks until a line or the end arrives, or
 * until no byte came for read_timeout: then CIN_E_IO, "<uri>: timed out: no data for 2 s
 * (read timeout) after 7 lines" (bytes of an unfinished line are no line). A
 * line longer than max_line is skipped here as lines_skip does, with "line longer than N
 * bytes". A NUL byte inside a line is kept: *len counts past it. */
int lines_next(lines_src *s, char **line, size_t *len, cin_err *err);

/* Counts the line last returned as skipped and reports "<uri>:<line>: <reason>" to the warn
 * callback. Returns 0, so a parser can `return lines_skip(...)` for "no record". */
int lines_skip(lines_src *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reports "<uri>:<line>: <message>" about the line last returned without counting it. */
void lines_warn(lines_src *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 1 if uri names a socket, tcp://, udp:// or unix:, where a sender can go silent. */
int lines_uri_is_socket(const char *uri);

/* 1 if line[0, len) holds only blanks (spaces, tabs, carriage returns). */
int lines_is_blank(const char *line, size_t len);

/* The number of the line last returned or skipped, from 1; 0 before the first. */
int64_t lines_number(const lines_src *s);

/* Lines skipped so far, by lines_next (too long) and lines_skip. */
int64_t lines_skipped(const lines_src *s);

/* The uri as given, or "stdin" for "-"; lives as long as s. */
const char *lines_name(const lines_src *s);

/* Closes the file or socket (stdin stays open) and frees s. NULL is allowed. */
void lines_close(lines_src *s);

#endif
