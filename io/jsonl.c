/* JSON-lines sink: each output becomes one JSON object built with jansson (which does the
 * escaping), printed with its newline into a buffer the sink keeps, and appended whole to an
 * io_uring file (urfile.h), which batches lines and writes them off the inference thread. */
#include "jsonl.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "urfile.h"

/* 15 significant digits print any decimal a double was read from unchanged (4.1, not
 * 4.0999999999999996); scores are first rounded to their shortest float form. */
#define JSONL_DUMP_FLAGS JSON_REAL_PRECISION(15)

struct jsonl_sink {
    urfile *f;
    char *name;                 /* the path, or "stdout", for messages */
    char *line;                 /* the last line printed; grows, never shrinks */
    size_t cap;
};

int jsonl_open(const char *path, double flush_every, jsonl_sink **out, cin_err *err)
{
    *out = NULL;
    jsonl_sink *s = calloc(1, sizeof *s);
    if (s)
        s->name = strdup(strcmp(path, "-") ? path : "stdout");
    if (!s || !s->name) {
        free(s);
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
    }
    int rc = urfile_open(path, flush_every, &s->f, err);
    if (rc) {
        free(s->name);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static json_t *jsonl_real(double d)
{
    return isfinite(d) ? json_real(d) : json_null();
}

/* The double whose shortest decimal is the float's shortest round-trip form (0.13f -> 0.13,
 * not 0.129999995231628). */
static double jsonl_short(float f)
{
    char buf[FMT_FLOAT_MAX];
    return strtod(fmt_float_shortest(f, buf), NULL);
}

static int jsonl_nomem(const jsonl_sink *s, cin_err *err)
{
    return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", s->name);
}

/* {"label": ..., "index": ..., "score": ...} for entry i of the top-k list, into *out. */
static int jsonl_entry(const jsonl_sink *s, int i, int index, float score,
                       const char *const *labels, json_t **out, cin_err *err)
{
    json_t *label = NULL;
    if (index < 0)
        return cin_err_set(err, CIN_E_INVAL, "%s: topk[%d]: negative class index %d", s->name,
                           i, index);
    if (labels && (!labels[index] || !(label = json_string(labels[index]))))
        return cin_err_set(err, CIN_E_INVAL, "%s: topk[%d]: label of class %d is %s", s->name,
                           i, index, labels[index] ? "not valid UTF-8" : "missing");
    json_t *e = json_object();
    int bad = !e;
    if (label)
        bad |= json_object_set_new(e, "label", label);
    bad |= json_object_set_new(e, "index", json_integer(index));
    bad |= json_object_set_new(e, "score", jsonl_real(jsonl_short(score)));
    if (bad) {
        json_decref(e);
        return jsonl_nomem(s, err);
    }
    *out = e;
    return 0;
}

static int jsonl_topk(const jsonl_sink *s, const int *idx, const float *score, int k,
                      const char *const *labels, json_t **out, cin_err *err)
{
    json_t *list = json_array();
    if (!list)
        return jsonl_nomem(s, err);
    for (int i = 0; i < k; i++) {
        json_t *e = NULL;
        int rc = jsonl_entry(s, i, idx[i], score[i], labels, &e, err);
        if (!rc && json_array_append_new(list, e))
            rc = jsonl_nomem(s, err);
        if (rc) {
            json_decref(list);
            return rc;
        }
    }
    *out = list;
    return 0;
}

/* Prints rec and its newline into s->line and writes them in one call. */
static int jsonl_emit(jsonl_sink *s, const json_t *rec, cin_err *err)
{
    size_t n = json_dumpb(rec, s->line, s->cap, JSONL_DUMP_FLAGS);
    if (n > 0 && n + 1 > s->cap) {
        char *grown = realloc(s->line, 2 * (n + 1));
        if (!grown)
            return jsonl_nomem(s, err);
        s->line = grown;
        s->cap = 2 * (n + 1);
        n = json_dumpb(rec, s->line, s->cap, JSONL_DUMP_FLAGS);
    }
    if (n == 0)
        return cin_err_set(err, CIN_E_NOMEM, "%s: cannot print the record", s->name);
    s->line[n] = '\n';
    return urfile_append(s->f, s->line, n + 1, err);
}

int jsonl_write(jsonl_sink *s, const sink_result *r, cin_err *err)
{
    json_t *topk = NULL, *source = json_string(r->source ? r->source : "");
    if (!source)
        return cin_err_set(err, CIN_E_INVAL, "%s: source id is not valid UTF-8", s->name);
    int rc = jsonl_topk(s, r->idx, r->score, r->k, r->labels, &topk, err);
    if (rc) {
        json_decref(source);
        return rc;
    }
    json_t *rec = json_object();
    int bad = !rec;
    bad |= json_object_set_new(rec, "source", source);
    bad |= json_object_set_new(rec, "frame", json_integer((json_int_t)r->frame));
    bad |= json_object_set_new(rec, "pts", jsonl_real(r->pts));
    bad |= json_object_set_new(rec, "wall", jsonl_real(r->wall));
    bad |= json_object_set_new(rec, "topk", topk);
    bad |= json_object_set_new(rec, "latency_ms", jsonl_real(r->latency_ms));
    rc = bad ? jsonl_nomem(s, err) : jsonl_emit(s, rec, err);
    json_decref(rec);
    return rc;
}

int jsonl_tick(jsonl_sink *s, double now, cin_err *err)
{
    return urfile_tick(s->f, now, err);
}

int jsonl_close(jsonl_sink *s, cin_err *err)
{
    if (!s)
        return 0;
    int rc = urfile_close(s->f, err);
    free(s->line);
    free(s->name);
    free(s);
    return rc;
}
