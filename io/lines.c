/* Line source (see lines.h). Reads submitted through io_uring fill one buffer that grows to
 * the longest line seen, never past max_line; lines are cut in place. Working on a descriptor
 * rather than a FILE makes pipes, FIFOs and sockets behave as files do, and lets a line that is
 * too long be dropped chunk by chunk instead of being held whole. */
#include "lines.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LINES_FIRST_CAP ((size_t)64 << 10)
#define LINES_STOP_SLICE_NS 50000000L   /* a stop flag is looked at every 50 ms */
#define LINES_READ_TAG 1                /* user_data of the read (or poll) in flight */
#define LINES_CANCEL_TAG 2

/* How a wait in slices ended. */
enum { LINES_READY = 1, LINES_WAITING = 0, LINES_FAILED = -1, LINES_EXPIRED = -2,
       LINES_STOP = -3 };

struct lines_src {
    int fd;
    int own_fd;                 /* 0 for stdin, which stays open */
    int datagrams;              /* udp://: each read is one datagram, which ends a line */
    const atomic_int *stop;
    double open_timeout;        /* seconds; 0: none */
    double read_timeout;        /* seconds; 0: none, and always 0 for a regular file */
    int have_ring;
    struct io_uring ring;       /* one read in flight at a time */
    lines_warn_fn warn;
    void *warn_user;
    char *name;                 /* the uri, or "stdin", for messages */
    size_t max_line;
    /* One line of max_line bytes, one more byte to see that a line is longer, and a spare
     * byte for the NUL that ends a last line without newline. */
    size_t max_cap;
    char *buf;                  /* [start, end) read, not consumed; no newline in [start, scan) */
    size_t cap, start, scan, end;
    int eof;                    /* a read returned 0 (never for datagrams), or a stop */
    int stopped;                /* a stop request ended the input */
    int read_errno;             /* nonzero once a read failed; lines_next fails from then on */
    int timed_out;              /* that failure was read_timeout passing with no byte */
    int64_t line_no;            /* of the line last taken from buf, from 1 */
    int64_t skipped;
    char msg[768];              /* the warning being reported */
};

/* Formats "<name>:<line>: <fmt...>" into s->msg and hands it to the warn callback. */
static void lines_report(lines_src *s, const char *fmt, va_list ap)
{
    if (!s->warn)
        return;
    int n = snprintf(s->msg, sizeof s->msg, "%s:%lld: ", s->name, (long long)s->line_no);
    if (n > 0 && (size_t)n < sizeof s->msg)
        vsnprintf(s->msg + n, sizeof s->msg - (size_t)n, fmt, ap);
    s->warn(s->warn_user, s->msg);
}

int lines_skip(lines_src *s, const char *fmt, ...)
{
    s->skipped++;
    va_list ap;
    va_start(ap, fmt);
    lines_report(s, fmt, ap);
    va_end(ap);
    return 0;
}

void lines_warn(lines_src *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lines_report(s, fmt, ap);
    va_end(ap);
}

static int lines_io_error(lines_src *s, cin_err *err)
{
    if (s->timed_out)
        return cin_err_set(err, CIN_E_IO, "%s: timed out: no data for %g s (read timeout) "
                           "after %lld lines", s->name, s->read_timeout, (long long)s->line_no);
    return cin_err_set(err, CIN_E_IO, "%s: read failed: %s", s->name, strerror(s->read_errno));
}

/* ---- opening ---------------------------------------------------------------------------- */

static int lines_open_file(const char *path, int *fd, cin_err *err)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return cin_err_set(err, CIN_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(*fd, &st) == 0 && S_ISDIR(st.st_mode))
        return cin_err_set(err, CIN_E_IO, "%s: cannot read: is a directory", path);
    return 0;
}

static double lines_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double lines_deadline(double timeout)
{
    return timeout > 0 ? lines_now() + timeout : INFINITY;
}

static int lines_stopped(const lines_src *s)
{
    return s->stop && *s->stop;
}

/* Waits at most one slice for fd to be ready for events (fd < 0: sleeps the slice), so that
 * a stop request is seen within the slice: LINES_READY, LINES_WAITING, LINES_EXPIRED past
 * the deadline, LINES_STOP, or LINES_FAILED with errno. */
static int lines_poll_slice(const lines_src *s, int fd, short events, double deadline)
{
    if (lines_stopped(s))
        return LINES_STOP;
    double left = deadline - lines_now();
    if (left <= 0)
        return LINES_EXPIRED;
    int slice_ms = (int)(LINES_STOP_SLICE_NS / 1000000);
    int ms = left * 1e3 < slice_ms ? (int)ceil(left * 1e3) : slice_ms;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, ms);
    if (n < 0)
        return errno == EINTR ? LINES_WAITING : LINES_FAILED;
    return n > 0 ? LINES_READY : LINES_WAITING;
}

/* Connects a non-blocking fd by the deadline: 0, or a LINES_* wait result (errno set for
 * LINES_FAILED). A Unix listener with a full backlog refuses at once (EAGAIN) rather than
 * queueing, so that connect is tried again every slice. */
static int lines_connect_by(const lines_src *s, int fd, const struct sockaddr *addr,
                            socklen_t len, double deadline)
{
    int rc = connect(fd, addr, len), r = LINES_WAITING;
    while (rc != 0 && errno == EAGAIN && r == LINES_WAITING) {
        r = lines_poll_slice(s, -1, 0, deadline);
        rc = r == LINES_WAITING ? connect(fd, addr, len) : -1;
    }
    if (rc == 0)
        return 0;
    if (r != LINES_WAITING)
        return r;
    if (errno != EINPROGRESS && errno != EINTR)
        return LINES_FAILED;
    while ((r = lines_poll_slice(s, fd, POLLOUT, deadline)) == LINES_WAITING)
        continue;
    if (r != LINES_READY)
        return r;
    int so_error = 0;
    socklen_t so_len = sizeof so_error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &so_len) < 0)
        return LINES_FAILED;
    errno = so_error;
    return so_error ? LINES_FAILED : 0;
}

/* Connects within open_timeout, the socket non-blocking meanwhile and blocking again after:
 * reads go through the ring, which waits on a blocking socket without a thread. */
static int lines_dial(lines_src *s, const char *uri, const struct sockaddr *addr,
                      socklen_t len, cin_err *err)
{
    s->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->fd < 0)
        return cin_err_set(err, CIN_E_IO, "%s: cannot create a socket: %s", uri,
                           strerror(errno));
    int rc = lines_connect_by(s, s->fd, addr, len, lines_deadline(s->open_timeout));
    if (rc == LINES_EXPIRED)
        return cin_err_set(err, CIN_E_IO, "%s: cannot connect: timed out, no answer within "
                           "%g s (open timeout)", uri, s->open_timeout);
    if (rc == LINES_STOP)
        return cin_err_set(err, CIN_E_IO, "%s: cannot connect: stopped", uri);
    if (!rc) {
        int flags = fcntl(s->fd, F_GETFL);
        if (flags < 0 || fcntl(s->fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
            rc = LINES_FAILED;
    }
    if (rc)
        return cin_err_set(err, CIN_E_IO, "%s: cannot connect: %s", uri, strerror(errno));
    return 0;
}

static int lines_open_unix(lines_src *s, const char *uri, cin_err *err)
{
    const char *path = uri + strlen("unix:");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof sa.sun_path)
        return cin_err_set(err, CIN_E_INVAL, "%s: a socket path has 1 to %zu bytes", uri,
                           sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, n + 1);
    return lines_dial(s, uri, (const struct sockaddr *)&sa, sizeof sa, err);
}

/* Splits "HOST:PORT" or "[HOST]:PORT" into host[cap] and *port (1..65535). */
static int lines_split_host(const char *hostport, char *host, size_t cap, long *port)
{
    const char *colon = strrchr(hostport, ':');
    if (!colon)
        return -1;
    size_t n = (size_t)(colon - hostport);
    if (n >= 2 && hostport[0] == '[' && hostport[n - 1] == ']') {
        hostport++;
        n -= 2;
    }
    char *end;
    errno = 0;
    *port = strtol(colon + 1, &end, 10);
    if (n == 0 || n >= cap || end == colon + 1 || *end || errno || *port < 1 || *port > 65535)
        return -1;
    memcpy(host, hostport, n);
    host[n] = '\0';
    return 0;
}

/* The address of "<scheme>://HOST:PORT" for a socket of type socktype. The host must be
 * numeric: opening a stream never waits on a name lookup. The caller frees *ai. */
static int lines_resolve(const char *uri, const char *scheme, int socktype,
                         struct addrinfo **ai, cin_err *err)
{
    char host[INET6_ADDRSTRLEN + 1], port[8];
    long port_no;
    if (lines_split_host(uri + strlen(scheme) + 3, host, sizeof host, &port_no) != 0)
        return cin_err_set(err, CIN_E_INVAL, "%s: expected %s://HOST:PORT", uri, scheme);
    snprintf(port, sizeof port, "%ld", port_no);
    struct addrinfo hints = {.ai_socktype = socktype,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    int gai = getaddrinfo(host, port, &hints, ai);
    if (gai != 0)
        return cin_err_set(err, CIN_E_INVAL, "%s: host is not a numeric address: %s", uri,
                           gai_strerror(gai));
    return 0;
}

static int lines_open_tcp(lines_src *s, const char *uri, cin_err *err)
{
    struct addrinfo *ai;
    int rc = lines_resolve(uri, "tcp", SOCK_STREAM, &ai, err);
    if (rc)
        return rc;
    rc = lines_dial(s, uri, ai->ai_addr, ai->ai_addrlen, err);
    freeaddrinfo(ai);
    return rc;
}

/* udp://HOST:PORT binds that local address and takes the datagrams sent to it. */
static int lines_open_udp(const char *uri, int *fd, cin_err *err)
{
    struct addrinfo *ai;
    int rc = lines_resolve(uri, "udp", SOCK_DGRAM, &ai, err);
    if (rc)
        return rc;
    *fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (*fd < 0 || bind(*fd, ai->ai_addr, ai->ai_addrlen) != 0)
        rc = cin_err_set(err, CIN_E_IO, "%s: cannot %s: %s", uri, *fd < 0 ? "create a socket"
                         : "bind", strerror(errno));
    freeaddrinfo(ai);
    return rc;
}

static int lines_open_fd(lines_src *s, const char *uri, cin_err *err)
{
    if (!strcmp(uri, "-")) {
        s->fd = STDIN_FILENO;
        return 0;
    }
    s->own_fd = 1;
    if (!strncmp(uri, "tcp://", strlen("tcp://")))
        return lines_open_tcp(s, uri, err);
    if (!strncmp(uri, "unix:", strlen("unix:")))
        return lines_open_unix(s, uri, err);
    if (!strncmp(uri, "udp://", strlen("udp://"))) {
        s->datagrams = 1;
        return lines_open_udp(uri, &s->fd, err);
    }
    return lines_open_file(uri, &s->fd, err);
}

static int lines_check_opts(const lines_opts *o, cin_err *err)
{
    if (!o || !o->uri || !o->uri[0])
        return cin_err_set(err, CIN_E_INVAL, "lines: no uri given");
    if (o->max_line < 1 || o->max_line > SIZE_MAX / 4)
        return cin_err_set(err, CIN_E_INVAL, "%s: max_line %zu is not in 1..%zu", o->uri,
                           o->max_line, SIZE_MAX / 4);
    double t[2] = {o->open_timeout, o->read_timeout};
    for (int i = 0; i < 2; i++)
        if (!(t[i] >= 0) || !isfinite(t[i]))
            return cin_err_set(err, CIN_E_INVAL, "%s: %s is %g; expected a finite number of "
                               "seconds >= 0", o->uri, i ? "read_timeout" : "open_timeout",
                               t[i]);
    return 0;
}

/* A datagram is read whole or not at all, so its buffer holds the longest line from the start;
 * every datagram ends its lines, so nothing is left over between reads. */
static int lines_full_buffer(lines_src *s, cin_err *err)
{
    char *buf = realloc(s->buf, s->max_cap);
    if (!buf)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", s->name);
    s->buf = buf;
    s->cap = s->max_cap;
    return 0;
}

static int lines_open_ring(lines_src *s, cin_err *err)
{
    int rc = io_uring_queue_init(2, &s->ring, 0);
    if (rc < 0)
        return cin_err_set(err, CIN_E_IO, "%s: io_uring: %s", s->name, strerror(-rc));
    s->have_ring = 1;
    return 0;
}

int lines_open(const lines_opts *o, lines_src **out, cin_err *err)
{
    *out = NULL;
    int rc = lines_check_opts(o, err);
    if (rc)
        return rc;
    lines_src *s = calloc(1, sizeof *s);
    if (!s)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", o->uri);
    s->fd = -1;
    s->warn = o->warn;
    s->warn_user = o->warn_user;
    s->stop = o->stop;
    s->open_timeout = o->open_timeout;
    s->read_timeout = o->read_timeout;
    s->max_line = o->max_line;
    s->max_cap = o->max_line + 2;
    s->cap = s->max_cap < LINES_FIRST_CAP ? s->max_cap : LINES_FIRST_CAP;
    s->name = strdup(strcmp(o->uri, "-") ? o->uri : "stdin");
    s->buf = malloc(s->cap);
    if (!s->name || !s->buf)
        rc = cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", o->uri);
    if (!rc)
        rc = lines_open_fd(s, o->uri, err);
    struct stat st;
    if (!rc && fstat(s->fd, &st) == 0 && S_ISREG(st.st_mode))
        s->read_timeout = 0;        /* a file has no sender to wait for */
    if (!rc)
        rc = lines_open_ring(s, err);
    if (!rc && s->datagrams)
        rc = lines_full_buffer(s, err);
    if (rc) {
        lines_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void lines_close(lines_src *s)
{
    if (!s)
        return;
    if (s->have_ring)
        io_uring_queue_exit(&s->ring);
    if (s->own_fd && s->fd >= 0)
        close(s->fd);
    free(s->buf);
    free(s->name);
    free(s);
}

int64_t lines_number(const lines_src *s)
{
    return s->line_no;
}

int64_t lines_skipped(const lines_src *s)
{
    return s->skipped;
}

const char *lines_name(const lines_src *s)
{
    return s->name;
}

int lines_uri_is_socket(const char *uri)
{
    return !strncmp(uri, "tcp://", 6) || !strncmp(uri, "udp://", 6) || !strncmp(uri, "unix:", 5);
}

int lines_is_blank(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
            return 0;
    return 1;
}

/* ---- reading ---------------------------------------------------------------------------- */

/* One slice of a wait, shorter when the deadline comes first. */
static struct __kernel_timespec lines_slice(double deadline)
{
    double left_ns = (deadline - lines_now()) * 1e9;
    long ns = left_ns < LINES_STOP_SLICE_NS ? (long)(left_ns > 0 ? left_ns : 0)
                                            : LINES_STOP_SLICE_NS;
    return (struct __kernel_timespec){ns / 1000000000L, ns % 1000000000L};
}

/* The read in flight outlived read_timeout: cancels it and takes both completions, so that no
 * request is left writing into the buffer. A read that finished meanwhile gives its result;
 * else -ETIMEDOUT, with timed_out set. */
static int lines_cancel_read(lines_src *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_cancel64(sqe, LINES_READ_TAG, 0);
    io_uring_sqe_set_data64(sqe, LINES_CANCEL_TAG);
    int rc = io_uring_submit(&s->ring);
    if (rc != 1)
        return rc < 0 ? rc : -EIO;
    int res = -ETIMEDOUT;
    for (int taken = 0; taken < 2;) {
        struct io_uring_cqe *cqe;
        rc = io_uring_wait_cqe(&s->ring, &cqe);
        if (rc == -EINTR)
            continue;
        if (rc < 0)
            return rc;
        if (cqe->user_data == LINES_READ_TAG && cqe->res >= 0)
            res = cqe->res;
        io_uring_cqe_seen(&s->ring, cqe);
        taken++;
    }
    s->timed_out = res == -ETIMEDOUT;
    return res;
}

/* Submits one request and waits for it until the deadline: its result, or a negative errno;
 * -ECANCELED once the stop flag is set (the request is cancelled at close); -ETIMEDOUT past
 * the deadline (see lines_cancel_read). The wait is cut into slices so that a flag set by
 * another thread, with no signal to interrupt it, is seen within one slice. */
static int lines_ring_wait(lines_src *s, struct io_uring_sqe *sqe, double deadline)
{
    io_uring_sqe_set_data64(sqe, LINES_READ_TAG);
    int rc = io_uring_submit(&s->ring);
    if (rc != 1)
        return rc < 0 ? rc : -EIO;
    struct io_uring_cqe *cqe;
    for (;;) {
        struct __kernel_timespec slice = lines_slice(deadline);
        rc = io_uring_wait_cqe_timeout(&s->ring, &cqe, &slice);
        if (rc != -EINTR && rc != -ETIME)
            break;
        if (lines_stopped(s))
            return -ECANCELED;
        if (lines_now() >= deadline)
            return lines_cancel_read(s);
    }
    if (rc < 0)
        return rc;
    int res = cqe->res;
    io_uring_cqe_seen(&s->ring, cqe);
    return res;
}

/* A stop request ends the input where it is: what was read of an unfinished line is dropped,
 * and the read reports the end. */
static ssize_t lines_stop(lines_src *s)
{
    s->stopped = 1;
    s->start = s->scan = s->end = 0;
    return 0;
}

/* One read of up to n bytes through the ring, waited for at most read_timeout: the bytes read
 * (for a datagram, its whole length, MSG_TRUNC, which may exceed n), 0 at the end, or -1 with
 * errno (ETIMEDOUT with timed_out set when no byte came in time). A read takes the
 * descriptor's own position (-1), so it serves files, pipes and sockets alike; a descriptor
 * its owner left non-blocking is polled until it has data. */
static ssize_t lines_sysread(lines_src *s, char *dst, size_t n)
{
    unsigned len = (unsigned)(n < (1u << 30) ? n : (1u << 30));
    double deadline = lines_deadline(s->read_timeout);
    for (;;) {
        if (lines_stopped(s))
            return lines_stop(s);
        struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
        if (!sqe) {
            errno = EBUSY;
            return -1;
        }
        if (s->datagrams)
            io_uring_prep_recv(sqe, s->fd, dst, len, MSG_TRUNC);
        else
            io_uring_prep_read(sqe, s->fd, dst, len, (uint64_t)-1);
        int res = lines_ring_wait(s, sqe, deadline);
        if (res == -EAGAIN && (sqe = io_uring_get_sqe(&s->ring))) {
            io_uring_prep_poll_add(sqe, s->fd, POLLIN);
            res = lines_ring_wait(s, sqe, deadline);
            res = res < 0 ? res : -EAGAIN;
        }
        if (res == -ECANCELED)
            return lines_stop(s);
        if (res >= 0)
            return res;
        if (res != -EAGAIN && res != -EINTR) {
            errno = -res;
            return -1;
        }
    }
}

/* Moves the unconsumed bytes to the front and, if that leaves no room, doubles the buffer.
 * The caller has checked that they are at most max_line, so max_cap always leaves room for
 * one more byte and the spare one. */
static int lines_make_room(lines_src *s, cin_err *err)
{
    if (s->start > 0) {
        memmove(s->buf, s->buf + s->start, s->end - s->start);
        s->end -= s->start;
        s->scan -= s->start;
        s->start = 0;
    }
    if (s->end + 1 < s->cap)
        return 0;
    size_t cap = s->cap * 2 < s->max_cap ? s->cap * 2 : s->max_cap;
    char *grown = realloc(s->buf, cap);
    if (!grown)
        return cin_err_set(err, CIN_E_NOMEM, "%s:%lld: out of memory for a line of %zu bytes",
                           s->name, (long long)s->line_no + 1, s->end);
    s->buf = grown;
    s->cap = cap;
    return 0;
}

/* A datagram ends a line: a newline is added when it has none (the spare byte holds it). One
 * longer than a line may be is dropped whole; an empty one is no end of the stream. */
static int lines_end_datagram(lines_src *s, size_t n, size_t room)
{
    if (n > room) {
        s->line_no++;
        return lines_skip(s, "datagram longer than %zu bytes", s->max_line);
    }
    s->end += n;
    if (n > 0 && s->buf[s->end - 1] != '\n')
        s->buf[s->end++] = '\n';
    return 0;
}

/* Reads more bytes after end; sets eof when there are none. 0 or CIN_E_IO / CIN_E_NOMEM. */
static int lines_fill(lines_src *s, cin_err *err)
{
    int rc = lines_make_room(s, err);
    if (rc)
        return rc;
    /* a datagram keeps a byte for the newline it may need */
    size_t room = s->cap - 1 - s->end - (size_t)s->datagrams;
    ssize_t n = lines_sysread(s, s->buf + s->end, room);
    if (n < 0) {
        s->read_errno = errno;
        return lines_io_error(s, err);
    }
    if (s->stopped) {
        s->eof = 1;
        return 0;
    }
    if (s->datagrams)
        return lines_end_datagram(s, (size_t)n, room);
    s->end += (size_t)n;
    s->eof = n == 0;
    return 0;
}

/* Reads past the rest of a line longer than max_line, holding one buffer of it at a time, and
 * reports it. 0 or CIN_E_IO. */
static int lines_drop_long_line(lines_src *s, cin_err *err)
{
    char *nl = NULL;
    s->line_no++;
    s->start = s->scan = s->end = 0;
    while (!nl && !s->eof) {
        ssize_t n = lines_sysread(s, s->buf, s->cap - 1);
        if (n < 0) {
            s->read_errno = errno;
            return lines_io_error(s, err);
        }
        s->eof = n == 0;
        s->end = (size_t)n;
        nl = memchr(s->buf, '\n', s->end);
    }
    if (nl)
        s->start = s->scan = (size_t)(nl + 1 - s->buf);
    else
        s->end = 0;
    lines_skip(s, "line longer than %zu bytes", s->max_line);
    return 0;
}

/* Ends the line buf[start, stop) in place, without its "\r" if any, and consumes it up to
 * next. The first line loses a UTF-8 byte order mark, as some spreadsheet exports write. */
static char *lines_take(lines_src *s, size_t stop, size_t next, size_t *len)
{
    char *line = s->buf + s->start;
    s->buf[stop] = '\0';
    if (stop > s->start && s->buf[stop - 1] == '\r')
        s->buf[--stop] = '\0';
    *len = stop - s->start;
    s->start = s->scan = next;
    if (++s->line_no == 1 && *len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) {
        line += 3;
        *len -= 3;
    }
    return line;
}

int lines_next(lines_src *s, char **line, size_t *len, cin_err *err)
{
    if (s->read_errno)
        return lines_io_error(s, err);
    for (;;) {
        char *nl = memchr(s->buf + s->scan, '\n', s->end - s->scan);
        if (nl) {
            size_t stop = (size_t)(nl - s->buf);
            *line = lines_take(s, stop, stop + 1, len);
            return 1;
        }
        s->scan = s->end;
        int too_long = s->end - s->start > s->max_line;
        if (s->eof && !too_long) {
            if (s->start == s->end)
                return 0;
            *line = lines_take(s, s->end, s->end, len);
            return 1;
        }
        int rc = too_long ? lines_drop_long_line(s, err) : lines_fill(s, err);
        if (rc < 0)
            return rc;
    }
}
