/* The frame loop of cin-run: source -> model -> post-processing -> sinks. A frame travels one
 * way; the loop owns every buffer it uses, allocated before the first frame. */
#include "pipeline.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "csvsink.h"
#include "feat.h"
#include "jsonl.h"
#include "model.h"
#include "npy.h"
#include "post.h"
#include "sksrc.h"
#include "video.h"

typedef struct source {
    video_src *video;
    video_opts vo;          /* video: how it was opened, to reopen it the same way */
    int live;               /* video: reconnect on its end or error (source.reconnect) */
    int64_t index_base;     /* video: frames output before the last reconnect */
    int64_t next_index;
    int64_t damaged_before; /* video: damaged packets of the connections already closed */
    feat_src *features;
    sksrc *skeleton;
    float *array;           /* npy source: [frames][c][h][w] */
    int64_t frames, next;
    double fps;             /* npy: frames per second for pts, the preprocess fps or 1 */
} source;

/* File sinks write to "<path>.part-<pid>" and are renamed over <path> when closed, so a run
 * that fails before its first frame leaves an existing results file as it was. */
typedef struct sinks {
    jsonl_sink *jsonl[PIPE_MAX_SINKS];      /* one of the three per sink */
    npy_writer *npy[PIPE_MAX_SINKS];
    csv_sink *csv[PIPE_MAX_SINKS];
    char part[PIPE_MAX_SINKS][4096];  /* "" for stdout */
    int n;
} sinks;

/* A model and its stream; a pipeline has one, or a backbone and the head it feeds. */
typedef struct stage {
    cin_model *model;
    cin_stream *stream;
    cin_model_info info;
} stage;

typedef struct run {
    const pipe_config *cfg;
    stage st[2];
    int n_st;
    float *features;        /* the backbone's output, the head's input */
    post_labels *labels;
    source src;
    sinks out;
    size_t frame_size;
    float *frame, *logits, *scores, *nan_row;
    float *clip;            /* clip mode: ring of the last clip_frames frames, then the clip */
    float *clip_ordered;
    int *top_idx;
    float *top_val;
    double *lat;            /* per-frame latency, ms */
    int64_t lat_cap;
    cin_logger log;
    const volatile sig_atomic_t *stop;
    pipe_run_opts opts;
    double *window;         /* latencies of one status interval, sorted for its percentiles */
    int64_t window_cap;
    int64_t reset_at;       /* frame count at the last stream reset: clip mode refills */
} run;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

/* ---- source ---- */

/* The stage whose outputs are the results. */
static const cin_model_info *out_info(const run *r)
{
    return &r->st[r->n_st - 1].info;
}

static int npy_source(run *r, cin_err *err)
{
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    const char *path = r->cfg->source.uri;
    int rc = npy_read_f32(path, &ndim, shape, &r->src.array, err);
    if (rc)
        return rc;
    const cin_model_info *i = &r->st[0].info;
    /* frames [T][C][H][W], or feature vectors [T][D] for a model of [D][1][1] frames */
    int vectors = i->in_height == 1 && i->in_width == 1 && ndim == 2 && shape[1] == i->in_channels;
    if (!vectors && (ndim != 4 || shape[1] != i->in_channels || shape[2] != i->in_height ||
                     shape[3] != i->in_width)) {
        char found[160] = "", want[64];
        for (int d = 0; d < ndim; d++)
            snprintf(found + strlen(found), sizeof found - strlen(found), "%s%lld",
                     d ? ", " : "", (long long)shape[d]);
        if (i->in_height == 1 && i->in_width == 1)
            snprintf(want, sizeof want, "[frames, %d] (feature vectors)", i->in_channels);
        else
            snprintf(want, sizeof want, "[frames, %d, %d, %d] (preprocessed frames)",
                     i->in_channels, i->in_height, i->in_width);
        return cin_err_set(err, CIN_E_SHAPE, "%s: array of shape [%s], expected %s", path,
                           found, want);
    }
    r->src.frames = shape[0];
    r->src.fps = r->cfg->preprocess.fps > 0 ? r->cfg->preprocess.fps : 1.0;
    return 0;
}

/* Skipped feature records go to the log with their line number; never per frame otherwise. */
static void warn_record(void *user, const char *msg)
{
    cin_log(user, CIN_LOG_WARN, "source", "%s", msg);
}

static int features_source(run *r, cin_err *err)
{
    const pipe_config *c = r->cfg;
    const cin_model_info *i = &r->st[0].info;
    if (i->in_height != 1 || i->in_width != 1)
        return cin_err_set(err, CIN_E_CONFIG, "%s: source: a features source needs a model of "
                           "feature vectors; model.arch %s takes %dx%d frames", c->path,
                           c->model.arch, i->in_height, i->in_width);
    feat_opts o = {.uri = c->source.uri, .dim = i->in_channels,
                   .format = c->source.format == PIPE_FORMAT_CSV ? FEAT_CSV : FEAT_JSONL,
                   .warn = warn_record, .warn_user = &r->log, .stop = r->stop};
    r->src.fps = c->preprocess.fps > 0 ? c->preprocess.fps : 1.0;
    return feat_open(&o, &r->src.features, err);
}

/* preprocess.centre_joint and scale_bone name joints of the model's skeleton. */
static int check_joints(const pipe_config *c, int joints, cin_err *err)
{
    const int *bone = c->preprocess.scale_bone;
    int root = c->preprocess.centre_joint;
    int bad = root >= joints ? root : bone[0] >= joints ? bone[0] : bone[1];
    if (root < joints && bone[0] < joints && bone[1] < joints)
        return 0;
    return cin_err_set(err, CIN_E_CONFIG, "%s: preprocess.%s: joint %d, but the model's "
                       "skeleton has %d joints (0..%d)", c->path,
                       root >= joints ? "centre_joint" : "scale_bone", bad, joints, joints - 1);
}

static int skeleton_source(run *r, cin_err *err)
{
    const pipe_config *c = r->cfg;
    const cin_model_info *i = &r->st[0].info;
    if (i->joints == 0)
        return cin_err_set(err, CIN_E_CONFIG, "%s: source: a skeleton source needs a skeleton "
                           "model (arch stgcn); model.arch %s takes %dx%dx%d frames", c->path,
                           c->model.arch, i->in_channels, i->in_height, i->in_width);
    int rc = check_joints(c, i->joints, err);
    if (rc)
        return rc;
    sksrc_opts o = {.uri = c->source.uri, .format = c->source.format,
                    .channels = i->in_channels, .joints = i->joints, .persons = i->persons,
                    .score = c->source.score, .fps = c->preprocess.fps,
                    .centre_joint = c->preprocess.centre_joint,
                    .scale_bone = {c->preprocess.scale_bone[0], c->preprocess.scale_bone[1]},
                    .warn = warn_record, .warn_user = &r->log, .stop = r->stop};
    return sksrc_open(&o, &r->src.skeleton, err);
}

static int video_source(run *r, cin_err *err)
{
    const pipe_config *c = r->cfg;
    if (r->st[0].info.in_channels != 3 || r->st[0].info.in_height < 2)
        return cin_err_set(err, CIN_E_CONFIG, "%s: source: a video needs a model of RGB frames; "
                           "model.arch %s takes vectors of %d features (use source.type "
                           "features or npy)",
                           c->path, c->model.arch, r->st[0].info.in_channels);
    /* the model fixes the crop; resize as the X3D recipes do, crop * 8 / 7, unless given */
    int crop = r->st[0].info.in_height;
    int resize = c->preprocess.resize ? c->preprocess.resize : crop * 8 / 7;
    if (resize < crop)
        return cin_err_set(err, CIN_E_CONFIG, "%s: preprocess.resize: %d is smaller than the "
                           "model's input (%d); expected at least %d", c->path, resize, crop,
                           crop);
    video_opts vo = {.uri = c->source.uri, .fps = c->preprocess.fps, .resize = resize,
                     .crop = crop, .open_timeout = c->source.open_timeout,
                     .read_timeout = c->source.read_timeout,
                     .rtsp_transport = c->source.rtsp_transport, .width = c->source.width,
                     .height = c->source.height, .rate = c->source.rate,
                     .pixel_format = c->source.pixel_format, .stop = r->stop};
    memcpy(vo.mean, c->preprocess.mean, sizeof vo.mean);
    memcpy(vo.std, c->preprocess.std, sizeof vo.std);
    r->src.vo = vo;
    r->src.live = c->source.reconnect.on;
    return video_open(&vo, &r->src.video, err);
}

/* The readers' errors name the file; the pipeline adds the file and key that gave it. */
static int open_source(run *r, cin_err *err)
{
    const pipe_config *c = r->cfg;
    int t = c->source.type, rc;
    if (t == PIPE_SOURCE_NPY)
        rc = npy_source(r, err);
    else if (t == PIPE_SOURCE_FEATURES)
        rc = features_source(r, err);
    else if (t == PIPE_SOURCE_SKELETON)
        rc = skeleton_source(r, err);
    else
        rc = video_source(r, err);
    if (!rc || rc == CIN_E_CONFIG)
        return rc;
    return cin_err_wrap(err, rc, "%s: source.%s", c->path, t == PIPE_SOURCE_NPY ? "path" : "uri");
}

/* 1 with a frame, 0 at the end, < 0 on error. */
static int read_frame(run *r, int64_t *index, double *pts, cin_err *err)
{
    if (r->src.video) {
        video_frame_info info;
        int rc = video_read(r->src.video, r->frame, &info, err);
        *index = r->src.index_base + info.index;
        *pts = info.pts;
        r->src.next_index = rc == 1 ? *index + 1 : r->src.next_index;
        return rc;
    }
    if (r->src.features) {
        int rc = feat_read(r->src.features, r->frame, index, err);
        *pts = (double)*index / r->src.fps;
        return rc;
    }
    if (r->src.skeleton)
        return sksrc_read(r->src.skeleton, r->frame, index, pts, err);
    if (r->src.next >= r->src.frames)
        return 0;
    *index = r->src.next;
    *pts = (double)r->src.next / r->src.fps;
    memcpy(r->frame, r->src.array + r->src.next++ * r->frame_size,
           sizeof(float) * r->frame_size);
    return 1;
}

static int stopping(const run *r)
{
    return r->stop && *r->stop;
}

/* Waits secs, in slices short enough that a stop request ends the wait; 1 if stopped. */
static int wait_or_stop(const run *r, double secs)
{
    double end = now_ms() + secs * 1e3;
    for (double left; !stopping(r) && (left = end - now_ms()) > 0;) {
        double slice = left < 50 ? left : 50;
        struct timespec ts = {0, (long)(slice * 1e6)};
        nanosleep(&ts, NULL);
    }
    return stopping(r);
}

/* The gap of a reconnection must not be blended into the windows: every stage's stream
 * starts again as if new, and clip mode collects a new clip. */
static void reset_streams(run *r, int64_t frames)
{
    for (int i = 0; i < r->n_st; i++)
        cin_stream_reset(r->st[i].stream);
    r->reset_at = frames;
}

/* Reopens the source with exponential backoff: 1 when it is open again, 0 if stopped while
 * waiting, or the last error once source.reconnect.attempts reopenings in a row failed. */
static int reopen_source(run *r, double *waited, int *attempt, cin_err *err)
{
    const pipe_config *c = r->cfg;
    double delay = c->source.reconnect.initial, t0 = now_ms();
    for (*attempt = 1;; (*attempt)++) {
        if (wait_or_stop(r, delay))
            return 0;
        int rc = video_open(&r->src.vo, &r->src.video, err);
        *waited = (now_ms() - t0) / 1e3;
        if (rc == 0)
            return 1;
        if (stopping(r))
            return 0;
        int n = c->source.reconnect.attempts;
        if (n && *attempt >= n)
            return cin_err_wrap(err, rc, "%s: source.reconnect: gave up after %d attempts "
                                "in %.1f s", c->path, n, *waited);
        cin_log(&r->log, CIN_LOG_WARN, "source", "reconnect attempt %d failed: %s", *attempt,
                err->msg);
        delay = delay * 2 < c->source.reconnect.max ? delay * 2 : c->source.reconnect.max;
    }
}

/* A live source ended (rc 0) or failed (rc < 0, message in err): close it, reopen it and
 * reset the streams. 1 to go on reading, 0 when stopped, < 0 when reconnecting gave up. */
static int reconnect(run *r, pipe_stats *st, int rc, cin_err *err)
{
    cin_log(&r->log, CIN_LOG_WARN, "source", "%s; reconnecting",
            rc ? err->msg : "end of stream");
    r->src.damaged_before += video_damaged(r->src.video);
    video_close(r->src.video);
    r->src.video = NULL;
    r->src.index_base = r->src.next_index;
    double waited = 0;
    int attempt = 0;
    rc = reopen_source(r, &waited, &attempt, err);
    if (rc <= 0)
        return rc;
    st->reconnects++;
    reset_streams(r, st->frames);
    cin_log(&r->log, CIN_LOG_WARN, "source", "%s: reconnected after %.2f s (attempt %d); "
            "stream state reset", r->src.vo.uri, waited, attempt);
    return 1;
}

/* read_frame, with a live source reconnected whenever it ends or fails. */
static int next_frame(run *r, pipe_stats *st, int64_t *index, double *pts, cin_err *err)
{
    for (;;) {
        int rc = read_frame(r, index, pts, err);
        if (rc == 1 || stopping(r))
            return rc == 1 ? 1 : 0;
        if (!r->src.live)
            return rc;
        if ((rc = reconnect(r, st, rc, err)) <= 0)
            return rc;
    }
}

/* ---- sinks ---- */

/* Results go to a .part file renamed over `path` only where `path` is a regular file or
 * nothing yet; stdout, a FIFO, a device or a symbolic link is written in place, never
 * replaced. */
static int renamed_into_place(const char *path)
{
    struct stat st;
    if (strcmp(path, "-") == 0)
        return 0;
    return lstat(path, &st) != 0 || S_ISREG(st.st_mode);
}

static int open_sink(run *r, int i, const char *path, const int64_t *row, cin_err *err)
{
    const pipe_sink *s = &r->cfg->sinks[i];
    if (s->type == PIPE_SINK_JSONL)
        return jsonl_open(path, s->flush, &r->out.jsonl[i], err);
    if (s->type == PIPE_SINK_CSV)
        return csv_sink_open(path, r->cfg->postprocess.topk, r->labels != NULL, s->flush,
                             &r->out.csv[i], err);
    return npy_writer_open(path, 1, row, &r->out.npy[i], err);
}

static int close_sink(run *r, int i, cin_err *err)
{
    if (r->out.jsonl[i])
        return jsonl_close(r->out.jsonl[i], err);
    if (r->out.csv[i])
        return csv_sink_close(r->out.csv[i], err);
    return npy_writer_close(r->out.npy[i], err);
}

static int open_sinks(run *r, cin_err *err)
{
    const pipe_config *c = r->cfg;
    int64_t row[1] = {out_info(r)->out_size};
    for (int i = 0; i < c->n_sinks; i++) {
        const pipe_sink *s = &c->sinks[i];
        char *part = r->out.part[i];
        if (renamed_into_place(s->path) &&
            snprintf(part, sizeof r->out.part[i], "%s.part-%ld", s->path, (long)getpid()) >=
                (int)sizeof r->out.part[i])
            return cin_err_set(err, CIN_E_CONFIG, "%s: sinks[%d].path: too long", c->path, i);
        int rc = open_sink(r, i, part[0] ? part : s->path, row, err);
        if (rc) {
            part[0] = '\0';
            return cin_err_wrap(err, rc, "%s: sinks[%d].path: cannot write '%s'", c->path, i,
                                s->path);
        }
        r->out.n = i + 1;
    }
    return 0;
}

/* Closes every sink; their files replace the results they name when `keep`, and are removed
 * otherwise. Returns the first error. */
static int close_sinks(run *r, int keep, cin_err *err)
{
    int first = 0;
    for (int i = 0; i < r->out.n; i++) {
        cin_err e = {0};
        int rc = close_sink(r, i, &e);
        const char *part = r->out.part[i], *path = r->cfg->sinks[i].path;
        if (!rc && part[0] && keep && rename(part, path) != 0)
            rc = cin_err_set(&e, CIN_E_IO, "%s: cannot rename %s into place: %s", path, part,
                             strerror(errno));
        if (part[0] && (!keep || rc))
            remove(part);
        if (rc && !first) {
            first = rc;
            if (err)
                *err = e;
        }
    }
    r->out.n = 0;
    return first;
}

/* Seconds since the Unix epoch, to the millisecond, as results carry it. */
static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return round(((double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6)) / 1e3;
}

/* One row per input frame to npy sinks (NaN when the frame gave no output); one line per
 * output to JSON-lines and CSV sinks. */
static int write_result(run *r, int64_t index, double pts, int have, double ms, cin_err *err)
{
    const pipe_config *c = r->cfg;
    int k = c->postprocess.topk, n = out_info(r)->out_size;
    if (have) {
        memcpy(r->scores, r->logits, sizeof(float) * n);
        if (c->postprocess.softmax)
            post_softmax(r->scores, n);
        post_topk(r->scores, n, k, r->top_idx, r->top_val);
    }
    sink_result res = {.source = c->source.id, .frame = index, .pts = pts, .wall = wall_now(),
                       .latency_ms = ms, .k = k, .idx = r->top_idx, .score = r->top_val,
                       .labels = r->labels ? post_labels_array(r->labels) : NULL};
    for (int i = 0; i < r->out.n; i++) {
        int rc = 0;
        if (r->out.npy[i]) {
            rc = npy_writer_append(r->out.npy[i], have ? r->logits : r->nan_row, err);
            /* keep the file a valid array of the rows so far, should the run be cut short */
            if (!rc && (index + 1) % 64 == 0)
                rc = npy_writer_flush(r->out.npy[i], err);
        }
        else if (have && r->out.jsonl[i])
            rc = jsonl_write(r->out.jsonl[i], &res, err);
        else if (have)
            rc = csv_sink_write(r->out.csv[i], &res, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Hands the text sinks the time, so that results waiting in a write buffer longer than the
 * sink's flush interval are submitted; never waits for the disk. */
static int tick_sinks(run *r, double now, cin_err *err)
{
    for (int i = 0; i < r->out.n; i++) {
        int rc = r->out.jsonl[i] ? jsonl_tick(r->out.jsonl[i], now, err)
                 : r->out.csv[i] ? csv_sink_tick(r->out.csv[i], now, err)
                                 : 0;
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- model ---- */

static int load_stage(run *r, const pipe_model *pm, int features, const cin_logger *lg,
                      cin_err *err)
{
    stage *s = &r->st[r->n_st++];
    cin_model_opts o;
    pipe_model_opts(r->cfg, pm, features, &o);
    o.log = lg->fn;
    o.log_user = lg->user;
    o.log_level = lg->level;
    int rc = cin_model_load(&o, &s->model, err);
    if (rc)
        return cin_err_wrap(err, rc, "%s: %s", r->cfg->path, r->n_st > 1 ? "model.head" : "model");
    cin_model_get_info(s->model, &s->info);
    return cin_stream_create(s->model, &s->stream, err);
}

/* The model, and its head fed with the model's features when there is one. */
static int load_models(run *r, const cin_logger *lg, cin_err *err)
{
    const pipe_model *m = &r->cfg->model;
    int rc = load_stage(r, m, m->head != NULL, lg, err);
    if (rc || !m->head)
        return rc;
    rc = load_stage(r, m->head, 0, lg, err);
    const cin_model_info *a = &r->st[0].info, *b = &r->st[1].info;
    if (!rc && (b->in_height != 1 || b->in_width != 1))
        return cin_err_set(err, CIN_E_CONFIG, "%s: model.head: arch %s takes frames; a head "
                           "takes the model's feature vectors (use arch transformer)",
                           r->cfg->path, r->cfg->model.head->arch);
    if (!rc && b->in_channels != a->out_size)
        return cin_err_set(err, CIN_E_CONFIG, "%s: model.head: takes %d features per frame, "
                           "the model gives %d (set model.head.transformer.input_dim)",
                           r->cfg->path, b->in_channels * b->in_height * b->in_width,
                           a->out_size);
    r->features = rc ? NULL : malloc(sizeof(float) * a->out_size);
    return rc ? rc : r->features ? 0 : cin_err_set(err, CIN_E_NOMEM, "pipeline: out of memory");
}

/* One continual step through every stage: 1 with results in r->logits, 0 without, < 0. */
static int step_stages(run *r)
{
    if (r->n_st == 1)
        return cin_stream_step(r->st[0].stream, r->frame, r->logits);
    int have = cin_stream_step(r->st[0].stream, r->frame, r->features);
    return have <= 0 ? have : cin_stream_step(r->st[1].stream, r->features, r->logits);
}

static const char *stage_error(const run *r)
{
    const char *e = cin_stream_last_error(r->st[0].stream);
    return e[0] || r->n_st == 1 ? e : cin_stream_last_error(r->st[1].stream);
}

static int alloc_buffers(run *r, cin_err *err)
{
    const cin_model_info *i = &r->st[0].info;
    int n = out_info(r)->out_size, k = r->cfg->postprocess.topk;
    r->frame_size = (size_t)i->in_channels * i->in_height * i->in_width;
    r->frame = malloc(sizeof(float) * r->frame_size);
    r->logits = malloc(sizeof(float) * n);
    r->scores = malloc(sizeof(float) * n);
    r->nan_row = malloc(sizeof(float) * n);
    r->top_idx = malloc(sizeof(int) * k);
    r->top_val = malloc(sizeof(float) * k);
    if (r->cfg->model.mode == PIPE_MODE_CLIP) {
        r->clip = malloc(sizeof(float) * r->frame_size * i->clip_frames);
        r->clip_ordered = malloc(sizeof(float) * r->frame_size * i->clip_frames);
    }
    r->lat_cap = 4096;
    r->lat = malloc(sizeof(double) * r->lat_cap);
    if (!r->frame || !r->logits || !r->scores || !r->nan_row || !r->top_idx || !r->top_val ||
        !r->lat || (r->cfg->model.mode == PIPE_MODE_CLIP && (!r->clip || !r->clip_ordered)))
        return cin_err_set(err, CIN_E_NOMEM, "pipeline: out of memory");
    for (int j = 0; j < n; j++)
        r->nan_row[j] = NAN;
    return 0;
}

/* Clip mode: the regular network over the last clip_frames frames, once that many arrived. */
static int clip_step(run *r, int64_t t)
{
    int T = r->st[0].info.clip_frames;
    memcpy(r->clip + (size_t)(t % T) * r->frame_size, r->frame, sizeof(float) * r->frame_size);
    if (t + 1 < T)
        return 0;
    for (int f = 0; f < T; f++)
        memcpy(r->clip_ordered + (size_t)f * r->frame_size,
               r->clip + (size_t)((t + 1 + f) % T) * r->frame_size,
               sizeof(float) * r->frame_size);
    int rc = cin_stream_forward(r->st[0].stream, r->clip_ordered, T, r->logits);
    return rc < 0 ? rc : 1;
}

static int record_latency(run *r, int64_t t, double ms)
{
    if (t >= r->lat_cap) {
        double *l = realloc(r->lat, sizeof(double) * r->lat_cap * 2);
        if (!l)
            return CIN_E_NOMEM;
        r->lat = l;
        r->lat_cap *= 2;
    }
    r->lat[t] = ms;
    return 0;
}

static int cmp_double(const void *a, const void *b);

/* The figures since frame `since` (at time since_ms) go to the status callback. */
static void report_status(run *r, const pipe_stats *st, int64_t since, int64_t outputs_before,
                          double since_ms, double now)
{
    int64_t n = st->frames - since;
    if (n > r->window_cap) {
        double *w = realloc(r->window, sizeof(double) * n);
        if (!w)
            return; /* a report is skipped, never the run */
        r->window = w;
        r->window_cap = n;
    }
    memcpy(r->window, r->lat + since, sizeof(double) * n);
    qsort(r->window, (size_t)n, sizeof(double), cmp_double);
    double secs = (now - since_ms) / 1e3;
    pipe_status s = {.seconds = st->seconds, .fps_in = n / secs,
                     .fps_out = (st->outputs - outputs_before) / secs,
                     .p50_ms = n ? r->window[(n - 1) / 2] : 0.0,
                     .p99_ms = n ? r->window[(n - 1) * 99 / 100] : 0.0, .frames = st->frames,
                     .outputs = st->outputs, .reconnects = st->reconnects};
    r->opts.status(r->opts.status_user, &s);
}

static int frame_loop(run *r, pipe_stats *st, cin_err *err)
{
    int64_t t = 0, index;
    double pts;
    int rc = 0;
    double start = now_ms(), last = start;
    int64_t last_frames = 0, last_outputs = 0;
    int clip = r->cfg->model.mode == PIPE_MODE_CLIP;
    st->delay = clip ? r->st[0].info.clip_frames - 1 : r->st[0].info.delay;
    if (r->n_st > 1)
        st->delay += r->st[1].info.delay;
    while (!stopping(r) && (rc = next_frame(r, st, &index, &pts, err)) == 1) {
        double t0 = now_ms();
        int have = clip ? clip_step(r, t - r->reset_at) : step_stages(r);
        double ms = round((now_ms() - t0) * 1e3) / 1e3; /* to the microsecond */
        if (have < 0)
            return cin_err_set(err, have, "model: %s", stage_error(r));
        if ((rc = record_latency(r, t, ms)) != 0)
            return cin_err_set(err, rc, "pipeline: out of memory");
        if ((rc = write_result(r, index, pts, have, ms, err)) != 0)
            return rc;
        st->outputs += have;
        st->frames = ++t;
        double now = now_ms();
        if ((rc = tick_sinks(r, now / 1e3, err)) != 0)
            return rc;
        st->seconds = (now - start) / 1e3;
        if (r->opts.status && now - last >= r->opts.status_every * 1e3) {
            report_status(r, st, last_frames, last_outputs, last, now);
            last = now;
            last_frames = st->frames;
            last_outputs = st->outputs;
        }
    }
    st->seconds = (now_ms() - start) / 1e3;
    st->stopped = r->stop && *r->stop;
    return rc > 0 ? 0 : rc; /* stopped with a frame still to come */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void percentiles(run *r, pipe_stats *st)
{
    int64_t n = st->frames;
    if (n == 0)
        return;
    qsort(r->lat, (size_t)n, sizeof(double), cmp_double);
    st->p50_ms = r->lat[(n - 1) * 50 / 100];
    st->p90_ms = r->lat[(n - 1) * 90 / 100];
    st->p99_ms = r->lat[(n - 1) * 99 / 100];
    st->max_ms = r->lat[n - 1];
}

static void release(run *r)
{
    for (int i = 0; i < r->n_st; i++) {
        cin_stream_free(r->st[i].stream);
        cin_model_free(r->st[i].model);
    }
    free(r->features);
    post_labels_free(r->labels);
    video_close(r->src.video);
    feat_close(r->src.features);
    sksrc_close(r->src.skeleton);
    free(r->src.array);
    free(r->frame);
    free(r->logits);
    free(r->scores);
    free(r->nan_row);
    free(r->clip);
    free(r->clip_ordered);
    free(r->top_idx);
    free(r->top_val);
    free(r->lat);
    free(r->window);
}

static void source_counts(const run *r, pipe_stats *st)
{
    if (r->src.features) {
        st->skipped = feat_skipped(r->src.features);
        st->masked = feat_masked(r->src.features);
        st->masked_what = "missing or non-finite values set to 0";
    }
    if (r->src.skeleton) {
        st->skipped = sksrc_skipped(r->src.skeleton);
        st->masked = sksrc_masked(r->src.skeleton);
        st->masked_what = "joints set to 0 (missing or non-finite) or dropped (persons beyond "
                          "the model's)";
        st->unnormalised = sksrc_unnormalised(r->src.skeleton);
    }
}

int pipe_run(const pipe_config *c, const pipe_run_opts *o, pipe_stats *stats, cin_err *err)
{
    run r = {.cfg = c};
    if (o)
        r = (run){.cfg = c, .log = {o->log, o->log_user, o->log_level}, .stop = o->stop,
                  .opts = *o};
    memset(stats, 0, sizeof *stats);
    int rc = load_models(&r, &r.log, err);
    int classes = rc ? 0 : out_info(&r)->out_size;
    if (!rc && c->postprocess.labels)
        rc = post_labels_load(c->postprocess.labels, classes, &r.labels, err);
    if (!rc && c->postprocess.topk > classes)
        rc = cin_err_set(err, CIN_E_CONFIG, "%s: postprocess.topk: %d, but the model has %d "
                         "classes", c->path, c->postprocess.topk, classes);
    rc = rc ? rc : alloc_buffers(&r, err);
    rc = rc ? rc : open_source(&r, err);
    /* a stop request while a live source was still connecting is a stop, not a failure */
    if (rc && stopping(&r) && video_uri_is_live(c->source.uri)) {
        stats->stopped = 1;
        release(&r);
        return 0;
    }
    int opened = rc ? 0 : (rc = open_sinks(&r, err)) == 0;
    rc = rc ? rc : frame_loop(&r, stats, err);
    /* results already written are kept even when the run stops early; a run that fails
     * before its first frame leaves the previous results in place */
    int keep = opened && (rc == 0 || stats->frames > 0);
    int rc_close = close_sinks(&r, keep, rc ? NULL : err);
    rc = rc ? rc : rc_close;
    percentiles(&r, stats);
    stats->damaged = r.src.damaged_before + video_damaged(r.src.video);
    source_counts(&r, stats);
    if (!rc && stats->frames == 0 && stats->skipped > 0)
        rc = cin_err_set(err, CIN_E_FORMAT, "%s: no valid record, %lld malformed lines "
                         "skipped (is source.format right?)", c->source.uri,
                         (long long)stats->skipped);
    if (r.n_st && r.st[0].model)
        snprintf(stats->layout, sizeof stats->layout, "%s", r.st[0].info.layout);
    release(&r);
    return rc;
}
