/* Feature-vector source (see feat.h). A read(2) loop fills one buffer that grows to the
 * longest line seen, never past FEAT_MAX_LINE; lines are cut in place and parsed with strtof
 * (CSV) or jansson (JSON lines). Working on a descriptor rather than a FILE makes pipes, FIFOs
 * and sockets behave as files do, and lets a line that is too long be dropped chunk by chunk
 * instead of being held whole. */
#include "feat.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <locale.h>
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
#include <unistd.h>

#define FEAT_FIRST_CAP ((size_t)64 << 10)
/* One line of FEAT_MAX_LINE bytes, one more byte to see that a line is longer, and a spare
 * byte for the NUL that ends a last line without newline. */
#define FEAT_MAX_CAP ((size_t)FEAT_MAX_LINE + 2)
/* Shown of a field that is not a number. */
#define FEAT_QUOTE_MAX 32

struct feat_src {
    int fd;
    int own_fd;                 /* 0 for stdin, which stays open */
    int dim;
    feat_format format;
    feat_warn_fn warn;
    void *warn_user;
    char *name;                 /* the uri, or "stdin", for messages */
    locale_t numeric;           /* "C": CSV numbers read the same whatever the process locale */
    char *buf;                  /* [start, end) read, not consumed; no newline in [start, scan) */
    size_t cap, start, scan, end;
    int eof;                    /* read(2) returned 0 */
    int read_errno;             /* nonzero once a read failed; feat_read fails from then on */
    int64_t line_no;            /* of the line last taken from buf, from 1 */
    int64_t next_frame;         /* given to a record without a frame index */
    int64_t skipped, masked;
    char *fixed;                /* a JSON line with NaN/Infinity rewritten as null */
    size_t fixed_cap;
    char msg[768];              /* the warning being reported */
};

static int feat_skip(feat_src *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Counts the current line as skipped and tells opts.warn why. Returns 0: no record. */
static int feat_skip(feat_src *s, const char *fmt, ...)
{
    s->skipped++;
    if (!s->warn)
        return 0;
    int n = snprintf(s->msg, sizeof s->msg, "%s:%lld: ", s->name, (long long)s->line_no);
    if (n > 0 && (size_t)n < sizeof s->msg) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->msg + n, sizeof s->msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
    s->warn(s->warn_user, s->msg);
    return 0;
}

static int feat_io_error(feat_src *s, cin_err *err)
{
    return cin_err_set(err, CIN_E_IO, "%s: read failed: %s", s->name, strerror(s->read_errno));
}

/* ---- opening ---------------------------------------------------------------------------- */

static int feat_open_file(const char *path, int *fd, cin_err *err)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return cin_err_set(err, CIN_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(*fd, &st) == 0 && S_ISDIR(st.st_mode))
        return cin_err_set(err, CIN_E_IO, "%s: cannot read: is a directory", path);
    return 0;
}

/* A blocking connect interrupted by a signal goes on in the background, and calling connect
 * again would fail with EALREADY; so wait for it to finish and take its result. */
static int feat_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (connect(fd, addr, len) == 0)
        return 0;
    if (errno != EINTR)
        return -1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int n;
    do
        n = poll(&p, 1, -1);
    while (n < 0 && errno == EINTR);
    int so_error = 0;
    socklen_t so_len = sizeof so_error;
    if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &so_len) < 0)
        return -1;
    errno = so_error;
    return so_error ? -1 : 0;
}

static int feat_dial(const char *uri, const struct sockaddr *addr, socklen_t len, int *fd,
                     cin_err *err)
{
    *fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*fd < 0)
        return cin_err_set(err, CIN_E_IO, "%s: cannot create a socket: %s", uri,
                           strerror(errno));
    if (feat_connect(*fd, addr, len) == 0)
        return 0;
    return cin_err_set(err, CIN_E_IO, "%s: cannot connect: %s", uri, strerror(errno));
}

static int feat_open_unix(const char *uri, int *fd, cin_err *err)
{
    const char *path = uri + strlen("unix:");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof sa.sun_path)
        return cin_err_set(err, CIN_E_INVAL, "%s: a socket path has 1 to %zu bytes", uri,
                           sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, n + 1);
    return feat_dial(uri, (const struct sockaddr *)&sa, sizeof sa, fd, err);
}

/* Splits "HOST:PORT" or "[HOST]:PORT" into host[cap] and *port (1..65535). */
static int feat_split_host(const char *hostport, char *host, size_t cap, long *port)
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

/* The host must be numeric: opening a stream never waits on a name lookup. */
static int feat_open_tcp(const char *uri, int *fd, cin_err *err)
{
    char host[INET6_ADDRSTRLEN + 1], port[8];
    long port_no;
    if (feat_split_host(uri + strlen("tcp://"), host, sizeof host, &port_no) != 0)
        return cin_err_set(err, CIN_E_INVAL, "%s: expected tcp://HOST:PORT", uri);
    snprintf(port, sizeof port, "%ld", port_no);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0)
        return cin_err_set(err, CIN_E_INVAL, "%s: host is not a numeric address: %s", uri,
                           gai_strerror(gai));
    int rc = feat_dial(uri, ai->ai_addr, ai->ai_addrlen, fd, err);
    freeaddrinfo(ai);
    return rc;
}

static int feat_open_fd(feat_src *s, const char *uri, cin_err *err)
{
    if (!strcmp(uri, "-")) {
        s->fd = STDIN_FILENO;
        return 0;
    }
    s->own_fd = 1;
    if (!strncmp(uri, "tcp://", strlen("tcp://")))
        return feat_open_tcp(uri, &s->fd, err);
    if (!strncmp(uri, "unix:", strlen("unix:")))
        return feat_open_unix(uri, &s->fd, err);
    return feat_open_file(uri, &s->fd, err);
}

static int feat_check_opts(const feat_opts *o, cin_err *err)
{
    if (!o || !o->uri || !o->uri[0])
        return cin_err_set(err, CIN_E_INVAL, "features: no uri given");
    /* The shortest row, "0,0,...", takes two bytes a number: more cannot fit in a line. */
    if (o->dim < 1 || o->dim > FEAT_MAX_LINE / 2)
        return cin_err_set(err, CIN_E_INVAL, "%s: dim %d is not in 1..%d", o->uri, o->dim,
                           FEAT_MAX_LINE / 2);
    if (o->format != FEAT_JSONL && o->format != FEAT_CSV)
        return cin_err_set(err, CIN_E_INVAL, "%s: unknown format %d", o->uri, (int)o->format);
    return 0;
}

int feat_open(const feat_opts *o, feat_src **out, cin_err *err)
{
    *out = NULL;
    int rc = feat_check_opts(o, err);
    if (rc)
        return rc;
    feat_src *s = calloc(1, sizeof *s);
    if (!s)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", o->uri);
    s->fd = -1;
    s->dim = o->dim;
    s->format = o->format;
    s->warn = o->warn;
    s->warn_user = o->warn_user;
    s->name = strdup(strcmp(o->uri, "-") ? o->uri : "stdin");
    s->numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    s->buf = malloc(FEAT_FIRST_CAP);
    s->cap = FEAT_FIRST_CAP;
    if (!s->name || !s->numeric || !s->buf)
        rc = cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", o->uri);
    if (!rc)
        rc = feat_open_fd(s, o->uri, err);
    if (rc) {
        feat_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void feat_close(feat_src *s)
{
    if (!s)
        return;
    if (s->own_fd && s->fd >= 0)
        close(s->fd);
    if (s->numeric)
        freelocale(s->numeric);
    free(s->buf);
    free(s->fixed);
    free(s->name);
    free(s);
}

int64_t feat_skipped(const feat_src *s)
{
    return s->skipped;
}

int64_t feat_masked(const feat_src *s)
{
    return s->masked;
}

/* ---- lines ------------------------------------------------------------------------------ */

/* read(2), retried on EINTR; a non-blocking descriptor is waited on. -1 with errno on error. */
static ssize_t feat_sysread(int fd, char *dst, size_t n)
{
    for (;;) {
        ssize_t got = read(fd, dst, n);
        if (got >= 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK))
            return got;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (errno != EINTR && poll(&p, 1, -1) < 0 && errno != EINTR)
            return -1;
    }
}

/* Moves the unconsumed bytes to the front and, if that leaves no room, doubles the buffer.
 * The caller has checked that they are at most FEAT_MAX_LINE, so FEAT_MAX_CAP always leaves
 * room for one more byte and the spare one. */
static int feat_make_room(feat_src *s, cin_err *err)
{
    if (s->start > 0) {
        memmove(s->buf, s->buf + s->start, s->end - s->start);
        s->end -= s->start;
        s->scan -= s->start;
        s->start = 0;
    }
    if (s->end + 1 < s->cap)
        return 0;
    size_t cap = s->cap * 2 < FEAT_MAX_CAP ? s->cap * 2 : FEAT_MAX_CAP;
    char *grown = realloc(s->buf, cap);
    if (!grown)
        return cin_err_set(err, CIN_E_NOMEM, "%s:%lld: out of memory for a line of %zu bytes",
                           s->name, (long long)s->line_no + 1, s->end);
    s->buf = grown;
    s->cap = cap;
    return 0;
}

/* Reads more bytes after end; sets eof when there are none. 0 or CIN_E_IO / CIN_E_NOMEM. */
static int feat_fill(feat_src *s, cin_err *err)
{
    int rc = feat_make_room(s, err);
    if (rc)
        return rc;
    ssize_t n = feat_sysread(s->fd, s->buf + s->end, s->cap - 1 - s->end);
    if (n < 0) {
        s->read_errno = errno;
        return feat_io_error(s, err);
    }
    s->end += (size_t)n;
    s->eof = n == 0;
    return 0;
}

/* Reads past the rest of a line longer than FEAT_MAX_LINE, holding one buffer of it at a
 * time, and reports it. 0 or CIN_E_IO. */
static int feat_drop_long_line(feat_src *s, cin_err *err)
{
    char *nl = NULL;
    s->line_no++;
    s->start = s->scan = s->end = 0;
    while (!nl && !s->eof) {
        ssize_t n = feat_sysread(s->fd, s->buf, s->cap - 1);
        if (n < 0) {
            s->read_errno = errno;
            return feat_io_error(s, err);
        }
        s->eof = n == 0;
        s->end = (size_t)n;
        nl = memchr(s->buf, '\n', s->end);
    }
    if (nl)
        s->start = s->scan = (size_t)(nl + 1 - s->buf);
    else
        s->end = 0;
    feat_skip(s, "line longer than %d bytes", FEAT_MAX_LINE);
    return 0;
}

/* Ends the line buf[start, stop) in place, without its "\r" if any, and consumes it up to
 * next. */
static char *feat_take_line(feat_src *s, size_t stop, size_t next, size_t *len)
{
    char *line = s->buf + s->start;
    s->buf[stop] = '\0';
    if (stop > s->start && s->buf[stop - 1] == '\r')
        s->buf[--stop] = '\0';
    *len = stop - s->start;
    s->start = s->scan = next;
    s->line_no++;
    return line;
}

/* The next line, NUL-terminated in place, in *line and *len: 1; 0 at the end; < 0 on error.
 * Lines that are too long are dropped here. */
static int feat_next_line(feat_src *s, char **line, size_t *len, cin_err *err)
{
    for (;;) {
        char *nl = memchr(s->buf + s->scan, '\n', s->end - s->scan);
        if (nl) {
            size_t stop = (size_t)(nl - s->buf);
            *line = feat_take_line(s, stop, stop + 1, len);
            return 1;
        }
        s->scan = s->end;
        int too_long = s->end - s->start > FEAT_MAX_LINE;
        if (s->eof && !too_long) {
            if (s->start == s->end)
                return 0;
            *line = feat_take_line(s, s->end, s->end, len);
            return 1;
        }
        int rc = too_long ? feat_drop_long_line(s, err) : feat_fill(s, err);
        if (rc < 0)
            return rc;
    }
}

/* ---- records ---------------------------------------------------------------------------- */

/* x, or 0 counted in *masked when it is NaN or infinite. */
static float feat_finite(float x, int64_t *masked)
{
    if (isfinite(x))
        return x;
    (*masked)++;
    return 0.0f;
}

static const char *feat_json_type(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    default: return "a number";
    }
}

/* A frame index, when the record gives one, replaces the counted one in *frame. */
static int feat_json_frame(feat_src *s, const json_t *v, int64_t *frame)
{
    if (!v)
        return 1;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) == LLONG_MAX)
        return feat_skip(s, "\"frame\" is not an integer from 0 to %lld", LLONG_MAX - 1);
    *frame = (int64_t)json_integer_value(v);
    return 1;
}

static int feat_json_values(feat_src *s, const json_t *arr, float *vec, int64_t *masked)
{
    if (!arr)
        return feat_skip(s, "no \"features\" array");
    if (!json_is_array(arr))
        return feat_skip(s, "\"features\" is %s, not an array", feat_json_type(arr));
    size_t n = json_array_size(arr);
    if (n != (size_t)s->dim)
        return feat_skip(s, "expected %d numbers, got %zu", s->dim, n);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        if (!json_is_number(v) && !json_is_null(v))
            return feat_skip(s, "features[%zu] is %s, not a number", i, feat_json_type(v));
        /* Annex F: a double beyond the float range becomes an infinity, then is masked. */
        vec[i] = feat_finite(json_is_null(v) ? NAN : (float)json_number_value(v), masked);
    }
    return 1;
}

/* Python's json.dumps writes NaN, Infinity and -Infinity, which are not JSON: outside
 * strings they become null (a value masked to 0 and counted). 0: nothing to rewrite. */
static size_t feat_rewrite_nonfinite(feat_src *s, const char *line, size_t len)
{
    static const char *const tokens[] = {"-Infinity", "Infinity", "NaN"};
    size_t need = len + len / 3 + 2, n = 0, changed = 0;
    if (need > s->fixed_cap) {
        char *grown = realloc(s->fixed, need);
        if (!grown)
            return 0;
        s->fixed = grown;
        s->fixed_cap = need;
    }
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        size_t t = 0, tl = 0;
        while (!in_string && t < 3 && !(tl = strlen(tokens[t]), len - i >= tl &&
                                          memcmp(line + i, tokens[t], tl) == 0))
            t++;
        if (!in_string && t < 3) {
            memcpy(s->fixed + n, "null", 4);
            n += 4;
            i += tl - 1;
            changed++;
            continue;
        }
        if (line[i] == '"' && (i == 0 || line[i - 1] != '\\'))
            in_string = !in_string;
        s->fixed[n++] = line[i];
    }
    return changed ? n : 0;
}

static int feat_parse_json(feat_src *s, const char *line, size_t len, float *vec,
                           int64_t *frame, int64_t *masked)
{
    json_error_t jerr;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    size_t fixed = root ? 0 : feat_rewrite_nonfinite(s, line, len);
    if (fixed)
        root = json_loadb(s->fixed, fixed, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return feat_skip(s, "invalid JSON at column %d: %s", jerr.column, jerr.text);
    int ok = 1;
    const json_t *arr = root;
    if (json_is_object(root)) {
        ok = feat_json_frame(s, json_object_get(root, "frame"), frame);
        arr = json_object_get(root, "features");
    }
    if (ok)
        ok = feat_json_values(s, arr, vec, masked);
    json_decref(root);
    return ok;
}

static int feat_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* One CSV number at *p with blanks around it; *p is left on the byte after them. strtof takes
 * nan, inf and hexadecimal floats too. */
static int feat_csv_float(const char **p, float *x)
{
    char *end;
    *x = strtof(*p, &end);
    if (end == *p)
        return 0;
    while (feat_is_blank(*end))
        end++;
    *p = end;
    return 1;
}

static int feat_csv_frame(feat_src *s, const char **p, int64_t *frame)
{
    char *end;
    errno = 0;
    long long v = strtoll(*p, &end, 10);
    int ok = end != *p && errno == 0 && v >= 0 && v < LLONG_MAX;
    while (ok && feat_is_blank(*end))
        end++;
    if (!ok || *end != ',')
        return feat_skip(s, "frame field is not an integer from 0 to %lld", LLONG_MAX - 1);
    *frame = v;
    *p = end + 1;
    return 1;
}

static int feat_csv_bad_field(feat_src *s, const char *field, int col)
{
    while (feat_is_blank(*field))
        field++;
    int n = (int)strcspn(field, ",");
    return feat_skip(s, "field %d (\"%.*s%s\") is not a number", col,
                     n > FEAT_QUOTE_MAX ? FEAT_QUOTE_MAX : n, field,
                     n > FEAT_QUOTE_MAX ? "..." : "");
}

static size_t feat_csv_fields(const char *line, size_t len)
{
    size_t n = 1;
    for (const char *c = line; (c = memchr(c, ',', len - (size_t)(c - line))); c++)
        n++;
    return n;
}

/* A first line whose first field is not a number is a header. */
static int feat_csv_is_header(const feat_src *s, const char *line)
{
    float x;
    return s->line_no == 1 && !(feat_csv_float(&line, &x) && (*line == ',' || !*line));
}

/* dim numbers, or a frame index and dim numbers. The last field must end at len, so a NUL
 * byte inside the line makes it malformed. */
static int feat_parse_csv(feat_src *s, const char *line, size_t len, float *vec,
                          int64_t *frame, int64_t *masked)
{
    if (feat_csv_is_header(s, line))
        return 0;
    size_t fields = feat_csv_fields(line, len);
    if (fields != (size_t)s->dim && fields != (size_t)s->dim + 1)
        return feat_skip(s, "expected %d numbers (%d fields with a frame), got %zu fields",
                         s->dim, s->dim + 1, fields);
    const char *p = line;
    if (fields > (size_t)s->dim && !feat_csv_frame(s, &p, frame))
        return 0;
    for (int i = 0; i < s->dim; i++) {
        const char *field = p;
        float x;
        char delim = i + 1 < s->dim ? ',' : '\0';
        if (!feat_csv_float(&p, &x) || *p != delim || (!delim && p != line + len))
            return feat_csv_bad_field(s, field, (int)(fields - (size_t)s->dim) + i + 1);
        vec[i] = feat_finite(x, masked);
        p++;
    }
    return 1;
}

static int feat_parse_line(feat_src *s, char *line, size_t len, float *vec, int64_t *frame)
{
    if (s->line_no == 1 && len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) {
        line += 3;  /* a UTF-8 byte order mark, as some spreadsheet exports write */
        len -= 3;
    }
    size_t blank = 0;
    while (blank < len && (feat_is_blank(line[blank]) || line[blank] == '\r'))
        blank++;
    if (blank == len)
        return feat_skip(s, "empty line");
    int64_t masked = 0;
    int ok;
    if (s->format == FEAT_CSV) {
        locale_t prev = uselocale(s->numeric);
        ok = feat_parse_csv(s, line, len, vec, frame, &masked);
        uselocale(prev);
    } else
        ok = feat_parse_json(s, line, len, vec, frame, &masked);
    if (ok)
        s->masked += masked;
    return ok;
}

int feat_read(feat_src *s, float *vec, int64_t *frame, cin_err *err)
{
    if (s->read_errno)
        return feat_io_error(s, err);
    for (;;) {
        char *line;
        size_t len;
        int rc = feat_next_line(s, &line, &len, err);
        if (rc <= 0)
            return rc;
        int64_t f = s->next_frame;
        if (feat_parse_line(s, line, len, vec, &f)) {
            *frame = f;
            s->next_frame = f + 1;
            return 1;
        }
    }
}
