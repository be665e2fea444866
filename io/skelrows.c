/* Skeleton-row source (see skelrows.h). Lines come from lines.h; each is parsed into a record
 * (one joint, or a whole frame kept as its jansson tree) and routed into the frame being
 * gathered, acc [channel][joint][person], which is copied out when a later index arrives.
 * A small state machine orders what a read returns: zero frames for a gap first, then a
 * complete frame, else more lines. */
#include "skelrows.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lines.h"
#include "pyjson.h"

/* Shown of a field that is not a number. */
#define SKELROWS_QUOTE_MAX 32
/* Fields of a CSV line, header included; more is malformed. */
#define SKELROWS_MAX_FIELDS 32

enum { COL_FRAME, COL_PERSON, COL_JOINT, COL_X, COL_Y, COL_Z, COL_SCORE, COL_COUNT };
static const char *const skelrows_col_names[COL_COUNT] = {"frame", "person", "joint", "x",
                                                          "y",     "z",      "score"};

/* What acc holds. */
typedef enum {
    ACC_EMPTY,      /* nothing read yet */
    ACC_OPEN,       /* gathering rows of frame cur */
    ACC_READY,      /* frame cur is complete (a whole-frame line) and not yet returned */
    ACC_RETURNED,   /* frame cur was returned; the next index starts a new frame */
} skelrows_state;

/* What acc says of a joint of a person. */
enum { JOINT_NONE, JOINT_GIVEN, JOINT_MASKED };

/* One joint as a line gives it: x, y, z, score, NAN for null. */
typedef struct skelrows_joint {
    float val[4];
    int has_z, has_score;
} skelrows_joint;

/* One parsed line: a joint of a person, or a whole frame (persons, owned by the line's tree). */
typedef struct skelrows_rec {
    int64_t frame, person, joint;
    skelrows_joint jt;
    const json_t *persons;
} skelrows_rec;

struct skelrows_src {
    lines_src *lines;
    skelrows_format format;
    int c, with_score, v, m, max_gap;
    size_t plane;               /* v * m: floats in one channel */
    locale_t numeric;           /* "C": CSV numbers read the same whatever the process locale */
    pyjson_buf fixed;           /* a JSON line with NaN/Infinity rewritten as null */
    int col[COL_COUNT];         /* the CSV field of each column, -1 if absent */
    int header_fields;          /* fields of a CSV row when a header named them; 0: by order */
    float *acc;                 /* [c + with_score][v][m], the frame being gathered */
    unsigned char *seen;        /* [v][m], JOINT_* */
    skelrows_state state;
    int64_t cur;                /* index of the frame in acc */
    int64_t gap_next, gap_end;  /* zero frames [gap_next, gap_end) to return before acc */
    int64_t late_warned;        /* index last reported as late, -1 if none */
    int extra_warned;           /* a person >= m was reported */
    skelrows_stats st;
};

/* ---- opening ---------------------------------------------------------------------------- */

static int skelrows_check_opts(const skelrows_opts *o, cin_err *err)
{
    if (!o || !o->uri || !o->uri[0])
        return cin_err_set(err, CIN_E_INVAL, "skeleton rows: no uri given");
    if (o->format != SKELROWS_JSONL && o->format != SKELROWS_CSV)
        return cin_err_set(err, CIN_E_INVAL, "%s: unknown format %d", o->uri, (int)o->format);
    if (o->c != 2 && o->c != 3)
        return cin_err_set(err, CIN_E_INVAL, "%s: c is %d, not 2 or 3 coordinates", o->uri,
                           o->c);
    if (o->with_score != 0 && o->with_score != 1)
        return cin_err_set(err, CIN_E_INVAL, "%s: with_score is %d, not 0 or 1", o->uri,
                           o->with_score);
    if (o->v < 1 || o->v > SKELROWS_MAX_JOINTS)
        return cin_err_set(err, CIN_E_INVAL, "%s: v (joints) is %d, not in 1..%d", o->uri,
                           o->v, SKELROWS_MAX_JOINTS);
    if (o->m < 1 || o->m > SKELROWS_MAX_PERSONS)
        return cin_err_set(err, CIN_E_INVAL, "%s: m (persons) is %d, not in 1..%d", o->uri,
                           o->m, SKELROWS_MAX_PERSONS);
    return 0;
}

static int skelrows_alloc(skelrows_src *s, const skelrows_opts *o, cin_err *err)
{
    s->plane = (size_t)o->v * (size_t)o->m;
    s->acc = calloc((size_t)(o->c + o->with_score) * s->plane, sizeof *s->acc);
    s->seen = calloc(s->plane, 1);
    s->numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!s->acc || !s->seen || !s->numeric)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", o->uri);
    lines_opts lo = {.uri = o->uri, .max_line = SKELROWS_MAX_LINE, .warn = o->warn,
                     .warn_user = o->warn_user, .stop = o->stop,
                     .open_timeout = o->open_timeout, .read_timeout = o->read_timeout};
    return lines_open(&lo, &s->lines, err);
}

int skelrows_open(const skelrows_opts *o, skelrows_src **out, cin_err *err)
{
    *out = NULL;
    int rc = skelrows_check_opts(o, err);
    if (rc)
        return rc;
    skelrows_src *s = calloc(1, sizeof *s);
    if (!s)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", o->uri);
    s->format = o->format;
    s->c = o->c;
    s->with_score = o->with_score;
    s->v = o->v;
    s->m = o->m;
    s->max_gap = o->max_gap ? o->max_gap : SKELROWS_DEFAULT_MAX_GAP;
    s->late_warned = -1;
    for (int i = 0; i < COL_COUNT; i++)
        s->col[i] = i;
    rc = skelrows_alloc(s, o, err);
    if (rc) {
        skelrows_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void skelrows_close(skelrows_src *s)
{
    if (!s)
        return;
    lines_close(s->lines);
    if (s->numeric)
        freelocale(s->numeric);
    pyjson_buf_free(&s->fixed);
    free(s->acc);
    free(s->seen);
    free(s);
}

size_t skelrows_frame_len(const skelrows_src *s)
{
    return (size_t)(s->c + s->with_score) * s->plane;
}

int64_t skelrows_skipped(const skelrows_src *s)
{
    return lines_skipped(s->lines);
}

int64_t skelrows_masked(const skelrows_src *s)
{
    return s->st.missing_joints + s->st.nonfinite + s->st.extra_persons;
}

void skelrows_get_stats(const skelrows_src *s, skelrows_stats *out)
{
    *out = s->st;
    out->skipped = lines_skipped(s->lines);
}

/* ---- gathering frames ------------------------------------------------------------------- */

/* Counts a joint of a person the model has no room for; the first one is reported. */
static void skelrows_drop_extra(skelrows_src *s, int64_t person)
{
    s->st.extra_persons++;
    if (!s->extra_warned)
        lines_warn(s->lines, "person %lld is beyond the %d the model takes; such joints are "
                   "dropped and counted (reported once)", (long long)person, s->m);
    s->extra_warned = 1;
}

/* Writes one joint into acc, masking it as skelrows.h says. */
static void skelrows_put(skelrows_src *s, int64_t person, int64_t joint,
                         const skelrows_joint *jt)
{
    if (person >= s->m) {
        skelrows_drop_extra(s, person);
        return;
    }
    size_t at = (size_t)joint * (size_t)s->m + (size_t)person;
    float coord[3] = {jt->val[0], jt->val[1], jt->has_z ? jt->val[2] : 0.0f};
    int finite = 1;
    for (int ch = 0; ch < s->c; ch++)
        finite &= isfinite(coord[ch]) != 0;
    for (int ch = 0; ch < s->c; ch++)
        s->acc[(size_t)ch * s->plane + at] = finite ? coord[ch] : 0.0f;
    s->seen[at] = finite ? JOINT_GIVEN : JOINT_MASKED;

    float score = jt->has_score ? jt->val[3] : 1.0f;
    int score_ok = isfinite(score) != 0;
    if (s->with_score)
        s->acc[(size_t)s->c * s->plane + at] = finite && score_ok ? score : 0.0f;
    s->st.nonfinite += !finite || (s->with_score && !score_ok);
}

/* Joints not given for the persons that have at least one joint in acc. */
static int64_t skelrows_count_missing(const skelrows_src *s)
{
    int64_t missing = 0;
    for (int p = 0; p < s->m; p++) {
        int present = 0, absent = 0;
        for (int j = 0; j < s->v; j++) {
            int none = s->seen[(size_t)j * (size_t)s->m + (size_t)p] == JOINT_NONE;
            absent += none;
            present |= !none;
        }
        missing += present ? absent : 0;
    }
    return missing;
}

static int skelrows_emit(skelrows_src *s, float *frame, int64_t *index)
{
    s->st.missing_joints += skelrows_count_missing(s);
    memcpy(frame, s->acc, sizeof(float) * skelrows_frame_len(s));
    *index = s->cur;
    s->state = ACC_RETURNED;
    s->st.frames++;
    return 1;
}

static int skelrows_emit_gap(skelrows_src *s, float *frame, int64_t *index)
{
    memset(frame, 0, sizeof(float) * skelrows_frame_len(s));
    *index = s->gap_next++;
    s->st.gap_frames++;
    s->st.frames++;
    return 1;
}

/* Plans zero frames for the indices between the last returned frame and f. */
static void skelrows_plan_gap(skelrows_src *s, int64_t f)
{
    int64_t missing = f - s->cur - 1;
    if (missing <= 0)
        return;
    if (s->max_gap >= 0 && missing <= s->max_gap) {
        s->gap_next = s->cur + 1;
        s->gap_end = f;
        return;
    }
    s->st.unfilled += missing;
    if (s->max_gap >= 0)
        lines_warn(s->lines, "frame index jumps from %lld to %lld; the %lld frames between are "
                   "not filled (max_gap %d)", (long long)s->cur, (long long)f,
                   (long long)missing, s->max_gap);
}

static void skelrows_start(skelrows_src *s, int64_t f)
{
    if (s->state == ACC_RETURNED)
        skelrows_plan_gap(s, f);
    s->cur = f;
    memset(s->acc, 0, sizeof(float) * skelrows_frame_len(s));
    memset(s->seen, 0, s->plane);
    s->state = ACC_OPEN;
}

/* 1 if frame f lies so far back that the source must be counting again from f. */
static int skelrows_restarts(skelrows_src *s, int64_t f)
{
    int64_t bound = s->max_gap >= 0 ? s->max_gap : SKELROWS_DEFAULT_MAX_GAP;
    if (s->state == ACC_EMPTY || f >= s->cur - bound)
        return 0;
    s->st.restarts++;
    lines_warn(s->lines, "frame index goes back from %lld to %lld, more than %lld frames: taken "
               "as the source counting again", (long long)s->cur, (long long)f,
               (long long)bound);
    return 1;
}

/* 1 if a line for frame f comes too late. Each such line is counted; the first of a run of
 * lines with the same index is reported. */
static int skelrows_is_late(skelrows_src *s, int64_t f)
{
    if (s->state == ACC_EMPTY || f > s->cur || (f == s->cur && s->state == ACC_OPEN))
        return 0;
    s->st.late_lines++;
    if (f != s->late_warned) {
        if (f == s->cur)
            lines_warn(s->lines, "frame %lld was already returned; its lines are dropped",
                       (long long)f);
        else
            lines_warn(s->lines, "frame index goes back from %lld to %lld; its lines are "
                       "dropped", (long long)s->cur, (long long)f);
    }
    s->late_warned = f;
    return 1;
}

/* The numbers of one joint array, already checked: [x, y], [x, y, z] or [x, y, z, score]. */
static void skelrows_json_joint(const json_t *arr, skelrows_joint *jt)
{
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < 4; i++) {
        const json_t *x = i < n ? json_array_get(arr, i) : NULL;
        jt->val[i] = json_is_number(x) ? (float)json_number_value(x) : NAN;
    }
    jt->has_z = n >= 3;
    jt->has_score = n >= 4;
}

/* Puts every joint of a whole-frame line, already checked, into acc. */
static void skelrows_put_persons(skelrows_src *s, const json_t *persons)
{
    size_t np = json_array_size(persons);
    for (size_t p = 0; p < np; p++) {
        const json_t *person = json_array_get(persons, p);
        for (size_t j = 0; json_is_array(person) && j < (size_t)s->v; j++) {
            const json_t *arr = json_array_get(person, j);
            if (json_is_null(arr))
                continue;
            skelrows_joint jt;
            skelrows_json_joint(arr, &jt);
            skelrows_put(s, (int64_t)p, (int64_t)j, &jt);
        }
    }
}

/* Routes a well-formed record into acc. Returns 1 when it completed the frame before it,
 * which is then in frame and *index. */
static int skelrows_route(skelrows_src *s, const skelrows_rec *r, float *frame, int64_t *index)
{
    int restart = skelrows_restarts(s, r->frame);
    if (!restart && skelrows_is_late(s, r->frame))
        return 0;
    int emitted = 0;
    if (s->state == ACC_OPEN && (r->frame > s->cur || restart))
        emitted = skelrows_emit(s, frame, index);
    if (s->state != ACC_OPEN)
        skelrows_start(s, r->frame);
    if (r->persons) {
        skelrows_put_persons(s, r->persons);
        s->state = ACC_READY;
    } else
        skelrows_put(s, r->person, r->joint, &r->jt);
    return emitted;
}

/* ---- JSON lines ------------------------------------------------------------------------- */

/* "an integer >= 0", or "an integer from 0 to max" for a bound other than LLONG_MAX. */
static const char *skelrows_index_range(long long max, char *buf, size_t cap)
{
    if (max == LLONG_MAX)
        return "an integer >= 0";
    snprintf(buf, cap, "an integer from 0 to %lld", max);
    return buf;
}

/* A required integer key from 0 to max. */
static int skelrows_json_index(skelrows_src *s, const json_t *root, const char *key,
                               long long max, int64_t *out)
{
    const json_t *v = json_object_get(root, key);
    if (!v)
        return lines_skip(s->lines, "no \"%s\"", key);
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= max) {
        *out = (int64_t)json_integer_value(v);
        return 1;
    }
    char range[64];
    return lines_skip(s->lines, "\"%s\" is not %s", key,
                      skelrows_index_range(max, range, sizeof range));
}

/* A coordinate or score key: a number, or null (NAN). *has says whether it is there. */
static int skelrows_json_value(skelrows_src *s, const json_t *root, const char *key,
                               int required, float *out, int *has)
{
    const json_t *v = json_object_get(root, key);
    *has = v != NULL;
    if (!v)
        return required ? lines_skip(s->lines, "no \"%s\"", key) : 1;
    if (!json_is_number(v) && !json_is_null(v))
        return lines_skip(s->lines, "\"%s\" is %s, not a number", key, pyjson_type(v));
    /* Annex F: a double beyond the float range becomes an infinity, then is masked. */
    *out = json_is_null(v) ? NAN : (float)json_number_value(v);
    return 1;
}

static int skelrows_json_row(skelrows_src *s, const json_t *root, skelrows_rec *r)
{
    if (!skelrows_json_index(s, root, "person", LLONG_MAX, &r->person) ||
        !skelrows_json_index(s, root, "joint", LLONG_MAX, &r->joint))
        return 0;
    if (r->joint >= s->v)
        return lines_skip(s->lines, "joint %lld is out of range 0..%d", (long long)r->joint,
                          s->v - 1);
    int has;
    skelrows_joint *jt = &r->jt;
    return skelrows_json_value(s, root, "x", 1, &jt->val[0], &has) &&
           skelrows_json_value(s, root, "y", 1, &jt->val[1], &has) &&
           skelrows_json_value(s, root, "z", 0, &jt->val[2], &jt->has_z) &&
           skelrows_json_value(s, root, "score", 0, &jt->val[3], &jt->has_score);
}

/* persons[p][j]: null, or an array of 2 to 4 numbers or nulls. */
static int skelrows_check_joint(skelrows_src *s, const json_t *arr, size_t p, size_t j)
{
    if (json_is_null(arr))
        return 1;
    if (!json_is_array(arr))
        return lines_skip(s->lines, "persons[%zu][%zu] is %s, not [x, y(, z(, score))]", p, j,
                          pyjson_type(arr));
    size_t n = json_array_size(arr);
    if (n < 2 || n > 4)
        return lines_skip(s->lines, "persons[%zu][%zu] has %zu numbers, expected 2 to 4", p, j,
                          n);
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(arr, i);
        if (!json_is_number(x) && !json_is_null(x))
            return lines_skip(s->lines, "persons[%zu][%zu][%zu] is %s, not a number", p, j, i,
                              pyjson_type(x));
    }
    return 1;
}

/* persons[p]: null, or an array of exactly v joints. */
static int skelrows_check_person(skelrows_src *s, const json_t *person, size_t p)
{
    if (json_is_null(person))
        return 1;
    if (!json_is_array(person))
        return lines_skip(s->lines, "persons[%zu] is %s, not an array of %d joints", p,
                          pyjson_type(person), s->v);
    size_t n = json_array_size(person);
    if (n != (size_t)s->v)
        return lines_skip(s->lines, "persons[%zu] has %zu joints, expected %d", p, n, s->v);
    for (size_t j = 0; j < n; j++)
        if (!skelrows_check_joint(s, json_array_get(person, j), p, j))
            return 0;
    return 1;
}

/* The whole line is checked before any of it is used, so a bad one changes nothing. */
static int skelrows_json_frame(skelrows_src *s, const json_t *persons, skelrows_rec *r)
{
    if (!json_is_array(persons))
        return lines_skip(s->lines, "\"persons\" is %s, not an array", pyjson_type(persons));
    for (size_t p = 0; p < json_array_size(persons); p++)
        if (!skelrows_check_person(s, json_array_get(persons, p), p))
            return 0;
    r->persons = persons;
    return 1;
}

/* Parses a JSON line into r; *root receives the tree (or NULL), which r->persons points into. */
static int skelrows_parse_json(skelrows_src *s, const char *line, size_t len, json_t **root,
                               skelrows_rec *r)
{
    json_error_t jerr;
    *root = pyjson_load(line, len, &s->fixed, &jerr);
    if (!*root)
        return lines_skip(s->lines, "invalid JSON at column %d: %s", jerr.column, jerr.text);
    if (!json_is_object(*root))
        return lines_skip(s->lines, "expected an object, got %s", pyjson_type(*root));
    if (!skelrows_json_index(s, *root, "frame", LLONG_MAX - 1, &r->frame))
        return 0;
    const json_t *persons = json_object_get(*root, "persons");
    return persons ? skelrows_json_frame(s, persons, r) : skelrows_json_row(s, *root, r);
}

/* ---- CSV rows --------------------------------------------------------------------------- */

static int skelrows_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Cuts line at its n - 1 commas into fields[n], NUL-terminated and without surrounding
 * blanks. */
static void skelrows_split(char *line, char **fields, int n)
{
    for (int i = 0; i < n; i++) {
        char *comma = strchr(line, ',');
        if (comma)
            *comma = '\0';
        while (skelrows_is_blank(*line))
            line++;
        size_t len = strlen(line);
        while (len > 0 && skelrows_is_blank(line[len - 1]))
            line[--len] = '\0';
        fields[i] = line;
        line = comma ? comma + 1 : line + len;
    }
}

static int skelrows_count_fields(const char *line, size_t len)
{
    size_t n = 1;
    for (const char *c = line; (c = memchr(c, ',', len - (size_t)(c - line))); c++)
        n++;
    return n > SKELROWS_MAX_FIELDS ? SKELROWS_MAX_FIELDS + 1 : (int)n;
}

static int skelrows_is_number(const char *field)
{
    char *end;
    strtod(field, &end);
    return end != field && *end == '\0';
}

/* A header names the columns when frame, person, joint, x and y are each named once;
 * otherwise they are read in order, as without a header. */
static void skelrows_csv_header(skelrows_src *s, char **fields, int n)
{
    int col[COL_COUNT], dup = 0, complete = 1;
    for (int i = 0; i < COL_COUNT; i++)
        col[i] = -1;
    for (int f = 0; f < n; f++)
        for (int i = 0; i < COL_COUNT; i++)
            if (!strcasecmp(fields[f], skelrows_col_names[i])) {
                dup |= col[i] >= 0;
                col[i] = f;
            }
    for (int i = 0; i <= COL_Y; i++)
        complete &= col[i] >= 0;
    if (dup || !complete) {
        lines_warn(s->lines, "the header does not name frame, person, joint, x and y once "
                   "each; columns are read as frame,person,joint,x,y[,z[,score]]");
        return;
    }
    memcpy(s->col, col, sizeof col);
    s->header_fields = n;
}

/* Reports column k, holding f, as not `what`. Returns 0. */
static int skelrows_bad_field(skelrows_src *s, int k, const char *f, const char *what)
{
    int n = (int)strlen(f);
    return lines_skip(s->lines, "field %d (%s) \"%.*s%s\" is not %s", s->col[k] + 1,
                      skelrows_col_names[k], n > SKELROWS_QUOTE_MAX ? SKELROWS_QUOTE_MAX : n, f,
                      n > SKELROWS_QUOTE_MAX ? "..." : "", what);
}

/* Column k of the row, a decimal integer from 0 to max. */
static int skelrows_csv_index(skelrows_src *s, char **fields, int k, long long max,
                              int64_t *out)
{
    const char *f = fields[s->col[k]];
    char *end;
    errno = 0;
    long long v = strtoll(f, &end, 10);
    if (end != f && *end == '\0' && errno == 0 && v >= 0 && v <= max) {
        *out = v;
        return 1;
    }
    char range[64];
    return skelrows_bad_field(s, k, f, skelrows_index_range(max, range, sizeof range));
}

/* Column k of the row, a number (strtof: nan, inf and hexadecimal too), empty for null.
 * *has is 0 when the row has no such column. */
static int skelrows_csv_value(skelrows_src *s, char **fields, int n, int k, float *out,
                              int *has)
{
    *has = s->col[k] >= 0 && s->col[k] < n;
    if (!*has)
        return 1;
    const char *f = fields[s->col[k]];
    if (!*f) {
        *out = NAN;
        return 1;
    }
    char *end;
    *out = strtof(f, &end);
    if (end != f && *end == '\0')
        return 1;
    return skelrows_bad_field(s, k, f, "a number");
}

static int skelrows_csv_row(skelrows_src *s, char **fields, int n, skelrows_rec *r)
{
    if (!skelrows_csv_index(s, fields, COL_FRAME, LLONG_MAX - 1, &r->frame) ||
        !skelrows_csv_index(s, fields, COL_PERSON, LLONG_MAX, &r->person) ||
        !skelrows_csv_index(s, fields, COL_JOINT, LLONG_MAX, &r->joint))
        return 0;
    if (r->joint >= s->v)
        return lines_skip(s->lines, "joint %lld is out of range 0..%d", (long long)r->joint,
                          s->v - 1);
    int has;
    skelrows_joint *jt = &r->jt;
    return skelrows_csv_value(s, fields, n, COL_X, &jt->val[0], &has) &&
           skelrows_csv_value(s, fields, n, COL_Y, &jt->val[1], &has) &&
           skelrows_csv_value(s, fields, n, COL_Z, &jt->val[2], &jt->has_z) &&
           skelrows_csv_value(s, fields, n, COL_SCORE, &jt->val[3], &jt->has_score);
}

/* A row into r; 0 for a malformed line (skipped) or the header (not counted). */
static int skelrows_parse_csv(skelrows_src *s, char *line, size_t len, skelrows_rec *r)
{
    if (memchr(line, '\0', len))
        return lines_skip(s->lines, "a NUL byte at column %zu",
                          (size_t)((char *)memchr(line, '\0', len) - line) + 1);
    int n = skelrows_count_fields(line, len);
    if (n > SKELROWS_MAX_FIELDS)
        return lines_skip(s->lines, "more than %d fields", SKELROWS_MAX_FIELDS);
    char *fields[SKELROWS_MAX_FIELDS];
    skelrows_split(line, fields, n);
    if (lines_number(s->lines) == 1 && !skelrows_is_number(fields[0])) {
        skelrows_csv_header(s, fields, n);
        return 0;
    }
    if (s->header_fields && n != s->header_fields)
        return lines_skip(s->lines, "expected %d fields as the header names, got %d",
                          s->header_fields, n);
    if (!s->header_fields && (n < 5 || n > 7))
        return lines_skip(s->lines, "expected 5 to 7 fields (frame,person,joint,x,y[,z[,score]])"
                          ", got %d", n);
    return skelrows_csv_row(s, fields, n, r);
}

/* ---- reading ---------------------------------------------------------------------------- */

/* Parses one line and routes it. Returns 1 when it completed the frame before it, which is
 * then in frame and *index; 0 otherwise. */
static int skelrows_take_line(skelrows_src *s, char *line, size_t len, float *frame,
                              int64_t *index)
{
    if (lines_is_blank(line, len))
        return lines_skip(s->lines, "empty line");
    skelrows_rec r = {0};
    json_t *root = NULL;
    int ok;
    if (s->format == SKELROWS_CSV) {
        locale_t prev = uselocale(s->numeric);
        ok = skelrows_parse_csv(s, line, len, &r);
        uselocale(prev);
    } else
        ok = skelrows_parse_json(s, line, len, &root, &r);
    int emitted = ok ? skelrows_route(s, &r, frame, index) : 0;
    json_decref(root);
    return emitted;
}

int skelrows_read(skelrows_src *s, float *frame, int64_t *index, cin_err *err)
{
    for (;;) {
        if (s->gap_next < s->gap_end)
            return skelrows_emit_gap(s, frame, index);
        if (s->state == ACC_READY)
            return skelrows_emit(s, frame, index);
        char *line;
        size_t len;
        int rc = lines_next(s->lines, &line, &len, err);
        if (rc <= 0)
            return s->state == ACC_OPEN ? skelrows_emit(s, frame, index) : rc;
        if (skelrows_take_line(s, line, len, frame, index))
            return 1;
    }
}
