/* A pipeline source: opens what the pipe_source names with the reader for its type, checks
 * that its frames fit the model, and reconnects a live video source with exponential backoff.
 * Errors name the pipeline file and the source's key (source.uri, sources[1].path). */
#include "feed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "feat.h"
#include "npy.h"
#include "sksrc.h"
#include "video.h"

struct feed {
    feed_opts o;
    char key[32];           /* "source" or "sources[i]", for messages */
    size_t frame_size;
    video_src *video;
    video_opts vo;          /* video: how it was opened, to reopen it the same way */
    int64_t index_base;     /* video: frames output before the last reconnect */
    int64_t next_index;
    int64_t damaged_before; /* video: damaged packets of the connections already closed */
    int64_t reconnects;
    int reset_next;         /* the next frame follows a reconnection */
    feat_src *features;
    sksrc *skeleton;
    float *array;           /* npy source: [frames][c][h][w] */
    int64_t frames, next;
    double fps;             /* npy, features: frames per second for pts */
    double pace_pts, pace_ms;   /* realtime: the first frame's pts and when it was read */
    int stopped;
};

double feed_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static int feed_stopping(const feed *f)
{
    return f->o.stop && *f->o.stop;
}

/* Waits secs, in slices short enough that a stop request ends the wait; 1 if stopped. */
static int feed_wait(const feed *f, double secs)
{
    double end = feed_now_ms() + secs * 1e3;
    for (double left; !feed_stopping(f) && (left = end - feed_now_ms()) > 0;) {
        double slice = left < 50 ? left : 50;
        struct timespec ts = {0, (long)(slice * 1e6)};
        nanosleep(&ts, NULL);
    }
    return feed_stopping(f);
}

static int feed_reopen(feed *f, double *waited, int *attempt, cin_err *err);

/* ---- opening, by type ---- */

static int feed_npy(feed *f, cin_err *err)
{
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    const char *path = f->o.src->uri;
    int rc = npy_read_f32(path, &ndim, shape, &f->array, err);
    if (rc)
        return rc;
    const cin_model_info *i = f->o.model;
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
    f->frames = shape[0];
    return 0;
}

/* Skipped records go to the log with their line number; never per frame otherwise. */
static void feed_warn(void *user, const char *msg)
{
    const feed *f = user;
    cin_log(f->o.log, CIN_LOG_WARN, "source", "%s: %s", f->o.src->id, msg);
}

static int feed_features(feed *f, cin_err *err)
{
    const pipe_config *c = f->o.cfg;
    const cin_model_info *i = f->o.model;
    if (i->in_height != 1 || i->in_width != 1)
        return cin_err_set(err, CIN_E_CONFIG, "%s: %s: a features source needs a model of "
                           "feature vectors; model.arch %s takes %dx%d frames", c->path, f->key,
                           c->model.arch, i->in_height, i->in_width);
    feat_opts o = {.uri = f->o.src->uri, .dim = i->in_channels,
                   .format = f->o.src->format == PIPE_FORMAT_CSV ? FEAT_CSV : FEAT_JSONL,
                   .warn = feed_warn, .warn_user = f, .stop = f->o.stop,
                   .open_timeout = f->o.src->open_timeout,
                   .read_timeout = f->o.src->read_timeout};
    return feat_open(&o, &f->features, err);
}

/* preprocess.centre_joint and scale_bone name joints of the model's skeleton. */
static int feed_check_joints(const pipe_config *c, int joints, cin_err *err)
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

static int feed_skeleton(feed *f, cin_err *err)
{
    const pipe_config *c = f->o.cfg;
    const pipe_source *s = f->o.src;
    const cin_model_info *i = f->o.model;
    if (i->joints == 0)
        return cin_err_set(err, CIN_E_CONFIG, "%s: %s: a skeleton source needs a skeleton "
                           "model (arch stgcn); model.arch %s takes %dx%dx%d frames", c->path,
                           f->key, c->model.arch, i->in_channels, i->in_height, i->in_width);
    int rc = feed_check_joints(c, i->joints, err);
    if (rc)
        return rc;
    sksrc_opts o = {.uri = s->uri, .format = s->format, .channels = i->in_channels,
                    .joints = i->joints, .persons = i->persons, .score = s->score,
                    .fps = c->preprocess.fps, .centre_joint = c->preprocess.centre_joint,
                    .scale_bone = {c->preprocess.scale_bone[0], c->preprocess.scale_bone[1]},
                    .warn = feed_warn, .warn_user = f, .stop = f->o.stop,
                    .open_timeout = s->open_timeout, .read_timeout = s->read_timeout};
    return sksrc_open(&o, &f->skeleton, err);
}

static int feed_video(feed *f, cin_err *err)
{
    const pipe_config *c = f->o.cfg;
    const pipe_source *s = f->o.src;
    const cin_model_info *i = f->o.model;
    if (i->in_channels != 3 || i->in_height < 2)
        return cin_err_set(err, CIN_E_CONFIG, "%s: %s: a video needs a model of RGB frames; "
                           "model.arch %s takes vectors of %d features (use source.type "
                           "features or npy)", c->path, f->key, c->model.arch, i->in_channels);
    /* the model fixes the crop; resize as the X3D recipes do, crop * 8 / 7, unless given */
    int crop = i->in_height;
    int resize = c->preprocess.resize ? c->preprocess.resize : crop * 8 / 7;
    if (resize < crop)
        return cin_err_set(err, CIN_E_CONFIG, "%s: preprocess.resize: %d is smaller than the "
                           "model's input (%d); expected at least %d", c->path, resize, crop,
                           crop);
    video_opts vo = {.uri = s->uri, .fps = c->preprocess.fps, .resize = resize, .crop = crop,
                     .open_timeout = s->open_timeout, .read_timeout = s->read_timeout,
                     .rtsp_transport = s->rtsp_transport, .width = s->width,
                     .height = s->height, .rate = s->rate, .pixel_format = s->pixel_format,
                     .stop = f->o.stop};
    memcpy(vo.mean, c->preprocess.mean, sizeof vo.mean);
    memcpy(vo.std, c->preprocess.std, sizeof vo.std);
    f->vo = vo;
    int rc = video_open(&vo, &f->video, err);
    if (!rc || !s->reconnect.on || rc == CIN_E_CONFIG || feed_stopping(f))
        return rc;
    /* a camera that is down when the run starts is waited for as after a failure */
    cin_log(f->o.log, CIN_LOG_WARN, "source", "%s: %s; retrying", s->id, err->msg);
    double waited = 0;
    int attempt = 0;
    rc = feed_reopen(f, &waited, &attempt, err);
    if (rc == 1)
        cin_log(f->o.log, CIN_LOG_WARN, "source", "%s: %s: opened after %.2f s (attempt %d)",
                s->id, s->uri, waited, attempt);
    return rc == 1 ? 0 : rc == 0 ? CIN_E_IO : rc;
}

static int feed_open_type(feed *f, cin_err *err)
{
    int t = f->o.src->type;
    int rc = t == PIPE_SOURCE_NPY        ? feed_npy(f, err)
             : t == PIPE_SOURCE_FEATURES ? feed_features(f, err)
             : t == PIPE_SOURCE_SKELETON ? feed_skeleton(f, err)
                                         : feed_video(f, err);
    if (!rc || rc == CIN_E_CONFIG)
        return rc;
    return cin_err_wrap(err, rc, "%s: %s.%s", f->o.cfg->path, f->key,
                        t == PIPE_SOURCE_NPY ? "path" : "uri");
}

int feed_open(const feed_opts *o, feed **out, cin_err *err)
{
    feed *f = calloc(1, sizeof *f);
    *out = NULL;
    if (!f)
        return cin_err_set(err, CIN_E_NOMEM, "pipeline: out of memory");
    f->o = *o;
    f->frame_size = (size_t)o->model->in_channels * o->model->in_height * o->model->in_width;
    f->fps = o->cfg->preprocess.fps > 0 ? o->cfg->preprocess.fps : 1.0;
    f->pace_ms = -1;
    int i = (int)(o->src - o->cfg->sources);
    if (o->cfg->n_sources == 1)
        snprintf(f->key, sizeof f->key, "source");
    else
        snprintf(f->key, sizeof f->key, "sources[%d]", i);
    int rc = feed_open_type(f, err);
    if (rc) {
        feed_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

/* ---- reading ---- */

/* 1 with a frame, 0 at the end, < 0 on error. */
static int feed_read_once(feed *f, float *frame, feed_frame *out, cin_err *err)
{
    if (f->video) {
        video_frame_info info;
        int rc = video_read(f->video, frame, &info, err);
        out->index = f->index_base + info.index;
        out->pts = info.pts;
        f->next_index = rc == 1 ? out->index + 1 : f->next_index;
        return rc;
    }
    if (f->features) {
        int rc = feat_read(f->features, frame, &out->index, err);
        out->pts = (double)out->index / f->fps;
        return rc;
    }
    if (f->skeleton)
        return sksrc_read(f->skeleton, frame, &out->index, &out->pts, err);
    if (f->next >= f->frames)
        return 0;
    out->index = f->next;
    out->pts = (double)f->next / f->fps;
    memcpy(frame, f->array + f->next++ * f->frame_size, sizeof(float) * f->frame_size);
    return 1;
}

/* Reopens the video with exponential backoff: 1 when it is open again, 0 if stopped while
 * waiting, or the last error once reconnect.attempts reopenings in a row failed. */
static int feed_reopen(feed *f, double *waited, int *attempt, cin_err *err)
{
    const pipe_source *s = f->o.src;
    double delay = s->reconnect.initial, t0 = feed_now_ms();
    for (*attempt = 1;; (*attempt)++) {
        if (feed_wait(f, delay))
            return 0;
        int rc = video_open(&f->vo, &f->video, err);
        *waited = (feed_now_ms() - t0) / 1e3;
        if (rc == 0)
            return 1;
        if (feed_stopping(f))
            return 0;
        int n = s->reconnect.attempts;
        if (n && *attempt >= n)
            return cin_err_wrap(err, rc, "%s: %s.reconnect: gave up after %d attempts in "
                                "%.1f s", f->o.cfg->path, f->key, n, *waited);
        cin_log(f->o.log, CIN_LOG_WARN, "source", "%s: reconnect attempt %d failed: %s",
                s->id, *attempt, err->msg);
        delay = delay * 2 < s->reconnect.max ? delay * 2 : s->reconnect.max;
    }
}

/* A live source ended (rc 0) or failed (rc < 0, message in err): close it and reopen it.
 * 1 to go on reading, 0 when stopped, < 0 when reconnecting gave up. */
static int feed_reconnect(feed *f, int rc, cin_err *err)
{
    const pipe_source *s = f->o.src;
    cin_log(f->o.log, CIN_LOG_WARN, "source", "%s: %s; reconnecting", s->id,
            rc ? err->msg : "end of stream");
    f->damaged_before += video_damaged(f->video);
    video_close(f->video);
    f->video = NULL;
    f->index_base = f->next_index;
    double waited = 0;
    int attempt = 0;
    rc = feed_reopen(f, &waited, &attempt, err);
    if (rc <= 0)
        return rc;
    f->reconnects++;
    f->reset_next = 1;
    cin_log(f->o.log, CIN_LOG_WARN, "source", "%s: %s: reconnected after %.2f s (attempt %d); "
            "stream state reset", s->id, s->uri, waited, attempt);
    return 1;
}

/* source.realtime: a file is read no faster than its timestamps advance. Returns when the
 * frame was due, as a camera would have sent it (monotonic ms). */
static double feed_pace(feed *f, double pts)
{
    double now = feed_now_ms();
    if (f->pace_ms < 0 || pts < f->pace_pts) {
        f->pace_ms = now;
        f->pace_pts = pts;
        return now;
    }
    double due = f->pace_ms + (pts - f->pace_pts) * 1e3;
    if (due > now)
        feed_wait(f, (due - now) / 1e3);
    return due;
}

int feed_read(feed *f, float *frame, feed_frame *out, cin_err *err)
{
    for (;;) {
        int rc = feed_read_once(f, frame, out, err);
        if (rc == 1 || feed_stopping(f)) {
            f->stopped = rc != 1;
            out->reset = rc == 1 && f->reset_next;
            f->reset_next = f->reset_next && rc != 1;
            out->due_ms = rc == 1 && f->o.src->realtime ? feed_pace(f, out->pts) : 0;
            return rc == 1 ? 1 : 0;
        }
        if (!f->o.src->reconnect.on || !f->video)
            return rc;
        if ((rc = feed_reconnect(f, rc, err)) <= 0) {
            f->stopped = rc == 0;
            return rc;
        }
    }
}

int feed_stopped(const feed *f)
{
    return f->stopped;
}

void feed_get_counts(const feed *f, feed_counts *out)
{
    *out = (feed_counts){.damaged = f->damaged_before + video_damaged(f->video),
                         .reconnects = f->reconnects};
    if (f->features) {
        out->skipped = feat_skipped(f->features);
        out->masked = feat_masked(f->features);
        out->masked_what = "missing or non-finite values set to 0";
    }
    if (f->skeleton) {
        out->skipped = sksrc_skipped(f->skeleton);
        out->masked = sksrc_masked(f->skeleton);
        out->masked_what = "joints set to 0 (missing or non-finite) or dropped (persons "
                           "beyond the model's)";
        out->unnormalised = sksrc_unnormalised(f->skeleton);
    }
}

void feed_close(feed *f)
{
    if (!f)
        return;
    video_close(f->video);
    feat_close(f->features);
    sksrc_close(f->skeleton);
    free(f->array);
    free(f);
}
