/* Pipeline configuration: a YAML file (read with libyaml's document API) to a validated
 * pipe_config. Each section is read as a pcfg_map; the typed getters look a key up, check its
 * value and, on error, name the file, line:column, dotted field and what was expected, so a
 * user can fix the file from one message. Absent keys keep the defaults set beforehand. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "lines.h"
#include "video.h"

#define PCFG_MAX_BYTES (1 << 20)    /* a pipeline file is a few hundred bytes */
#define PCFG_FIELD_MAX 96
#define PCFG_GOT_MAX 48             /* a quoted value in a message is cut to this */
#define PCFG_DIGITS "0123456789"
#define PCFG_MAX_SIDE 16384         /* the largest resize io/video.h accepts */
#define PCFG_MIN_CROP 32            /* X3D halves the frame five times */
#define PCFG_MAX_CROP 4096
#define PCFG_MAX_WINDOW 1024        /* temporal windows, in frames */
#define PCFG_MAX_CLASSES 100000
#define PCFG_MAX_JOINTS 256
#define PCFG_MAX_TIMEOUT 86400      /* seconds, for timeouts and reconnect waits */
#define PCFG_MAX_QUEUE 1024         /* frames a source decodes ahead */
#define PCFG_MAX_WORKERS 64

typedef struct pcfg_ctx {
    const char *file;               /* the path as given, for messages */
    size_t dir_len;                 /* bytes of file up to and including its last '/' */
    yaml_document_t *doc;
    cin_err *err;
} pcfg_ctx;

/* A mapping being read: the top level (""), a section ("model") or a sink ("sinks[0]"). */
typedef struct pcfg_map {
    pcfg_ctx *ctx;
    yaml_node_t *node;              /* a mapping node, or NULL when the section is absent */
    const char *name;
} pcfg_map;

static const char *const pcfg_x3d_sizes[] = {"xs", "s", "m", "l", NULL};

/* The model families cin can build. A new family is one row here (and its builder in
 * graphs/); sizes is NULL for a family that takes no size. */
static const struct pcfg_arch {
    const char *name;
    const char *const *sizes;
} pcfg_archs[] = {
    {"x3d", pcfg_x3d_sizes},
    {"transformer", NULL},
    {"stgcn", NULL},
};
#define PCFG_N_ARCHS (int)(sizeof pcfg_archs / sizeof pcfg_archs[0])

static const char *const pcfg_top_keys[] = {
    "source", "sources", "workers", "preprocess", "model", "postprocess", "sinks", NULL};
static const char *const pcfg_source_keys[] = {
    "type", "id", "uri", "path", "format", "score", "open_timeout", "read_timeout",
    "rtsp_transport", "size", "rate", "pixel_format", "reconnect", "queue", "overload",
    "realtime", "weights", "labels", NULL};
static const char *const pcfg_overloads[] = {"keep-newest", "block", NULL};
static const char *const pcfg_reconnect_keys[] = {"initial", "max", "attempts", NULL};
static const char *const pcfg_transports[] = {"tcp", "udp", NULL};
static const char *const pcfg_pre_keys[] = {"fps", "resize", "crop", "mean", "std",
                                            "centre_joint", "scale_bone", NULL};
static const char *const pcfg_model_keys[] = {
    "arch", "size", "weights", "seed", "mode", "pool_window", "se_window", "num_classes",
    "transformer", "skeleton", "head", NULL};
static const char *const pcfg_transformer_keys[] = {
    "input_dim", "d_model", "nhead", "dim_feedforward", "layers", "window", "norm_first",
    "activation", "pos", "class_token", "first_layer", NULL};
static const char *const pcfg_skeleton_keys[] = {
    "variant", "graph", "strategy", "layout", "channels", "persons", "clip_frames", NULL};
static const char *const pcfg_variants[] = {"st-gcn", "st-gcn*", "agcn", "agcn*", NULL};
static const char *const pcfg_graphs[] = {"ntu-rgb+d", "openpose", "coco", "cmu31", NULL};
static const char *const pcfg_strategies[] = {"spatial", "distance", "uniform", NULL};
static const char *const pcfg_sk_layouts[] = {"st-gcn", "continual-skeletons", NULL};
static const char *const pcfg_activations[] = {"relu", "gelu", NULL};
static const char *const pcfg_pos_kinds[] = {"none", "learned", "sinusoidal", NULL};
static const char *const pcfg_first_layers[] = {"retroactive", "regular", NULL};
static const char *const pcfg_post_keys[] = {"softmax", "topk", "labels", NULL};
static const char *const pcfg_sink_keys[] = {"type", "path", "flush", "replace", NULL};

/* Indexed by the pipe_* enums. */
static const char *const pcfg_source_types[] = {"video", "npy", "features", "skeleton", NULL};
static const char *const pcfg_formats[] = {"jsonl", "csv", "npy", "ntu", "bvh", NULL};
static const char *const pcfg_modes[] = {"continual", "clip", NULL};
static const char *const pcfg_sink_types[] = {"jsonl", "npy", "csv", NULL};

/* ---- messages ---- */

/* Copies src into dst (cap >= 4) so that it stays one printable line: control characters
 * become '?', and a long text is cut on a UTF-8 character boundary and ends in "...". */
static void pcfg_clean(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src), keep = n < cap ? n : cap - 4;
    while (keep < n && keep > 0 && ((unsigned char)src[keep] & 0xC0) == 0x80)
        keep--;
    for (size_t i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c < 0x20 || c == 0x7F) ? '?' : (char)c;
    }
    strcpy(dst + keep, keep < n ? "..." : "");
}

/* How a found value reads in a message: 'text' for a scalar, else the kind of node. */
static const char *pcfg_got(const yaml_node_t *n, char *buf, size_t cap)
{
    if (!n)
        return "nothing";
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    char text[PCFG_GOT_MAX];
    pcfg_clean(text, sizeof text, (const char *)n->data.scalar.value);
    snprintf(buf, cap, "'%s'", text);
    return buf;
}

static int pcfg_fail(const pcfg_ctx *ctx, const yaml_node_t *at, const char *field,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Records "file[:line:col]: [field: ]detail" as a CIN_E_CONFIG error. */
static int pcfg_fail(const pcfg_ctx *ctx, const yaml_node_t *at, const char *field,
                     const char *fmt, ...)
{
    char where[64] = "", detail[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (at)
        snprintf(where, sizeof where, ":%zu:%zu", at->start_mark.line + 1,
                 at->start_mark.column + 1);
    return cin_err_set(ctx->err, CIN_E_CONFIG, "%s%s: %s%s%s", ctx->file, where,
                       field ? field : "", field ? ": " : "", detail);
}

static int pcfg_expected(const pcfg_ctx *ctx, const yaml_node_t *v, const char *field,
                         const char *want)
{
    char got[PCFG_GOT_MAX + 8];
    return pcfg_fail(ctx, v, field, "expected %s, got %s", want, pcfg_got(v, got, sizeof got));
}

static int pcfg_missing(const pcfg_ctx *ctx, const char *field)
{
    return pcfg_fail(ctx, NULL, field, "missing (required)");
}

static int pcfg_nomem(const pcfg_ctx *ctx)
{
    return cin_err_set(ctx->err, CIN_E_NOMEM, "%s: out of memory", ctx->file);
}

/* "a, b, c" from a NULL-terminated list. */
static void pcfg_join(char *buf, size_t cap, const char *const *names)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; names[i] && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", names[i]);
}

static void pcfg_field(char *buf, const char *map_name, const char *key)
{
    char clean[PCFG_FIELD_MAX / 2];
    pcfg_clean(clean, sizeof clean, key);
    /* field names are short; a cut one would still locate the problem */
    if (snprintf(buf, PCFG_FIELD_MAX, "%s%s%s", map_name, map_name[0] ? "." : "", clean) >=
        PCFG_FIELD_MAX)
        buf[PCFG_FIELD_MAX - 1] = '\0';
}

/* ---- nodes ---- */

static yaml_node_t *pcfg_node(const pcfg_ctx *ctx, int id)
{
    return yaml_document_get_node(ctx->doc, id);
}

/* A plain empty, ~ or null scalar: treated as if the key were absent. */
static int pcfg_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = (const char *)n->data.scalar.value;
    return !s[0] || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

/* n is a scalar reading text (a key name, or a value such as "-"). */
static int pcfg_is_text(const yaml_node_t *n, const char *text)
{
    return n && n->type == YAML_SCALAR_NODE && !strcmp((const char *)n->data.scalar.value, text);
}

/* The value of key in m; NULL when m is absent, the key is absent or its value is null. */
static yaml_node_t *pcfg_find(const pcfg_map *m, const char *key)
{
    if (!m->node)
        return NULL;
    yaml_node_pair_t *p = m->node->data.mapping.pairs.start;
    for (; p < m->node->data.mapping.pairs.top; p++) {
        if (!pcfg_is_text(pcfg_node(m->ctx, p->key), key))
            continue;
        yaml_node_t *v = pcfg_node(m->ctx, p->value);
        return (v && !pcfg_is_null(v)) ? v : NULL;
    }
    return NULL;
}

static int pcfg_in(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], s))
            return i;
    return -1;
}

/* Every key of m must be a known name and appear once. */
static int pcfg_check_keys(const pcfg_map *m, const char *const *known)
{
    const pcfg_ctx *ctx = m->ctx;
    yaml_node_pair_t *start = m->node->data.mapping.pairs.start;
    char field[PCFG_FIELD_MAX], list[256];
    for (yaml_node_pair_t *p = start; p < m->node->data.mapping.pairs.top; p++) {
        yaml_node_t *k = pcfg_node(ctx, p->key);
        if (!k || k->type != YAML_SCALAR_NODE)
            return pcfg_expected(ctx, k, m->name[0] ? m->name : NULL, "a key name");
        const char *key = (const char *)k->data.scalar.value;
        pcfg_field(field, m->name, key);
        pcfg_join(list, sizeof list, known);
        if (pcfg_in(known, key) < 0)
            return pcfg_fail(ctx, k, field, "unknown key (known: %s)", list);
        for (yaml_node_pair_t *q = start; q < p; q++) {
            yaml_node_t *first = pcfg_node(ctx, q->key);
            if (pcfg_is_text(first, key))
                return pcfg_fail(ctx, k, field, "duplicate key (first at %zu:%zu)",
                                 first->start_mark.line + 1, first->start_mark.column + 1);
        }
    }
    return 0;
}

/* Section key of parent into *out; an absent or null section leaves out->node NULL. */
static int pcfg_section(const pcfg_map *parent, const char *key, const char *const *known,
                        int required, pcfg_map *out)
{
    *out = (pcfg_map){parent->ctx, pcfg_find(parent, key), key};
    if (!out->node)
        return required ? pcfg_missing(parent->ctx, key) : 0;
    if (out->node->type != YAML_MAPPING_NODE)
        return pcfg_expected(parent->ctx, out->node, key, "a mapping");
    return pcfg_check_keys(out, known);
}

/* The text of scalar v; a list, a mapping or an embedded NUL is "expected want". */
static int pcfg_text(const pcfg_ctx *ctx, const yaml_node_t *v, const char *field,
                     const char *want, const char **out)
{
    *out = "";
    if (v->type != YAML_SCALAR_NODE)
        return pcfg_expected(ctx, v, field, want);
    *out = (const char *)v->data.scalar.value;
    if (strlen(*out) != v->data.scalar.length)
        return pcfg_fail(ctx, v, field, "expected %s, got text with a NUL character", want);
    return 0;
}

/* ---- scalars ---- */

/* A decimal number: [+-]digits[.digits][e[+-]digits], ".5" and "5." included; no inf, nan
 * or hex, which strtod alone would take. */
static int pcfg_parse_real(const char *s, double *out)
{
    const char *p = s + (*s == '+' || *s == '-');
    size_t whole = strspn(p, PCFG_DIGITS), frac = 0;
    p += whole;
    if (*p == '.') {
        frac = strspn(++p, PCFG_DIGITS);
        p += frac;
    }
    if (whole + frac == 0)
        return -1;
    if (*p == 'e' || *p == 'E') {
        p += 1 + (p[1] == '+' || p[1] == '-');
        size_t exp = strspn(p, PCFG_DIGITS);
        if (!exp)
            return -1;
        p += exp;
    }
    double v = strtod(s, NULL);
    if (*p || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* Base 10 with an optional sign; -1 if not an integer or out of long long's range. */
static int pcfg_parse_int(const char *s, long long *out)
{
    const char *p = s + (*s == '+' || *s == '-');
    if (!*p || strspn(p, PCFG_DIGITS) != strlen(p))
        return -1;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

/* A number >= lo (> lo when open) at field, from node v. */
static int pcfg_number(const pcfg_ctx *ctx, const yaml_node_t *v, const char *field, double lo,
                       int open, const char *want, double *out)
{
    const char *s;
    double d;
    int rc = pcfg_text(ctx, v, field, want, &s);
    if (rc)
        return rc;
    if (pcfg_parse_real(s, &d) || d < lo || (open && d == lo))
        return pcfg_expected(ctx, v, field, want);
    *out = d;
    return 0;
}

static int pcfg_get_number(const pcfg_map *m, const char *key, double lo, const char *want,
                           double *out)
{
    char field[PCFG_FIELD_MAX];
    yaml_node_t *v = pcfg_find(m, key);
    if (!v)
        return 0;
    pcfg_field(field, m->name, key);
    return pcfg_number(m->ctx, v, field, lo, 0, want, out);
}

static int pcfg_get_int(const pcfg_map *m, const char *key, long long lo, long long hi,
                        int *out)
{
    char field[PCFG_FIELD_MAX], want[64];
    const char *s;
    long long n;
    yaml_node_t *v = pcfg_find(m, key);
    if (!v)
        return 0;
    pcfg_field(field, m->name, key);
    if (hi == INT_MAX)
        snprintf(want, sizeof want, "an integer >= %lld", lo);
    else
        snprintf(want, sizeof want, "an integer in %lld..%lld", lo, hi);
    int rc = pcfg_text(m->ctx, v, field, want, &s);
    if (rc)
        return rc;
    if (pcfg_parse_int(s, &n) || n < lo || n > hi)
        return pcfg_expected(m->ctx, v, field, want);
    *out = (int)n;
    return 0;
}

static int pcfg_get_u64(const pcfg_map *m, const char *key, uint64_t *out)
{
    char field[PCFG_FIELD_MAX];
    const char *want = "a non-negative integer below 2^64", *s;
    yaml_node_t *v = pcfg_find(m, key);
    if (!v)
        return 0;
    pcfg_field(field, m->name, key);
    int rc = pcfg_text(m->ctx, v, field, want, &s);
    if (rc)
        return rc;
    const char *digits = s + (*s == '+');
    errno = 0;
    unsigned long long n = strtoull(digits, NULL, 10);
    if (!*digits || strspn(digits, PCFG_DIGITS) != strlen(digits) || errno == ERANGE)
        return pcfg_expected(m->ctx, v, field, want);
    *out = (uint64_t)n;
    return 0;
}

/* YAML 1.2 core booleans only: yes/no/on/off are rejected rather than guessed. */
static int pcfg_get_bool(const pcfg_map *m, const char *key, int *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", NULL};
    static const char *const no[] = {"false", "False", "FALSE", NULL};
    char field[PCFG_FIELD_MAX];
    const char *s;
    yaml_node_t *v = pcfg_find(m, key);
    if (!v)
        return 0;
    pcfg_field(field, m->name, key);
    int rc = pcfg_text(m->ctx, v, field, "true or false", &s);
    if (rc)
        return rc;
    if (pcfg_in(yes, s) < 0 && pcfg_in(no, s) < 0)
        return pcfg_expected(m->ctx, v, field, "true or false");
    *out = pcfg_in(yes, s) >= 0;
    return 0;
}

/* One of names; *idx is its index. */
static int pcfg_get_choice(const pcfg_map *m, const char *key, const char *const *names,
                           int *idx)
{
    char field[PCFG_FIELD_MAX], want[160] = "one of ";
    const char *s;
    yaml_node_t *v = pcfg_find(m, key);
    if (!v)
        return 0;
    pcfg_field(field, m->name, key);
    pcfg_join(want + strlen(want), sizeof want - strlen(want), names);
    int rc = pcfg_text(m->ctx, v, field, want, &s);
    if (rc)
        return rc;
    if (pcfg_in(names, s) < 0)
        return pcfg_expected(m->ctx, v, field, want);
    *idx = pcfg_in(names, s);
    return 0;
}

/* 3 numbers, each > 0 when positive, each within float range. */
static int pcfg_get_vec3(const pcfg_map *m, const char *key, int positive, float out[3])
{
    const char *want = positive ? "a list of 3 positive numbers" : "a list of 3 numbers";
    const char *item_want = positive ? "a positive number" : "a number";
    char field[PCFG_FIELD_MAX], item[PCFG_FIELD_MAX + 16];
    yaml_node_t *v = pcfg_find(m, key);
    if (!v)
        return 0;
    pcfg_field(field, m->name, key);
    if (v->type != YAML_SEQUENCE_NODE)
        return pcfg_expected(m->ctx, v, field, want);
    long n = (long)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n != 3)
        return pcfg_fail(m->ctx, v, field, "expected %s, got %ld", want, n);
    for (int i = 0; i < 3; i++) {
        yaml_node_t *e = pcfg_node(m->ctx, v->data.sequence.items.start[i]);
        double d = 0;
        snprintf(item, sizeof item, "%s[%d]", field, i);
        int rc = e ? pcfg_number(m->ctx, e, item, positive ? 0 : -INFINITY, positive,
                                 item_want, &d) : pcfg_missing(m->ctx, item);
        if (rc)
            return rc;
        out[i] = (float)d;
        if (!isfinite(out[i]) || (positive && !(out[i] > 0)))
            return pcfg_expected(m->ctx, e, item, "a number within float range");
    }
    return 0;
}

/* ---- strings and paths ---- */

static int pcfg_has_scheme(const char *s)
{
    static const char tail[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               PCFG_DIGITS "+.-";
    if (!isalpha((unsigned char)s[0]))
        return 0;
    return !strncmp(s + 1 + strspn(s + 1, tail), "://", 3);
}

/* p against the YAML file's directory, unless it is absolute, a URI with a scheme, "-"
 * (stdin or stdout) or a "unix:" socket. */
static char *pcfg_resolve(const pcfg_ctx *ctx, const char *p)
{
    if (p[0] == '/' || pcfg_has_scheme(p) || ctx->dir_len == 0 || strcmp(p, "-") == 0 ||
        strncmp(p, "unix:", 5) == 0)
        return strdup(p);
    size_t n = strlen(p);
    char *r = malloc(ctx->dir_len + n + 1);
    if (!r)
        return NULL;
    memcpy(r, ctx->file, ctx->dir_len);
    memcpy(r + ctx->dir_len, p, n + 1);
    return r;
}

/* A non-empty string; resolved as a path when is_path. Replaces *out. */
static int pcfg_get_str(const pcfg_map *m, const char *key, int is_path, char **out)
{
    char field[PCFG_FIELD_MAX];
    const char *want = is_path ? "a path" : "a non-empty string", *s;
    yaml_node_t *v = pcfg_find(m, key);
    if (!v)
        return 0;
    pcfg_field(field, m->name, key);
    int rc = pcfg_text(m->ctx, v, field, want, &s);
    if (rc)
        return rc;
    if (!s[0])
        return pcfg_expected(m->ctx, v, field, want);
    free(*out);
    *out = is_path ? pcfg_resolve(m->ctx, s) : strdup(s);
    return *out ? 0 : pcfg_nomem(m->ctx);
}

/* ---- sections ---- */

/* A skeleton file's format from its extension: .npy, .skeleton (NTU RGB+D), .bvh, .csv;
 * anything else (stdin, a socket, .jsonl) is JSON lines. */
static pipe_format pcfg_skeleton_format(const char *uri)
{
    static const struct {
        const char *ext;
        pipe_format f;
    } ext[] = {{".npy", PIPE_FORMAT_NPY}, {".skeleton", PIPE_FORMAT_NTU},
               {".bvh", PIPE_FORMAT_BVH}, {".csv", PIPE_FORMAT_CSV}};
    size_t n = strlen(uri);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t m = strlen(ext[i].ext);
        if (n > m && strcasecmp(uri + n - m, ext[i].ext) == 0)
            return ext[i].f;
    }
    return PIPE_FORMAT_JSONL;
}

/* format: features take jsonl or csv; skeletons any, by default from the uri. */
static int pcfg_parse_format(const pcfg_map *m, pipe_source *s)
{
    char field[PCFG_FIELD_MAX];
    yaml_node_t *v = pcfg_find(m, "format");
    int type = s->type, fmt = -1;
    if (!v) {
        s->format = type == PIPE_SOURCE_SKELETON ? pcfg_skeleton_format(s->uri)
                                                 : PIPE_FORMAT_JSONL;
        return 0;
    }
    pcfg_field(field, m->name, "format");
    if (type != PIPE_SOURCE_FEATURES && type != PIPE_SOURCE_SKELETON)
        return pcfg_fail(m->ctx, v, field, "only for types features and skeleton");
    int rc = pcfg_get_choice(m, "format", pcfg_formats, &fmt);
    if (!rc && type == PIPE_SOURCE_FEATURES && fmt > PIPE_FORMAT_CSV)
        rc = pcfg_expected(m->ctx, v, field, "jsonl or csv (for type features)");
    s->format = (pipe_format)fmt;
    return rc;
}

/* "<map>.<key>" for a field named in a message without a node of its own. */
static const char *pcfg_name(const pcfg_map *m, const char *key, char *buf)
{
    pcfg_field(buf, m->name, key);
    return buf;
}

/* A number of seconds in 0..PCFG_MAX_TIMEOUT (> 0 when positive). */
static int pcfg_get_seconds(const pcfg_map *m, const char *key, int positive, double *out)
{
    char field[PCFG_FIELD_MAX];
    const char *want = positive ? "a positive number of seconds, at most 86400"
                                : "a non-negative number of seconds, at most 86400";
    yaml_node_t *v = pcfg_find(m, key);
    if (!v)
        return 0;
    pcfg_field(field, m->name, key);
    int rc = pcfg_number(m->ctx, v, field, 0, positive, want, out);
    return rc || *out <= PCFG_MAX_TIMEOUT ? rc : pcfg_expected(m->ctx, v, field, want);
}

/* [width, height], each in 1..PCFG_MAX_SIDE. */
static int pcfg_get_size(const pcfg_map *m, const char *key, int *w, int *h)
{
    const char *want = "a list [width, height] of 2 integers in 1..16384";
    char field[PCFG_FIELD_MAX];
    yaml_node_t *v = pcfg_find(m, key);
    if (!v)
        return 0;
    pcfg_field(field, m->name, key);
    if (v->type != YAML_SEQUENCE_NODE ||
        v->data.sequence.items.top - v->data.sequence.items.start != 2)
        return pcfg_expected(m->ctx, v, field, want);
    int *dst[2] = {w, h};
    for (int i = 0; i < 2; i++) {
        yaml_node_t *e = pcfg_node(m->ctx, v->data.sequence.items.start[i]);
        const char *s = "";
        long long n;
        if (!e || pcfg_text(m->ctx, e, field, want, &s) || pcfg_parse_int(s, &n) || n < 1 ||
            n > PCFG_MAX_SIDE)
            return pcfg_expected(m->ctx, e ? e : v, field, want);
        *dst[i] = (int)n;
    }
    return 0;
}

static int pcfg_is_live(const pipe_source *s)
{
    return s->type == PIPE_SOURCE_VIDEO && video_uri_is_live(s->uri);
}

/* reconnect: false, true, or {initial, max, attempts}; live sources only. */
static int pcfg_parse_reconnect(const pcfg_map *src, pipe_source *s)
{
    char name[PCFG_FIELD_MAX], field[PCFG_FIELD_MAX];
    yaml_node_t *v = pcfg_find(src, "reconnect");
    s->reconnect.on = pcfg_is_live(s);
    s->reconnect.initial = PIPE_DEFAULT_RECONNECT_INITIAL;
    s->reconnect.max = PIPE_DEFAULT_RECONNECT_MAX;
    if (!v)
        return 0;
    pcfg_field(name, src->name, "reconnect");
    if (!pcfg_is_live(s))
        return pcfg_fail(src->ctx, v, name, "only for live video sources (network uris and "
                         "/dev/ devices); a file ends at its end");
    if (v->type != YAML_MAPPING_NODE)
        return pcfg_get_bool(src, "reconnect", &s->reconnect.on);
    pcfg_map m = {src->ctx, v, name};
    int rc = pcfg_check_keys(&m, pcfg_reconnect_keys);
    rc = rc ? rc : pcfg_get_seconds(&m, "initial", 1, &s->reconnect.initial);
    rc = rc ? rc : pcfg_get_seconds(&m, "max", 1, &s->reconnect.max);
    rc = rc ? rc : pcfg_get_int(&m, "attempts", 0, INT_MAX, &s->reconnect.attempts);
    if (!rc && s->reconnect.max < s->reconnect.initial)
        rc = pcfg_fail(src->ctx, pcfg_find(&m, "max"), pcfg_name(&m, "max", field),
                       "expected at least initial (%g), got %g", s->reconnect.initial,
                       s->reconnect.max);
    return rc;
}

/* A key that only some sources take (`ok`): present elsewhere, it is refused, naming those
 * (`which`, after "only for"). */
static int pcfg_only_for(const pcfg_map *m, const pipe_source *s, const char *key, int ok,
                         const char *which)
{
    char field[PCFG_FIELD_MAX];
    yaml_node_t *v = pcfg_find(m, key);
    if (!v || ok)
        return 0;
    return pcfg_fail(m->ctx, v, pcfg_name(m, key, field), "only for %s (the source is '%s')", which,
                     s->uri);
}

/* The live-source keys: timeouts for any video and for rows from a socket, the others for the
 * video uris that take them. A row source connects within the video default but may wait for
 * rows forever: a tracker with nobody in view can be silent and still be well. */
static int pcfg_parse_live(const pcfg_map *m, pipe_source *s)
{
    const char *uri = s->uri;
    int video = s->type == PIPE_SOURCE_VIDEO, live = pcfg_is_live(s);
    int v4l2 = video && video_uri_is_v4l2(uri), tr = -1;
    int rows = (s->type == PIPE_SOURCE_FEATURES || s->type == PIPE_SOURCE_SKELETON) &&
               lines_uri_is_socket(uri);
    const char *timed = "video sources and features or skeleton sources on a socket (tcp://, "
                        "udp://, unix:)";
    s->open_timeout = live || rows ? PIPE_DEFAULT_OPEN_TIMEOUT : 0;
    s->read_timeout = live ? PIPE_DEFAULT_READ_TIMEOUT : rows ? PIPE_DEFAULT_ROWS_READ_TIMEOUT
                                                             : 0;
    int rc = pcfg_only_for(m, s, "open_timeout", video || rows, timed);
    rc = rc ? rc : pcfg_only_for(m, s, "read_timeout", video || rows, timed);
    rc = rc ? rc : pcfg_only_for(m, s, "rtsp_transport", video && !strncmp(uri, "rtsp://", 7),
                                 "video sources with an rtsp:// uri");
    static const char *const v4l2_keys[] = {"size", "rate", "pixel_format"};
    for (int i = 0; !rc && i < 3; i++)
        rc = pcfg_only_for(m, s, v4l2_keys[i], v4l2,
                           "video sources from a V4L2 device (/dev/video*)");
    rc = rc ? rc : pcfg_only_for(m, s, "realtime", video && !live,
                                 "video sources read from a file");
    rc = rc ? rc : pcfg_get_seconds(m, "open_timeout", 0, &s->open_timeout);
    rc = rc ? rc : pcfg_get_seconds(m, "read_timeout", 0, &s->read_timeout);
    rc = rc ? rc : pcfg_get_choice(m, "rtsp_transport", pcfg_transports, &tr);
    if (!rc && tr >= 0 && !(s->rtsp_transport = strdup(pcfg_transports[tr])))
        rc = pcfg_nomem(m->ctx);
    rc = rc ? rc : pcfg_get_size(m, "size", &s->width, &s->height);
    rc = rc ? rc : pcfg_get_number(m, "rate", 0, "a non-negative number", &s->rate);
    rc = rc ? rc : pcfg_get_str(m, "pixel_format", 0, &s->pixel_format);
    rc = rc ? rc : pcfg_get_bool(m, "realtime", &s->realtime);
    return rc ? rc : pcfg_parse_reconnect(m, s);
}

/* queue and overload: live sources keep the newest frames, the others block. */
static int pcfg_parse_overload(const pcfg_map *m, pipe_source *s)
{
    int o = -1;
    s->queue = PIPE_DEFAULT_QUEUE;
    int rc = pcfg_get_int(m, "queue", 1, PCFG_MAX_QUEUE, &s->queue);
    rc = rc ? rc : pcfg_get_choice(m, "overload", pcfg_overloads, &o);
    if (!rc)
        s->overload = o >= 0 ? (pipe_overload)o
                      : pcfg_is_live(s) || s->realtime ? PIPE_OVERLOAD_KEEP_NEWEST
                                                       : PIPE_OVERLOAD_BLOCK;
    return rc;
}

/* type, and the uri (or path, for npy) that goes with it. */
static int pcfg_parse_where(const pcfg_map *m, pipe_source *s)
{
    char field[PCFG_FIELD_MAX];
    int type = -1;
    int rc = pcfg_get_choice(m, "type", pcfg_source_types, &type);
    if (rc)
        return rc;
    yaml_node_t *uri = pcfg_find(m, "uri"), *path = pcfg_find(m, "path");
    if (type < 0)
        type = (path && !uri) ? PIPE_SOURCE_NPY : PIPE_SOURCE_VIDEO;
    s->type = (pipe_source_type)type;
    if (type != PIPE_SOURCE_NPY && path)
        return pcfg_fail(m->ctx, path, pcfg_name(m, "path", field),
                         "only for type npy (a %s source takes uri)", pcfg_source_types[type]);
    if (type == PIPE_SOURCE_NPY && uri)
        return pcfg_fail(m->ctx, uri, pcfg_name(m, "uri", field),
                         "only for types video, features and skeleton (an npy source takes "
                         "path)");
    const char *key = type == PIPE_SOURCE_NPY ? "path" : "uri";
    rc = pcfg_get_str(m, key, 1, &s->uri);
    if (!rc && !s->uri)
        rc = pcfg_missing(m->ctx, pcfg_name(m, key, field));
    return rc;
}

/* One source: the mapping `source`, or item i of the list `sources`. */
static int pcfg_parse_one_source(const pcfg_map *m, int i, pipe_source *s)
{
    char field[PCFG_FIELD_MAX];
    int rc = pcfg_check_keys(m, pcfg_source_keys);
    rc = rc ? rc : pcfg_parse_where(m, s);
    rc = rc ? rc : pcfg_parse_format(m, s);
    yaml_node_t *score = pcfg_find(m, "score");
    if (!rc && score && s->type != PIPE_SOURCE_SKELETON)
        return pcfg_fail(m->ctx, score, pcfg_name(m, "score", field), "only for type skeleton");
    rc = rc ? rc : pcfg_get_bool(m, "score", &s->score);
    rc = rc ? rc : pcfg_get_str(m, "id", 0, &s->id);
    if (!rc && s->id && strlen(s->id) >= PIPE_MAX_ID)
        return pcfg_fail(m->ctx, pcfg_find(m, "id"), pcfg_name(m, "id", field), "expected at "
                         "most %d bytes, got %zu", PIPE_MAX_ID - 1, strlen(s->id));
    for (const char *c = s->id; !rc && c && *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return pcfg_fail(m->ctx, pcfg_find(m, "id"), pcfg_name(m, "id", field), "expected "
                             "no control characters (it is printed in one-line messages)");
    if (!rc && !s->id) {
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        if (!(s->id = strdup(id)))
            rc = pcfg_nomem(m->ctx);
    }
    rc = rc ? rc : pcfg_get_str(m, "weights", 1, &s->weights);
    rc = rc ? rc : pcfg_get_str(m, "labels", 1, &s->labels);
    rc = rc ? rc : pcfg_parse_live(m, s);
    return rc ? rc : pcfg_parse_overload(m, s);
}

/* Every source's id is named in its results, so no two may share one. */
static int pcfg_unique_ids(const pcfg_ctx *ctx, const pipe_config *c)
{
    for (int i = 1; i < c->n_sources; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(c->sources[i].id, c->sources[j].id)) {
                char field[32];
                snprintf(field, sizeof field, "sources[%d].id", i);
                return pcfg_fail(ctx, NULL, field, "'%s' is also sources[%d].id; each source "
                                 "needs its own", c->sources[i].id, j);
            }
    return 0;
}

/* `source: {...}` for one source, or `sources: [{...}, ...]` for several. */
static int pcfg_parse_sources(const pcfg_map *top, pipe_config *c)
{
    yaml_node_t *one = pcfg_find(top, "source"), *list = pcfg_find(top, "sources");
    if (one && list)
        return pcfg_fail(top->ctx, list, "sources", "given with source; use one of the two");
    if (!one && !list)
        return pcfg_missing(top->ctx, "source");
    if (one) {
        pcfg_map m = {top->ctx, one, "source"};
        c->n_sources = 1;
        if (one->type != YAML_MAPPING_NODE)
            return pcfg_expected(top->ctx, one, "source", "a mapping");
        return pcfg_parse_one_source(&m, 0, &c->sources[0]);
    }
    long n = list->type == YAML_SEQUENCE_NODE
             ? (long)(list->data.sequence.items.top - list->data.sequence.items.start) : -1;
    if (n < 1 || n > PIPE_MAX_SOURCES)
        return n < 0 ? pcfg_expected(top->ctx, list, "sources", "a list of sources")
                     : pcfg_fail(top->ctx, list, "sources", "expected 1 to %d sources, got %ld",
                                 PIPE_MAX_SOURCES, n);
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "sources[%d]", i);
        yaml_node_t *item = pcfg_node(top->ctx, list->data.sequence.items.start[i]);
        c->n_sources = i + 1;
        if (!item || item->type != YAML_MAPPING_NODE)
            return pcfg_expected(top->ctx, item ? item : list, name, "a mapping");
        pcfg_map m = {top->ctx, item, name};
        int rc = pcfg_parse_one_source(&m, i, &c->sources[i]);
        if (rc)
            return rc;
    }
    return pcfg_unique_ids(top->ctx, c);
}

/* Two distinct joint indices, as [a, b]. */
static int pcfg_get_joint_pair(const pcfg_map *m, const char *key, int out[2])
{
    const char *want = "a list of 2 different joint indices";
    char field[PCFG_FIELD_MAX], item[PCFG_FIELD_MAX + 16];
    yaml_node_t *v = pcfg_find(m, key);
    if (!v)
        return 0;
    pcfg_field(field, m->name, key);
    if (v->type != YAML_SEQUENCE_NODE ||
        v->data.sequence.items.top - v->data.sequence.items.start != 2)
        return pcfg_expected(m->ctx, v, field, want);
    for (int i = 0; i < 2; i++) {
        yaml_node_t *e = pcfg_node(m->ctx, v->data.sequence.items.start[i]);
        const char *s;
        long long n;
        snprintf(item, sizeof item, "%s[%d]", field, i);
        int rc = e ? pcfg_text(m->ctx, e, item, "a joint index", &s) : pcfg_missing(m->ctx, item);
        if (rc)
            return rc;
        if (pcfg_parse_int(s, &n) || n < 0 || n >= PCFG_MAX_JOINTS)
            return pcfg_expected(m->ctx, e, item, "a joint index in 0..255");
        out[i] = (int)n;
    }
    if (out[0] == out[1])
        return pcfg_fail(m->ctx, v, field, "expected %s, got [%d, %d]", want, out[0], out[1]);
    return 0;
}

/* crop and resize may be left to the model (0): the size's crop, and crop * 8 / 7 (182 for
 * 160, 256 for 224, as the X3D recipes resize). Only two given values are compared here. */
static int pcfg_parse_preprocess(const pcfg_map *top, pipe_config *c)
{
    pcfg_map m;
    int rc = pcfg_section(top, "preprocess", pcfg_pre_keys, 0, &m);
    if (!rc)
        rc = pcfg_get_number(&m, "fps", 0, "a non-negative number", &c->preprocess.fps);
    if (!rc)
        rc = pcfg_get_int(&m, "resize", 1, PCFG_MAX_SIDE, &c->preprocess.resize);
    if (!rc)
        rc = pcfg_get_int(&m, "crop", PCFG_MIN_CROP, PCFG_MAX_CROP, &c->preprocess.crop);
    if (!rc)
        rc = pcfg_get_vec3(&m, "mean", 0, c->preprocess.mean);
    if (!rc)
        rc = pcfg_get_vec3(&m, "std", 1, c->preprocess.std);
    if (!rc)
        rc = pcfg_get_int(&m, "centre_joint", 0, PCFG_MAX_JOINTS - 1,
                          &c->preprocess.centre_joint);
    if (!rc)
        rc = pcfg_get_joint_pair(&m, "scale_bone", c->preprocess.scale_bone);
    if (rc || !c->preprocess.crop || !c->preprocess.resize ||
        c->preprocess.crop <= c->preprocess.resize)
        return rc;
    return pcfg_fail(top->ctx, pcfg_find(&m, "crop"), "preprocess.crop",
                     "expected at most preprocess.resize (%d), got %d", c->preprocess.resize,
                     c->preprocess.crop);
}

static int pcfg_parse_arch(const pcfg_map *m, pipe_model *pm, const struct pcfg_arch **arch)
{
    const char *names[PCFG_N_ARCHS + 1];
    char field[PCFG_FIELD_MAX];
    int i = -1;
    for (int a = 0; a < PCFG_N_ARCHS; a++)
        names[a] = pcfg_archs[a].name;
    names[PCFG_N_ARCHS] = NULL;
    int rc = pcfg_get_choice(m, "arch", names, &i);
    if (rc)
        return rc;
    if (i < 0)
        return pcfg_missing(m->ctx, pcfg_name(m, "arch", field));
    *arch = &pcfg_archs[i];
    pm->arch = strdup(names[i]);
    return pm->arch ? 0 : pcfg_nomem(m->ctx);
}

static int pcfg_parse_size(const pcfg_map *m, pipe_model *pm, const struct pcfg_arch *arch)
{
    char field[PCFG_FIELD_MAX];
    int i = -1;
    yaml_node_t *v = pcfg_find(m, "size");
    if (!arch->sizes)
        return v ? pcfg_fail(m->ctx, v, pcfg_name(m, "size", field), "arch %s takes no size",
                             arch->name)
                 : 0;
    int rc = pcfg_get_choice(m, "size", arch->sizes, &i);
    if (rc)
        return rc;
    if (i < 0)
        return pcfg_fail(m->ctx, NULL, pcfg_name(m, "size", field),
                         "missing (required for arch %s)", arch->name);
    pm->size = strdup(arch->sizes[i]);
    return pm->size ? 0 : pcfg_nomem(m->ctx);
}

/* <model>.transformer: the encoder's shape; required for arch transformer, refused otherwise. */
static int pcfg_parse_transformer(const pcfg_map *model, pipe_model *pm)
{
    char name[PCFG_FIELD_MAX], field[PCFG_FIELD_MAX];
    pcfg_field(name, model->name, "transformer");
    yaml_node_t *v = pcfg_find(model, "transformer");
    int is_tfm = strcmp(pm->arch, "transformer") == 0;
    if (!v)
        return is_tfm ? pcfg_missing(model->ctx, name) : 0;
    if (!is_tfm)
        return pcfg_fail(model->ctx, v, name, "only for arch transformer");
    if (v->type != YAML_MAPPING_NODE)
        return pcfg_expected(model->ctx, v, name, "a mapping");
    pcfg_map m = {model->ctx, v, name};
    cin_transformer_opts *o = &pm->transformer;
    int act = 0, pos = 0, first = 0, rc = pcfg_check_keys(&m, pcfg_transformer_keys);
    o->layers = 1;
    const struct {
        const char *key;
        int required, *dst, lo, hi;
    } ints[] = {
        {"input_dim", 1, &o->input_dim, 1, 65536}, {"d_model", 1, &o->d_model, 1, 65536},
        {"nhead", 1, &o->nhead, 1, 1024}, {"window", 1, &o->window, 1, 4096},
        {"dim_feedforward", 0, &o->dim_feedforward, 1, 262144}, {"layers", 0, &o->layers, 1, 2},
    };
    for (size_t i = 0; !rc && i < sizeof ints / sizeof ints[0]; i++) {
        rc = pcfg_get_int(&m, ints[i].key, ints[i].lo, ints[i].hi, ints[i].dst);
        if (!rc && ints[i].required && !*ints[i].dst)
            rc = pcfg_missing(m.ctx, pcfg_name(&m, ints[i].key, field));
    }
    if (!rc && o->d_model % o->nhead)
        rc = pcfg_fail(m.ctx, pcfg_find(&m, "nhead"), pcfg_name(&m, "nhead", field),
                       "expected a divisor of d_model (%d), got %d", o->d_model, o->nhead);
    if (!rc && !o->dim_feedforward)
        o->dim_feedforward = 4 * o->d_model;
    if (!rc)
        rc = pcfg_get_bool(&m, "norm_first", &o->norm_first);
    if (!rc)
        rc = pcfg_get_bool(&m, "class_token", &o->class_token);
    if (!rc)
        rc = pcfg_get_choice(&m, "activation", pcfg_activations, &act);
    if (!rc)
        rc = pcfg_get_choice(&m, "pos", pcfg_pos_kinds, &pos);
    if (!rc)
        rc = pcfg_get_choice(&m, "first_layer", pcfg_first_layers, &first);
    o->activation = pcfg_activations[act];
    o->pos = pcfg_pos_kinds[pos];
    o->first_layer = pcfg_first_layers[first];
    return rc;
}

/* <model>.skeleton: the ST-GCN's shape; optional for arch stgcn, refused otherwise. */
static int pcfg_parse_skeleton(const pcfg_map *model, pipe_model *pm)
{
    char name[PCFG_FIELD_MAX];
    pcfg_field(name, model->name, "skeleton");
    yaml_node_t *v = pcfg_find(model, "skeleton");
    if (!v)
        return 0;
    if (strcmp(pm->arch, "stgcn") != 0)
        return pcfg_fail(model->ctx, v, name, "only for arch stgcn");
    if (v->type != YAML_MAPPING_NODE)
        return pcfg_expected(model->ctx, v, name, "a mapping");
    pcfg_map m = {model->ctx, v, name};
    cin_skeleton_opts *o = &pm->skeleton;
    int variant = 0, graph = 0, strategy = 0, layout = 0;
    int rc = pcfg_check_keys(&m, pcfg_skeleton_keys);
    rc = rc ? rc : pcfg_get_choice(&m, "variant", pcfg_variants, &variant);
    rc = rc ? rc : pcfg_get_choice(&m, "graph", pcfg_graphs, &graph);
    rc = rc ? rc : pcfg_get_choice(&m, "strategy", pcfg_strategies, &strategy);
    rc = rc ? rc : pcfg_get_choice(&m, "layout", pcfg_sk_layouts, &layout);
    rc = rc ? rc : pcfg_get_int(&m, "channels", 1, 16, &o->channels);
    rc = rc ? rc : pcfg_get_int(&m, "persons", 1, 16, &o->persons);
    rc = rc ? rc : pcfg_get_int(&m, "clip_frames", 1, 1000000, &o->clip_frames);
    o->variant = pcfg_variants[variant];
    o->graph = pcfg_graphs[graph];
    o->strategy = pcfg_strategies[strategy];
    /* unset, the variant picks it (AGCN has continual-skeletons' names only) */
    o->layout = pcfg_find(&m, "layout") ? pcfg_sk_layouts[layout] : NULL;
    return rc;
}

static int pcfg_parse_model_map(const pcfg_map *m, pipe_model *pm);

/* model.head: a second model fed the first one's features; continual only, one level. */
static int pcfg_parse_head(const pcfg_map *model, pipe_model *pm)
{
    char name[PCFG_FIELD_MAX];
    pcfg_field(name, model->name, "head");
    yaml_node_t *v = pcfg_find(model, "head");
    if (!v)
        return 0;
    if (strcmp(model->name, "model") != 0)
        return pcfg_fail(model->ctx, v, name, "a head cannot have a head of its own");
    if (v->type != YAML_MAPPING_NODE)
        return pcfg_expected(model->ctx, v, name, "a mapping");
    if (pm->mode != PIPE_MODE_CONTINUAL)
        return pcfg_fail(model->ctx, v, name, "needs model.mode continual");
    pcfg_map m = {model->ctx, v, name};
    int rc = pcfg_check_keys(&m, pcfg_model_keys);
    pm->head = rc ? NULL : calloc(1, sizeof *pm->head);
    if (rc || !pm->head)
        return rc ? rc : pcfg_nomem(model->ctx);
    pm->head->se_window = 1;
    return pcfg_parse_model_map(&m, pm->head);
}

/* Keys another family or a head would ignore are refused rather than silently dropped. */
static int pcfg_refuse_keys(const pcfg_map *m, const pipe_model *pm)
{
    static const char *const x3d_only[] = {"pool_window", "se_window", NULL};
    char field[PCFG_FIELD_MAX];
    int is_head = strcmp(m->name, "model") != 0;
    for (int i = 0; strcmp(pm->arch, "x3d") != 0 && x3d_only[i]; i++) {
        yaml_node_t *v = pcfg_find(m, x3d_only[i]);
        if (v)
            return pcfg_fail(m->ctx, v, pcfg_name(m, x3d_only[i], field), "only for arch x3d");
    }
    yaml_node_t *mode = is_head ? pcfg_find(m, "mode") : NULL;
    return mode ? pcfg_fail(m->ctx, mode, pcfg_name(m, "mode", field),
                            "a head steps with the model (continual); remove it")
                : 0;
}

static int pcfg_parse_model_map(const pcfg_map *m, pipe_model *pm)
{
    const struct pcfg_arch *arch = NULL;
    int mode = PIPE_MODE_CONTINUAL;
    int rc = pcfg_parse_arch(m, pm, &arch);
    if (!rc)
        rc = pcfg_refuse_keys(m, pm);
    if (!rc)
        rc = pcfg_parse_size(m, pm, arch);
    if (!rc)
        rc = pcfg_get_str(m, "weights", 1, &pm->weights);
    if (!rc)
        rc = pcfg_get_u64(m, "seed", &pm->seed);
    if (!rc)
        rc = pcfg_get_choice(m, "mode", pcfg_modes, &mode);
    if (!rc)
        rc = pcfg_get_int(m, "pool_window", 1, PCFG_MAX_WINDOW, &pm->pool_window);
    if (!rc)
        rc = pcfg_get_int(m, "se_window", 1, PCFG_MAX_WINDOW, &pm->se_window);
    if (!rc)
        rc = pcfg_get_int(m, "num_classes", 1, PCFG_MAX_CLASSES, &pm->num_classes);
    pm->mode = (pipe_mode)mode;
    if (!rc)
        rc = pcfg_parse_transformer(m, pm);
    if (!rc)
        rc = pcfg_parse_skeleton(m, pm);
    if (!rc)
        rc = pcfg_parse_head(m, pm);
    return rc;
}

static int pcfg_parse_model(const pcfg_map *top, pipe_config *c)
{
    pcfg_map m;
    int rc = pcfg_section(top, "model", pcfg_model_keys, 1, &m);
    return rc ? rc : pcfg_parse_model_map(&m, &c->model);
}

/* After the model: topk is bounded by model.num_classes when that is given; otherwise the
 * pipeline checks it against the classes the weights hold. */
static int pcfg_parse_postprocess(const pcfg_map *top, pipe_config *c)
{
    pcfg_map m;
    const pipe_model *last = c->model.head ? c->model.head : &c->model;
    int classes = last->num_classes ? last->num_classes : PCFG_MAX_CLASSES;
    c->postprocess.topk = classes < 5 ? classes : 5;
    int rc = pcfg_section(top, "postprocess", pcfg_post_keys, 0, &m);
    if (!rc)
        rc = pcfg_get_bool(&m, "softmax", &c->postprocess.softmax);
    c->postprocess.topk_given = pcfg_find(&m, "topk") != NULL;
    if (!rc)
        rc = pcfg_get_int(&m, "topk", 1, classes, &c->postprocess.topk);
    if (!rc)
        rc = pcfg_get_str(&m, "labels", 1, &c->postprocess.labels);
    return rc;
}

/* flush: seconds a text sink's results may wait in its write buffer; npy sinks have none. */
static int pcfg_parse_flush(const pcfg_map *m, pipe_sink *sink)
{
    char field[PCFG_FIELD_MAX];
    yaml_node_t *v = pcfg_find(m, "flush");
    sink->flush = PIPE_DEFAULT_FLUSH;
    if (v && sink->type == PIPE_SINK_NPY)
        return pcfg_fail(m->ctx, v, pcfg_name(m, "flush", field), "only for jsonl and csv sinks "
                         "(npy sinks are complete arrays every 64 frames)");
    int rc = pcfg_get_number(m, "flush", 0, "a non-negative number of seconds", &sink->flush);
    if (!rc && sink->flush > 3600)
        return pcfg_fail(m->ctx, v, pcfg_name(m, "flush", field), "expected at most 3600 "
                         "seconds, got %g", sink->flush);
    return rc;
}

/* A source that does not end by itself: live video (a camera, a network stream), or rows
 * from stdin or a socket. Its results are followed while they come, so sinks default to
 * writing in place. */
static int pcfg_never_ends(const pipe_source *s)
{
    int rows = s->type == PIPE_SOURCE_FEATURES || s->type == PIPE_SOURCE_SKELETON;
    return pcfg_is_live(s) ||
           (rows && s->uri && (strcmp(s->uri, "-") == 0 || lines_uri_is_socket(s->uri)));
}

static int pcfg_any_never_ends(const pipe_config *c)
{
    for (int i = 0; i < c->n_sources; i++)
        if (pcfg_never_ends(&c->sources[i]))
            return 1;
    return 0;
}

/* One list item of sinks, named name ("sinks[0]"); live: a source never ends by itself. */
static int pcfg_parse_sink(pcfg_ctx *ctx, yaml_node_t *v, const char *name, int live,
                           pipe_sink *sink)
{
    char field[PCFG_FIELD_MAX];
    pcfg_map m = {ctx, v, name};
    int type = -1;
    if (!v)
        return pcfg_missing(ctx, name);
    if (v->type != YAML_MAPPING_NODE)
        return pcfg_expected(ctx, v, name, "a mapping with type and path");
    int rc = pcfg_check_keys(&m, pcfg_sink_keys);
    if (!rc)
        rc = pcfg_get_choice(&m, "type", pcfg_sink_types, &type);
    if (rc)
        return rc;
    pcfg_field(field, name, "type");
    if (type < 0)
        return pcfg_missing(ctx, field);
    sink->type = (pipe_sink_type)type;

    /* "-" is stdout, kept as written rather than resolved as a file name. */
    yaml_node_t *path = pcfg_find(&m, "path");
    int to_stdout = pcfg_is_text(path, "-");
    pcfg_field(field, name, "path");
    if (!path)
        return pcfg_missing(ctx, field);
    if (to_stdout && type == PIPE_SINK_NPY)
        return pcfg_expected(ctx, path, field, "a file path (npy cannot go to stdout)");
    rc = pcfg_parse_flush(&m, sink);
    sink->replace = !live;
    rc = rc ? rc : pcfg_get_bool(&m, "replace", &sink->replace);
    if (rc || !to_stdout)
        return rc ? rc : pcfg_get_str(&m, "path", 1, &sink->path);
    sink->path = strdup("-");
    return sink->path ? 0 : pcfg_nomem(ctx);
}

static int pcfg_parse_sinks(const pcfg_map *top, pipe_config *c)
{
    char name[32];
    yaml_node_t *v = pcfg_find(top, "sinks");
    if (!v) {
        c->n_sinks = 1;
        c->sinks[0] = (pipe_sink){PIPE_SINK_JSONL, strdup("-"), PIPE_DEFAULT_FLUSH, 0};
        return c->sinks[0].path ? 0 : pcfg_nomem(top->ctx);
    }
    if (v->type != YAML_SEQUENCE_NODE)
        return pcfg_expected(top->ctx, v, "sinks", "a list of sinks");
    long n = (long)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n < 1 || n > PIPE_MAX_SINKS)
        return pcfg_fail(top->ctx, v, "sinks", "expected 1 to %d sinks, got %ld",
                         PIPE_MAX_SINKS, n);
    int live = pcfg_any_never_ends(c);
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "sinks[%d]", i);
        c->n_sinks = i + 1;
        yaml_node_t *item = pcfg_node(top->ctx, v->data.sequence.items.start[i]);
        int rc = pcfg_parse_sink(top->ctx, item, name, live, &c->sinks[i]);
        if (rc)
            return rc;
    }
    return 0;
}

/* 1 if a and b name the same file: the same inode when both exist, else the same path. */
static int pcfg_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!a || !b || strcmp(a, "-") == 0 || strcmp(b, "-") == 0)
        return 0;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    return strcmp(a, b) == 0;
}

/* A sink must not write over an input, the pipeline file or another sink. */
/* Index of the first source that reads path (its input, weights or labels), or -1. */
static int pcfg_source_file(const pipe_config *c, const char *path)
{
    for (int i = 0; i < c->n_sources; i++) {
        const pipe_source *s = &c->sources[i];
        if (pcfg_same_file(path, s->uri) || pcfg_same_file(path, s->weights) ||
            pcfg_same_file(path, s->labels))
            return i;
    }
    return -1;
}

static int pcfg_check_outputs(pcfg_ctx *ctx, const pipe_config *c)
{
    const struct {
        const char *path, *field;
    } inputs[] = {{ctx->file, "the pipeline file"}, {c->model.weights, "model.weights"},
                  {c->model.head ? c->model.head->weights : NULL, "model.head.weights"},
                  {c->postprocess.labels, "postprocess.labels"}};
    for (int i = 0; i < c->n_sinks; i++) {
        const char *p = c->sinks[i].path;
        int src = pcfg_source_file(c, p);
        if (c->sinks[i].type == PIPE_SINK_NPY && c->n_sources > 1)
            return cin_err_set(ctx->err, CIN_E_CONFIG, "%s: sinks[%d]: an npy sink holds the "
                               "rows of one source; with %d sources use jsonl or csv (each "
                               "result names its source)", ctx->file, i, c->n_sources);
        if (src >= 0)
            return cin_err_set(ctx->err, CIN_E_CONFIG, "%s: sinks[%d].path: '%s' is read by "
                               "source %s; a sink must not overwrite an input", ctx->file, i, p,
                               c->sources[src].id);
        for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++)
            if (pcfg_same_file(p, inputs[k].path))
                return cin_err_set(ctx->err, CIN_E_CONFIG, "%s: sinks[%d].path: '%s' is %s; "
                                   "a sink must not overwrite an input", ctx->file, i, p,
                                   inputs[k].field);
        for (int j = 0; j < i; j++)
            if (pcfg_same_file(p, c->sinks[j].path) ||
                (strcmp(p, "-") == 0 && strcmp(c->sinks[j].path, "-") == 0))
                return cin_err_set(ctx->err, CIN_E_CONFIG, "%s: sinks[%d].path: '%s' is "
                                   "also sinks[%d].path", ctx->file, i, p, j);
    }
    return 0;
}

/* A CSV sink has label columns for every row or for none, so with a CSV sink either every
 * source has labels (its own or postprocess.labels) or none has. */
static int pcfg_check_labels(pcfg_ctx *ctx, const pipe_config *c)
{
    int csv = -1, with = -1, without = -1;
    for (int i = 0; i < c->n_sinks; i++)
        csv = csv < 0 && c->sinks[i].type == PIPE_SINK_CSV ? i : csv;
    for (int i = 0; i < c->n_sources; i++) {
        int has = c->sources[i].labels || c->postprocess.labels;
        with = has && with < 0 ? i : with;
        without = !has && without < 0 ? i : without;
    }
    if (csv < 0 || with < 0 || without < 0)
        return 0;
    return cin_err_set(ctx->err, CIN_E_CONFIG, "%s: sources[%d].labels: given, but "
                       "sources[%d] has none; sinks[%d] (csv) needs labels for every source "
                       "or for none", ctx->file, with, without, csv);
}

static int pcfg_parse_doc(pcfg_ctx *ctx, pipe_config *c)
{
    yaml_node_t *root = yaml_document_get_root_node(ctx->doc);
    if (!root)
        return cin_err_set(ctx->err, CIN_E_CONFIG,
                           "%s: empty file (expected a mapping with source, model, ...)",
                           ctx->file);
    if (root->type != YAML_MAPPING_NODE)
        return pcfg_expected(ctx, root, NULL, "a mapping at the top level");
    pcfg_map top = {ctx, root, ""};
    int rc = pcfg_check_keys(&top, pcfg_top_keys);
    if (!rc)
        rc = pcfg_parse_sources(&top, c);
    if (!rc)
        rc = pcfg_get_int(&top, "workers", 1, PCFG_MAX_WORKERS, &c->workers);
    if (!rc)
        rc = pcfg_parse_preprocess(&top, c);
    if (!rc)
        rc = pcfg_parse_model(&top, c);
    if (!rc)
        rc = pcfg_parse_postprocess(&top, c);
    if (!rc)
        rc = pcfg_parse_sinks(&top, c);
    if (!rc)
        rc = pcfg_check_outputs(ctx, c);
    if (!rc)
        rc = pcfg_check_labels(ctx, c);
    return rc;
}

/* ---- the file ---- */

/* Grows *buf (capacity *cap) for the next read; the buffer never exceeds max + 1 bytes. */
static int pcfg_grow(unsigned char **buf, size_t *cap, size_t max)
{
    size_t want = *cap ? *cap * 2 : 4096;
    want = want > max + 1 ? max + 1 : want;
    unsigned char *grown = realloc(*buf, want);
    if (!grown)
        return -1;
    *buf = grown;
    *cap = want;
    return 0;
}

/* The whole file into *buf (*len bytes); more than PCFG_MAX_BYTES is refused. */
static int pcfg_read(const char *path, unsigned char **buf, size_t *len, cin_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cin_err_set(err, CIN_E_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 0, got = 1;
    *len = 0;
    while (got > 0 && *len <= PCFG_MAX_BYTES) {
        if (*len == cap && pcfg_grow(buf, &cap, PCFG_MAX_BYTES)) {
            fclose(f);
            return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", path);
        }
        got = fread(*buf + *len, 1, cap - *len, f);
        *len += got;
    }
    int failed = ferror(f), e = errno;
    fclose(f);
    if (failed)
        return cin_err_set(err, CIN_E_IO, "%s: cannot read: %s", path, strerror(e));
    if (*len > PCFG_MAX_BYTES)
        return cin_err_set(err, CIN_E_CONFIG, "%s: larger than %d bytes, not a pipeline file",
                           path, PCFG_MAX_BYTES);
    return 0;
}

static int pcfg_yaml_error(const pcfg_ctx *ctx, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "syntax error";
    if (p->error == YAML_MEMORY_ERROR)
        return pcfg_nomem(ctx);
    if (p->error == YAML_READER_ERROR)
        return cin_err_set(ctx->err, CIN_E_CONFIG, "%s: invalid YAML at byte %zu: %s",
                           ctx->file, p->problem_offset, problem);
    if (!p->context)
        return cin_err_set(ctx->err, CIN_E_CONFIG, "%s:%zu:%zu: invalid YAML: %s", ctx->file,
                           p->problem_mark.line + 1, p->problem_mark.column + 1, problem);
    return cin_err_set(ctx->err, CIN_E_CONFIG, "%s:%zu:%zu: invalid YAML: %s (%s at %zu:%zu)",
                       ctx->file, p->problem_mark.line + 1, p->problem_mark.column + 1, problem,
                       p->context, p->context_mark.line + 1, p->context_mark.column + 1);
}

/* The first document of the stream into doc; a second document is an error. */
static int pcfg_load_doc(const pcfg_ctx *ctx, const unsigned char *buf, size_t len,
                         yaml_document_t *doc)
{
    yaml_parser_t parser;
    yaml_document_t extra;
    if (!yaml_parser_initialize(&parser))
        return pcfg_nomem(ctx);
    yaml_parser_set_input_string(&parser, buf, len);
    int rc = 0;
    if (!yaml_parser_load(&parser, doc)) {
        rc = pcfg_yaml_error(ctx, &parser);
        yaml_parser_delete(&parser);
        return rc;
    }
    if (!yaml_parser_load(&parser, &extra)) {
        rc = pcfg_yaml_error(ctx, &parser);
    } else {
        yaml_node_t *second = yaml_document_get_root_node(&extra);
        if (second)
            rc = pcfg_fail(ctx, second, NULL, "expected one YAML document, found a second");
        yaml_document_delete(&extra);
    }
    if (rc)
        yaml_document_delete(doc);
    yaml_parser_delete(&parser);
    return rc;
}

static void pcfg_defaults(pipe_config *c)
{
    c->preprocess.fps = 0;
    for (int i = 0; i < 3; i++) {
        c->preprocess.mean[i] = 0.45f;
        c->preprocess.std[i] = 0.225f;
    }
    c->preprocess.centre_joint = -1;
    c->preprocess.scale_bone[0] = c->preprocess.scale_bone[1] = -1;
    c->model.mode = PIPE_MODE_CONTINUAL;
    c->model.se_window = 1;
    c->postprocess.softmax = 1;
}

int pipe_config_load(const char *path, pipe_config **out, cin_err *err)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    yaml_document_t doc;
    pcfg_ctx ctx = {path, 0, &doc, err};
    const char *slash = strrchr(path, '/');
    ctx.dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    *out = NULL;

    int rc = pcfg_read(path, &buf, &len, err);
    if (!rc)
        rc = pcfg_load_doc(&ctx, buf, len, &doc);
    free(buf);
    if (rc)
        return rc;

    pipe_config *c = calloc(1, sizeof *c);
    rc = c ? 0 : pcfg_nomem(&ctx);
    if (!rc) {
        pcfg_defaults(c);
        c->path = strdup(path);
        rc = c->path ? pcfg_parse_doc(&ctx, c) : pcfg_nomem(&ctx);
    }
    yaml_document_delete(&doc);
    if (rc) {
        pipe_config_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void pipe_config_free(pipe_config *c)
{
    if (!c)
        return;
    free(c->path);
    for (int i = 0; i < c->n_sources; i++) {
        free(c->sources[i].uri);
        free(c->sources[i].id);
        free(c->sources[i].rtsp_transport);
        free(c->sources[i].pixel_format);
        free(c->sources[i].weights);
        free(c->sources[i].labels);
    }
    for (pipe_model *m = &c->model; m; m = m->head) {
        free(m->arch);
        free(m->size);
        free(m->weights);
    }
    free(c->model.head);
    free(c->postprocess.labels);
    for (int i = 0; i < c->n_sinks; i++)
        free(c->sinks[i].path);
    free(c);
}

void pipe_model_opts(const pipe_config *c, const pipe_model *m, int features,
                     cin_model_opts *out)
{
    *out = (cin_model_opts){.arch = m->arch, .size = m->size, .weights = m->weights,
                            .seed = m->seed, .crop = c->preprocess.crop,
                            .pool_window = m->pool_window, .se_window = m->se_window,
                            .num_classes = m->num_classes, .transformer = &m->transformer,
                            .skeleton = &m->skeleton, .features = features};
}
