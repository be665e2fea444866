/* Double-buffered appends through io_uring: one buffer fills while the other is written, one
 * write in flight, so records reach the file in the order they were appended. */
#include "urfile.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Record ends remembered per buffer; past that many, the newest replaces the last. */
#define URFILE_MAX_ENDS 4096

struct urfile {
    int fd, is_stdout;
    struct io_uring ring;
    char *buf[2];
    size_t len[2];
    uint32_t *ends[2];      /* offsets in the buffer where records end, ascending */
    int n_ends[2];
    int fill;               /* the buffer being filled */
    int busy;               /* the buffer being written, or -1 */
    size_t busy_done;       /* its bytes written so far (after short writes) */
    int64_t offset;         /* file offset of the busy buffer (a regular file of ours);
                               -1: the file's own position (stdout, a pipe, a device) */
    int64_t acked;          /* bytes written in whole buffers */
    int64_t whole;          /* a regular file's bytes written up to a record's end */
    double flush_every, now, last_submit;
    int failed;             /* the first write's errno, sticky */
    char *name;
};

static int urfile_error(const urfile *f, cin_err *err)
{
    return cin_err_set(err, CIN_E_IO, "%s: write failed: %s", f->name, strerror(f->failed));
}

/* The file offset after the last record end among the first `done` bytes of buffer b, which
 * is written from `start`; `below` when none ends there. */
static int64_t urfile_last_end(const urfile *f, int b, int64_t start, size_t done,
                               int64_t below)
{
    for (int i = f->n_ends[b] - 1; i >= 0; i--)
        if (f->ends[b][i] <= done)
            return start + f->ends[b][i];
    return below;
}

/* Keeps the first failure; a file of ours is cut back to its last whole record, also within
 * the buffer that was being written when the disk filled. */
static void urfile_fail(urfile *f, int e)
{
    if (f->failed)
        return;
    f->failed = e ? e : EIO;
    if (f->offset < 0)
        return;
    int64_t cut = f->busy < 0 ? f->whole
                              : urfile_last_end(f, f->busy, f->offset, f->busy_done, f->whole);
    if (ftruncate(f->fd, cut) != 0)
        f->failed = f->failed ? f->failed : errno;
}

static void urfile_submit(urfile *f)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);
    if (!sqe) {
        urfile_fail(f, EBUSY);
        return;
    }
    int64_t at = f->offset < 0 ? -1 : f->offset + (int64_t)f->busy_done;
    io_uring_prep_write(sqe, f->fd, f->buf[f->busy] + f->busy_done,
                        (unsigned)(f->len[f->busy] - f->busy_done), (uint64_t)at);
    int rc = io_uring_submit(&f->ring);
    if (rc != 1)
        urfile_fail(f, rc < 0 ? -rc : EIO);
}

/* One completion of the busy buffer: done, or resubmitted for the rest after a short write. */
static void urfile_complete(urfile *f, int res)
{
    if (res <= 0) {
        urfile_fail(f, res < 0 ? -res : EIO);
        f->busy = -1;
        return;
    }
    f->busy_done += (size_t)res;
    if (f->busy_done < f->len[f->busy]) {
        urfile_submit(f);
        return;
    }
    f->acked += (int64_t)f->len[f->busy];
    if (f->offset >= 0) {
        f->whole = urfile_last_end(f, f->busy, f->offset, f->len[f->busy], f->whole);
        f->offset += (int64_t)f->len[f->busy];
    }
    f->len[f->busy] = 0;
    f->n_ends[f->busy] = 0;
    f->busy = -1;
    f->busy_done = 0;
}

/* Reaps completions; waits for the busy buffer when `wait`. */
static void urfile_reap(urfile *f, int wait)
{
    while (f->busy >= 0 && !f->failed) {
        struct io_uring_cqe *cqe;
        int rc = wait ? io_uring_wait_cqe(&f->ring, &cqe) : io_uring_peek_cqe(&f->ring, &cqe);
        if (rc == -EINTR)
            continue;
        if (rc < 0) {
            if (wait)
                urfile_fail(f, -rc);
            return;             /* not waiting: -EAGAIN, nothing finished yet */
        }
        int res = cqe->res;
        io_uring_cqe_seen(&f->ring, cqe);
        urfile_complete(f, res);
    }
}

/* Submits the buffer being filled (after the other one is written) and fills the other. */
static void urfile_rotate(urfile *f)
{
    if (f->len[f->fill] == 0)
        return;
    urfile_reap(f, 1);
    if (f->failed)
        return;
    f->busy = f->fill;
    f->busy_done = 0;
    f->fill ^= 1;
    f->last_submit = f->now;
    urfile_submit(f);
}

static int urfile_alloc(urfile *f, const char *path)
{
    f->name = strdup(strcmp(path, "-") ? path : "stdout");
    for (int b = 0; b < 2; b++) {
        f->buf[b] = malloc(URFILE_BUFFER);
        f->ends[b] = malloc(sizeof(uint32_t) * URFILE_MAX_ENDS);
    }
    return f->name && f->buf[0] && f->buf[1] && f->ends[0] && f->ends[1];
}

static void urfile_release(urfile *f)
{
    for (int b = 0; b < 2; b++) {
        free(f->buf[b]);
        free(f->ends[b]);
    }
    free(f->name);
    free(f);
}

int urfile_open(const char *path, double flush_every, urfile **out, cin_err *err)
{
    *out = NULL;
    if (!path || !(flush_every >= 0))
        return cin_err_set(err, CIN_E_INVAL, "urfile: a path and a flush interval >= 0");
    urfile *f = calloc(1, sizeof *f);
    if (!f || !urfile_alloc(f, path)) {
        if (f)
            urfile_release(f);
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    }
    f->busy = -1;
    f->flush_every = flush_every;
    f->is_stdout = !strcmp(path, "-");
    f->fd = f->is_stdout ? STDOUT_FILENO : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                                                0666);
    if (f->fd < 0) {
        int rc = cin_err_set(err, CIN_E_IO, "%s: cannot open for writing: %s", path,
                             strerror(errno));
        urfile_release(f);
        return rc;
    }
    struct stat st;
    f->offset = !f->is_stdout && fstat(f->fd, &st) == 0 && S_ISREG(st.st_mode) ? 0 : -1;
    int rc = io_uring_queue_init(4, &f->ring, 0);
    if (rc < 0) {
        rc = cin_err_set(err, CIN_E_IO, "%s: io_uring: %s", path, strerror(-rc));
        if (!f->is_stdout)
            close(f->fd);
        urfile_release(f);
        return rc;
    }
    *out = f;
    return 0;
}

/* The record just appended ends at the fill buffer's length. */
static void urfile_mark_end(urfile *f)
{
    int b = f->fill, i = f->n_ends[b] < URFILE_MAX_ENDS ? f->n_ends[b]++ : URFILE_MAX_ENDS - 1;
    f->ends[b][i] = (uint32_t)f->len[b];
}

int urfile_append(urfile *f, const void *data, size_t n, cin_err *err)
{
    const char *p = data;
    urfile_reap(f, 0);
    while (n > 0 && !f->failed) {
        size_t room = URFILE_BUFFER - f->len[f->fill];
        if (room == 0 || (n > room && n <= URFILE_BUFFER)) {
            urfile_rotate(f);
            continue;
        }
        size_t take = n < room ? n : room;
        memcpy(f->buf[f->fill] + f->len[f->fill], p, take);
        f->len[f->fill] += take;
        p += take;
        n -= take;
    }
    if (!f->failed)
        urfile_mark_end(f);
    if (f->flush_every == 0 && f->busy < 0)
        urfile_rotate(f); /* at once, as no write is in flight: the caller never waits */
    return f->failed ? urfile_error(f, err) : 0;
}

int urfile_tick(urfile *f, double now, cin_err *err)
{
    f->now = now;
    urfile_reap(f, 0);
    if (f->busy < 0 && now - f->last_submit >= f->flush_every)
        urfile_rotate(f);
    return f->failed ? urfile_error(f, err) : 0;
}

int urfile_flush(urfile *f, cin_err *err)
{
    urfile_rotate(f);
    urfile_reap(f, 1);
    return f->failed ? urfile_error(f, err) : 0;
}

int64_t urfile_acked(const urfile *f)
{
    return f->acked;
}

int urfile_close(urfile *f, cin_err *err)
{
    if (!f)
        return 0;
    int rc = urfile_flush(f, err);
    io_uring_queue_exit(&f->ring);
    if (!f->is_stdout && close(f->fd) != 0 && !rc)
        rc = cin_err_set(err, CIN_E_IO, "%s: close failed: %s", f->name, strerror(errno));
    urfile_release(f);
    return rc;
}
