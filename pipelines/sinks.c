/* The sinks of a pipeline, opened from its config; each sink is one of jsonl, csv or npy. */
#include "sinks.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csvsink.h"
#include "jsonl.h"
#include "npy.h"

#define SINKS_PART_MAX 4096 /* bytes of an unfinished file's name, with its NUL */

struct sinks {
    const pipe_config *cfg;
    jsonl_sink *jsonl[PIPE_MAX_SINKS];      /* one of the three per sink */
    npy_writer *npy[PIPE_MAX_SINKS];
    csv_sink *csv[PIPE_MAX_SINKS];
    char part[PIPE_MAX_SINKS][SINKS_PART_MAX];  /* "" when written in place */
    int n;                                  /* opened */
    int64_t rows;                           /* npy rows written */
    float *nan_row;
    sinks_spec spec;
};

/* Results of a sink that replaces its file go to a .part file renamed over `path` only where
 * `path` is a regular file or nothing yet; stdout, a FIFO, a device or a symbolic link is
 * written in place, never replaced. */
static int sinks_renamed_into_place(const pipe_sink *k)
{
    struct stat st;
    if (!k->replace || strcmp(k->path, "-") == 0)
        return 0;
    return lstat(k->path, &st) != 0 || S_ISREG(st.st_mode);
}

/* The unfinished file a sink at path is written to by process pid, "<path>.part-<pid>", into
 * buf; "" for stdout ("-") or a name that does not fit. */
static void sinks_part_name(const char *path, long pid, char *buf, size_t cap)
{
    int n = strcmp(path, "-") ? snprintf(buf, cap, "%s.part-%ld", path, pid) : -1;
    if (n < 0 || (size_t)n >= cap)
        buf[0] = '\0';
}

static int sinks_open_one(sinks *s, int i, const char *path, cin_err *err)
{
    const pipe_sink *k = &s->cfg->sinks[i];
    int64_t row[1] = {s->spec.out_size};
    if (k->type == PIPE_SINK_JSONL)
        return jsonl_open(path, k->flush, &s->jsonl[i], err);
    if (k->type == PIPE_SINK_CSV)
        return csv_sink_open(path, s->spec.topk, s->spec.labelled, k->flush, &s->csv[i], err);
    return npy_writer_open(path, 1, row, &s->npy[i], err);
}

static int sinks_close_one(sinks *s, int i, cin_err *err)
{
    if (s->jsonl[i])
        return jsonl_close(s->jsonl[i], err);
    if (s->csv[i])
        return csv_sink_close(s->csv[i], err);
    return npy_writer_close(s->npy[i], err);
}

/* Names the failing sink by its key before the message, which names the file written. */
static int sinks_fail(const sinks *s, int i, int rc, cin_err *err)
{
    return err ? cin_err_wrap(err, rc, "%s: sinks[%d] (%s)", s->cfg->path, i,
                              s->cfg->sinks[i].path)
               : rc;
}

static int sinks_open_all(sinks *s, cin_err *err)
{
    const pipe_config *c = s->cfg;
    for (int i = 0; i < c->n_sinks; i++) {
        const pipe_sink *k = &c->sinks[i];
        char *part = s->part[i];
        if (sinks_renamed_into_place(k)) {
            sinks_part_name(k->path, (long)getpid(), part, sizeof s->part[i]);
            if (!part[0])
                return cin_err_set(err, CIN_E_CONFIG, "%s: sinks[%d].path: too long", c->path,
                                   i);
        }
        int rc = sinks_open_one(s, i, part[0] ? part : k->path, err);
        if (rc) {
            part[0] = '\0';
            return cin_err_wrap(err, rc, "%s: sinks[%d].path: cannot write '%s'", c->path, i,
                                k->path);
        }
        s->n = i + 1;
    }
    return 0;
}

int sinks_open(const pipe_config *c, const sinks_spec *sp, sinks **out, cin_err *err)
{
    sinks *s = calloc(1, sizeof *s);
    *out = NULL;
    if (s) {
        s->cfg = c;
        s->spec = *sp;
        s->nan_row = malloc(sizeof(float) * (size_t)sp->out_size);
    }
    if (!s || !s->nan_row) {
        sinks_close(s, 0, NULL);
        return cin_err_set(err, CIN_E_NOMEM, "pipeline: out of memory");
    }
    for (int j = 0; j < sp->out_size; j++)
        s->nan_row[j] = NAN;
    int rc = sinks_open_all(s, err);
    if (rc) {
        sinks_close(s, 0, NULL);
        return rc;
    }
    *out = s;
    return 0;
}

int sinks_write(sinks *s, const sink_result *res, const float *row, cin_err *err)
{
    for (int i = 0; i < s->n; i++) {
        int rc = 0;
        if (s->npy[i]) {
            rc = npy_writer_append(s->npy[i], row ? row : s->nan_row, err);
            /* keep the file a valid array of the rows so far, should the run be cut short */
            if (!rc && (s->rows + 1) % 64 == 0)
                rc = npy_writer_flush(s->npy[i], err);
        } else if (row && s->jsonl[i]) {
            rc = jsonl_write(s->jsonl[i], res, err);
        } else if (row) {
            rc = csv_sink_write(s->csv[i], res, err);
        }
        if (rc)
            return sinks_fail(s, i, rc, err);
    }
    s->rows++;
    return 0;
}

int sinks_tick(sinks *s, double now, cin_err *err)
{
    for (int i = 0; i < s->n; i++) {
        int rc = s->jsonl[i] ? jsonl_tick(s->jsonl[i], now, err)
                 : s->csv[i] ? csv_sink_tick(s->csv[i], now, err)
                             : 0;
        if (rc)
            return sinks_fail(s, i, rc, err);
    }
    return 0;
}

int sinks_close(sinks *s, int keep, cin_err *err)
{
    if (!s)
        return 0;
    int first = 0;
    for (int i = 0; i < s->n; i++) {
        cin_err e = {0};
        int rc = sinks_close_one(s, i, &e);
        const char *part = s->part[i], *path = s->cfg->sinks[i].path;
        if (part[0] && keep && rename(part, path) != 0 && !rc)
            rc = cin_err_set(&e, CIN_E_IO, "%s: cannot rename %s into place, where the "
                             "results stay: %s", path, part, strerror(errno));
        else if (part[0] && !keep)
            remove(part);
        if (rc && !first) {
            first = sinks_fail(s, i, rc, &e);
            if (err)
                *err = e;
        } else if (rc) {
            sinks_fail(s, i, rc, &e);
            cin_err_also(err, &e);
        }
    }
    free(s->nan_row);
    free(s);
    return first;
}
