/* The run of cin-run. Each source is a lane: a reader thread decodes its frames ahead into a
 * bounded queue (pipelines/fqueue.h), and when the queue is full it drops the oldest frame
 * or waits, as source.overload says. Worker threads take frames from whichever lane has one
 * and no other worker on it, so each stream is stepped in its frame order, one frame at a
 * time, and a slow or silent source holds up no other. The model is loaded once and shared;
 * every lane has its own streams and buffers, allocated before its first frame. The calling
 * thread ticks the sinks, reports status and watches for a stop request. */
#include "pipeline.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "feed.h"
#include "fqueue.h"
#include "lathist.h"
#include "model.h"
#include "post.h"
#include "sinks.h"

#define PIPE_TICK_MS 50     /* how often the calling thread looks at the run */

/* A model shared by the lanes that use it; a model set is one, or a backbone and the head it
 * feeds, with the labels of its classes. Sources that name their own weights (a task's
 * derived checkpoint) or labels get a set of their own; the others share the first. */
typedef struct stage {
    cin_model *model;
    cin_model_info info;
} stage;

typedef struct mset {
    const char *weights;        /* the backbone's checkpoint; NULL: seeded */
    const char *labels_path;
    stage st[2];
    int n_st;
    post_labels *labels;
} mset;

struct run;

typedef struct lane {
    struct run *r;
    const pipe_source *src;
    const mset *m;
    int index;
    feed *feed;
    fqueue *q;
    pthread_t reader;
    int reader_started;
    atomic_int stop;            /* the reader gives up: the run stops, or this lane failed */

    /* under r->mu */
    int reading;                /* the reader may still queue frames */
    int busy;                   /* a worker holds this lane's oldest frame */
    int failed;                 /* the model failed: queued frames are discarded */
    int rc;                     /* the lane's first error (source or model), message in err */
    cin_err err;
    feed_counts counts;         /* the feed's, copied by the reader */
    int64_t frames_in, frames, outputs, drops;
    int64_t win_in, win_out;    /* since the last status report */
    double done_ms;             /* when its source had ended and its last frame was stepped */
    lathist step, e2e, step_win, e2e_win;

    /* the worker's that holds the lane */
    cin_stream *stream[2];
    float *features;            /* the backbone's output, the head's input */
    float *logits, *scores, *top_val;
    int *top_idx;
    float *clip;                /* clip mode: ring of the last clip_frames frames, then */
    float *clip_ordered;        /* the clip in order */
    int64_t t, reset_at;        /* frames stepped; t at the last stream reset */
} lane;

typedef struct run {
    const pipe_config *cfg;
    pipe_run_opts opts;
    cin_logger log;
    mset set[PIPE_MAX_SOURCES];
    int n_sets;
    int topk;                   /* postprocess.topk, or the default fitted to every set */
    sinks *out;
    size_t frame_size;
    lane *lane;
    int n_lanes;
    pthread_t *worker;
    int n_workers;

    pthread_mutex_t mu;         /* the queues, the lanes' counters, the fields below */
    pthread_cond_t work;        /* a frame was queued or released, a reader ended, a stop */
    pthread_cond_t space;       /* a queue slot was freed, or a stop */
    pthread_cond_t idle;        /* a worker ended */
    int halt;                   /* a sink failed, or a second stop request: everything
                                   stops at once, the frames queued are left */
    int stopping;               /* a stop was requested: the readers stop, the queues drain */
    int next_lane;              /* where the workers' round robin starts */
    int workers_running;
    double start_ms;            /* when the threads started */
    int sink_rc;
    cin_err sink_err;
    pthread_mutex_t out_mu;     /* the sinks */
} run;

/* Seconds since the Unix epoch, to the millisecond, as results carry it. */
static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return round(((double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6)) / 1e3;
}

/* The stage whose outputs are the results. */
static const cin_model_info *out_info(const mset *m)
{
    return &m->st[m->n_st - 1].info;
}

static int load_stage(run *r, mset *m, const pipe_model *pm, int features, cin_err *err)
{
    stage *s = &m->st[m->n_st++];
    cin_model_opts o;
    pipe_model_opts(r->cfg, pm, features, &o);
    if (m->n_st == 1)
        o.weights = m->weights;
    o.log = r->log.fn;
    o.log_user = r->log.user;
    o.log_level = r->log.level;
    int rc = cin_model_load(&o, &s->model, err);
    if (rc)
        return cin_err_wrap(err, rc, "%s: %s", r->cfg->path, m->n_st > 1 ? "model.head" : "model");
    cin_model_get_info(s->model, &s->info);
    return 0;
}

/* The model, and its head fed with the model's features when there is one. */
static int load_models(run *r, mset *m, cin_err *err)
{
    const pipe_model *pm = &r->cfg->model;
    int rc = load_stage(r, m, pm, pm->head != NULL, err);
    if (rc || !pm->head)
        return rc;
    rc = load_stage(r, m, pm->head, 0, err);
    const cin_model_info *a = &m->st[0].info, *b = &m->st[1].info;
    if (!rc && (b->in_height != 1 || b->in_width != 1))
        return cin_err_set(err, CIN_E_CONFIG, "%s: model.head: arch %s takes frames; a head "
                           "takes the model's feature vectors (use arch transformer)",
                           r->cfg->path, pm->head->arch);
    if (!rc && b->in_channels != a->out_size)
        return cin_err_set(err, CIN_E_CONFIG, "%s: model.head: takes %d features per frame, "
                           "the model gives %d (set model.head.transformer.input_dim)",
                           r->cfg->path, b->in_channels * b->in_height * b->in_width,
                           a->out_size);
    return rc;
}

/* Labels (named by key in errors) and top-k, checked against the set's classes. */
static int load_post(run *r, mset *m, const char *key, cin_err *err)
{
    const pipe_config *c = r->cfg;
    int classes = out_info(m)->out_size;
    if (m->labels_path) {
        int rc = post_labels_load(m->labels_path, classes, &m->labels, err);
        if (rc)
            return cin_err_wrap(err, rc, "%s: %s", c->path, key);
    }
    if (c->postprocess.topk_given && c->postprocess.topk > classes)
        return cin_err_set(err, CIN_E_CONFIG, "%s: postprocess.topk: %d, but the model%s%s has "
                           "%d classes", c->path, c->postprocess.topk, m->weights ? " " : "",
                           m->weights ? m->weights : "", classes);
    r->topk = classes < r->topk ? classes : r->topk;
    return 0;
}

static int same_text(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Every set takes the frames the first one takes, so that any source fits any set. */
static int check_input(const run *r, const mset *m, const pipe_source *s, cin_err *err)
{
    const cin_model_info *a = &r->set[0].st[0].info, *b = &m->st[0].info;
    if (a->in_channels == b->in_channels && a->in_height == b->in_height &&
        a->in_width == b->in_width)
        return 0;
    return cin_err_set(err, CIN_E_CONFIG, "%s: source %s: weights '%s' take %dx%dx%d frames, "
                       "the other sources' model %dx%dx%d", r->cfg->path, s->id, m->weights,
                       b->in_channels, b->in_height, b->in_width, a->in_channels, a->in_height,
                       a->in_width);
}

/* The key of source s that names f, its own weights or labels, for messages. */
static const char *set_key(const run *r, const pipe_source *s, const char *f, char *buf)
{
    int i = (int)(s - r->cfg->sources);
    const char *key = !f                ? NULL
                      : f == s->weights ? "weights"
                      : f == s->labels  ? "labels"
                                        : NULL;
    if (!key)
        return NULL;
    if (r->cfg->n_sources == 1)
        snprintf(buf, 48, "source.%s", key);
    else
        snprintf(buf, 48, "sources[%d].%s", i, key);
    return buf;
}

/* The set for source s: an existing one with the same weights and labels, or a new one. */
static int find_set(run *r, const pipe_source *s, const mset **out, cin_err *err)
{
    const pipe_config *c = r->cfg;
    const char *w = s->weights ? s->weights : c->model.weights;
    const char *l = s->labels ? s->labels : c->postprocess.labels;
    for (int i = 0; i < r->n_sets; i++)
        if (same_text(r->set[i].weights, w) && same_text(r->set[i].labels_path, l)) {
            *out = &r->set[i];
            return 0;
        }
    mset *m = &r->set[r->n_sets++];
    *m = (mset){.weights = w, .labels_path = l};
    *out = m;
    char key[48];
    int rc = load_models(r, m, err);
    if (rc && set_key(r, s, w, key))
        return cin_err_wrap(err, rc, "%s: %s", c->path, key);
    if (rc)
        return rc;
    rc = load_post(r, m, set_key(r, s, l, key) ? key : "postprocess.labels", err);
    return rc ? rc : check_input(r, m, s, err);
}

/* ---- a lane's buffers and streams ---- */

static int lane_alloc(run *r, lane *l, cin_err *err)
{
    const mset *m = l->m;
    const cin_model_info *i = &m->st[0].info;
    int n = out_info(m)->out_size, k = r->topk;
    for (int s = 0; s < m->n_st; s++) {
        int rc = cin_stream_create(m->st[s].model, &l->stream[s], err);
        if (rc)
            return rc;
    }
    l->features = m->n_st > 1 ? malloc(sizeof(float) * i->out_size) : NULL;
    l->logits = malloc(sizeof(float) * n);
    l->scores = malloc(sizeof(float) * n);
    l->top_idx = malloc(sizeof(int) * k);
    l->top_val = malloc(sizeof(float) * k);
    int clip = r->cfg->model.mode == PIPE_MODE_CLIP;
    if (clip) {
        l->clip = malloc(sizeof(float) * r->frame_size * i->clip_frames);
        l->clip_ordered = malloc(sizeof(float) * r->frame_size * i->clip_frames);
    }
    if ((m->n_st > 1 && !l->features) || !l->logits || !l->scores || !l->top_idx ||
        !l->top_val || (clip && (!l->clip || !l->clip_ordered)))
        return cin_err_set(err, CIN_E_NOMEM, "pipeline: out of memory");
    lh_reset(&l->step);
    lh_reset(&l->e2e);
    lh_reset(&l->step_win);
    lh_reset(&l->e2e_win);
    return fq_create(l->src->queue, r->frame_size, &l->q, err);
}

static void lane_release(lane *l)
{
    for (int s = 0; l->m && s < l->m->n_st; s++)
        cin_stream_free(l->stream[s]);
    feed_close(l->feed);
    fq_free(l->q);
    free(l->features);
    free(l->logits);
    free(l->scores);
    free(l->top_idx);
    free(l->top_val);
    free(l->clip);
    free(l->clip_ordered);
}

/* ---- stepping one frame (a worker, holding the lane) ---- */

/* One continual step through every stage: 1 with results in l->logits, 0 without, < 0. */
static int step_stages(lane *l, const float *frame)
{
    if (l->m->n_st == 1)
        return cin_stream_step(l->stream[0], frame, l->logits);
    int have = cin_stream_step(l->stream[0], frame, l->features);
    return have <= 0 ? have : cin_stream_step(l->stream[1], l->features, l->logits);
}

/* Clip mode: the regular network over the last clip_frames frames, once that many arrived. */
static int clip_step(run *r, lane *l, const float *frame, int64_t t)
{
    int T = l->m->st[0].info.clip_frames;
    size_t fs = r->frame_size;
    memcpy(l->clip + (size_t)(t % T) * fs, frame, sizeof(float) * fs);
    if (t + 1 < T)
        return 0;
    for (int f = 0; f < T; f++)
        memcpy(l->clip_ordered + (size_t)f * fs, l->clip + (size_t)((t + 1 + f) % T) * fs,
               sizeof(float) * fs);
    int rc = cin_stream_forward(l->stream[0], l->clip_ordered, T, l->logits);
    return rc < 0 ? rc : 1;
}

static const char *stage_error(const lane *l)
{
    const char *e = cin_stream_last_error(l->stream[0]);
    return e[0] || l->m->n_st == 1 ? e : cin_stream_last_error(l->stream[1]);
}

/* The gap of a reconnection must not be blended into the windows: every stage's stream
 * starts again as if new, and clip mode collects a new clip. */
static void reset_streams(lane *l)
{
    for (int s = 0; s < l->m->n_st; s++)
        cin_stream_reset(l->stream[s]);
    l->reset_at = l->t;
}

/* Steps the frame and writes its result: 1 with an output, 0 without, < 0 with err set
 * (a model error, or CIN_E_IO and the like from a sink, *sink_failed then 1). */
static int step_frame(run *r, lane *l, const fq_item *it, double *ms, int *sink_failed,
                      cin_err *err)
{
    const pipe_config *c = r->cfg;
    if (it->reset)
        reset_streams(l);
    double t0 = feed_now_ms();
    int have = c->model.mode == PIPE_MODE_CLIP ? clip_step(r, l, it->frame, l->t - l->reset_at)
                                               : step_stages(l, it->frame);
    *ms = round((feed_now_ms() - t0) * 1e3) / 1e3; /* to the microsecond */
    if (have < 0)
        return cin_err_set(err, have, "%s: model: %s", l->src->id, stage_error(l));
    l->t++;
    int k = r->topk, n = out_info(l->m)->out_size;
    if (have) {
        memcpy(l->scores, l->logits, sizeof(float) * n);
        if (c->postprocess.softmax)
            post_softmax(l->scores, n);
        post_topk(l->scores, n, k, l->top_idx, l->top_val);
    }
    sink_result res = {.source = l->src->id, .frame = it->index, .pts = it->pts,
                       .wall = wall_now(), .latency_ms = *ms, .k = k, .idx = l->top_idx,
                       .score = l->top_val,
                       .labels = l->m->labels ? post_labels_array(l->m->labels) : NULL};
    pthread_mutex_lock(&r->out_mu);
    int rc = sinks_write(r->out, &res, have ? l->logits : NULL, err);
    pthread_mutex_unlock(&r->out_mu);
    *sink_failed = rc != 0;
    return rc ? rc : have;
}

/* ---- the workers ---- */

/* Under r->mu: notes when a lane has nothing more to step. */
static void mark_done(lane *l)
{
    if (!l->reading && !l->busy && (l->failed || fq_count(l->q) == 0) && l->done_ms == 0)
        l->done_ms = feed_now_ms();
}

/* A lane with a frame waiting and no worker on it, round robin; NULL when none. */
static lane *pick_lane(run *r)
{
    for (int k = 0; k < r->n_lanes && !r->halt; k++) {
        lane *l = &r->lane[(r->next_lane + k) % r->n_lanes];
        if (!l->busy && !l->failed && fq_count(l->q) > 0) {
            r->next_lane = (int)(l - r->lane + 1) % r->n_lanes;
            return l;
        }
    }
    return NULL;
}

/* Nothing is left to step: every reader ended and every queue drained (or the run halted). */
static int drained(const run *r)
{
    if (r->halt)
        return 1;
    for (int i = 0; i < r->n_lanes; i++) {
        const lane *l = &r->lane[i];
        if (l->reading || (!l->failed && fq_count(l->q) > 0))
            return 0;
    }
    return 1;
}

/* Under r->mu: the frame's figures, or the lane's or the sinks' failure. */
static void account(run *r, lane *l, const fq_item *it, int rc, double ms, int sink_failed,
                    const cin_err *e)
{
    if (rc < 0 && sink_failed && !r->halt) {
        r->halt = 1;
        r->sink_rc = rc;
        r->sink_err = *e;
    } else if (rc < 0 && !l->failed) {
        l->failed = 1;
        l->rc = rc;
        l->err = *e;
        atomic_store(&l->stop, 1);
    }
    if (rc < 0)
        return;
    double e2e = feed_now_ms() - it->ready_ms;
    l->frames++;
    l->outputs += rc;
    l->win_out += rc;
    lh_add(&l->step, ms);
    lh_add(&l->step_win, ms);
    lh_add(&l->e2e, e2e);
    lh_add(&l->e2e_win, e2e);
}

static void *worker_main(void *arg)
{
    run *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        lane *l = pick_lane(r);
        if (!l && drained(r))
            break;
        if (!l) {
            pthread_cond_wait(&r->work, &r->mu);
            continue;
        }
        l->busy = 1;
        fq_item *it = fq_pop(l->q);
        pthread_cond_broadcast(&r->space);
        pthread_mutex_unlock(&r->mu);

        cin_err e = {0};
        double ms = 0;
        int sink_failed = 0;
        int rc = step_frame(r, l, it, &ms, &sink_failed, &e);

        pthread_mutex_lock(&r->mu);
        account(r, l, it, rc, ms, sink_failed, &e);
        fq_release(l->q, it);
        l->busy = 0;
        mark_done(l);
        pthread_cond_broadcast(&r->work);
        pthread_cond_broadcast(&r->space);
    }
    r->workers_running--;
    pthread_cond_broadcast(&r->work);
    pthread_cond_signal(&r->idle);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- the readers ---- */

/* Under r->mu: the reader queues the frame it filled, waiting for room if its source blocks.
 * 0 when the lane should stop reading instead. */
static int queue_frame(run *r, lane *l)
{
    while (fq_full(l->q) && l->src->overload == PIPE_OVERLOAD_BLOCK && !r->halt &&
           !l->failed && !atomic_load(&l->stop))
        pthread_cond_wait(&r->space, &r->mu);
    if (r->halt || l->failed || (fq_full(l->q) && l->src->overload == PIPE_OVERLOAD_BLOCK))
        return 0;
    int dropped = fq_push(l->q);
    l->drops += dropped;
    l->frames_in++;
    l->win_in++;
    pthread_cond_signal(&r->work);
    return 1;
}

static void reader_end(run *r, lane *l, int rc, const cin_err *e)
{
    pthread_mutex_lock(&r->mu);
    if (l->feed)
        feed_get_counts(l->feed, &l->counts);
    if (rc < 0 && !l->rc) {
        l->rc = rc;
        l->err = *e;
    }
    l->reading = 0;
    mark_done(l);
    pthread_cond_broadcast(&r->work);
    pthread_mutex_unlock(&r->mu);
    if (rc < 0 && r->n_lanes > 1)
        cin_log(&r->log, CIN_LOG_ERROR, "source", "%s: %s; its stream ends, the others go on",
                l->src->id, e->msg);
}

/* Opens the lane's source; a stop request while it was still connecting is a stop, not a
 * failure. */
static int reader_open(run *r, lane *l, cin_err *err)
{
    feed_opts o = {.cfg = r->cfg, .src = l->src, .model = &l->m->st[0].info, .log = &r->log,
                   .stop = &l->stop};
    int rc = feed_open(&o, &l->feed, err);
    return rc && atomic_load(&l->stop) ? 0 : rc;
}

static void *reader_main(void *arg)
{
    lane *l = arg;
    run *r = l->r;
    cin_err e = {0};
    int rc = reader_open(r, l, &e);
    for (int go_on = l->feed != NULL; !rc && go_on;) {
        fq_item *it = fq_filling(l->q);     /* the reader's own until queued */
        feed_frame fr;
        int got = feed_read(l->feed, it->frame, &fr, &e);
        if (got != 1) {
            rc = got;
            break;
        }
        *it = (fq_item){.frame = it->frame, .index = fr.index, .pts = fr.pts,
                        .ready_ms = fr.due_ms > 0 ? fr.due_ms : feed_now_ms(), .reset = fr.reset};
        pthread_mutex_lock(&r->mu);
        go_on = queue_frame(r, l);
        feed_get_counts(l->feed, &l->counts);
        pthread_mutex_unlock(&r->mu);
    }
    reader_end(r, l, rc, &e);
    return NULL;
}

/* ---- watching the run (the calling thread) ---- */

/* 0: go on; 1: the readers stop and what was read is stepped; 2 or more: the queued frames
 * are left too. */
static int stop_level(const run *r)
{
    return r->opts.stop ? atomic_load(r->opts.stop) : 0;
}

static int stop_requested(const run *r)
{
    return stop_level(r) > 0;
}

/* Under r->mu: every reader gives up; what was read is still stepped unless halted. */
static void stop_lanes(run *r)
{
    r->stopping = 1;
    for (int i = 0; i < r->n_lanes; i++)
        atomic_store(&r->lane[i].stop, 1);
    pthread_cond_broadcast(&r->space);
    pthread_cond_broadcast(&r->work);
}

/* Under r->mu: one lane's figures; the window's when win, else the whole run's. */
static void lane_figures(const lane *l, int win, double secs, pipe_stream_stats *s)
{
    const lathist *step = win ? &l->step_win : &l->step, *e2e = win ? &l->e2e_win : &l->e2e;
    int64_t in = win ? l->win_in : l->frames_in, out = win ? l->win_out : l->outputs;
    *s = (pipe_stream_stats){.frames_in = l->frames_in, .frames = l->frames,
                             .outputs = l->outputs, .drops = l->drops,
                             .reconnects = l->counts.reconnects, .queue = fq_count(l->q),
                             .queue_cap = l->src->queue, .fps_in = secs > 0 ? in / secs : 0,
                             .fps_out = secs > 0 ? out / secs : 0,
                             .step_p50_ms = lh_quantile(step, 0.5),
                             .step_p99_ms = lh_quantile(step, 0.99),
                             .step_max_ms = step->count ? step->max : 0,
                             .e2e_p50_ms = lh_quantile(e2e, 0.5),
                             .e2e_p99_ms = lh_quantile(e2e, 0.99),
                             .e2e_max_ms = e2e->count ? e2e->max : 0, .failed = l->rc != 0,
                             .ended = !l->reading && !l->busy && fq_count(l->q) == 0};
    snprintf(s->id, sizeof s->id, "%s", l->src->id);
}

static void report_status(run *r, double start, double *last)
{
    double now = feed_now_ms();
    pipe_stream_stats s[PIPE_MAX_SOURCES];
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n_lanes; i++) {
        lane *l = &r->lane[i];
        lane_figures(l, 1, (now - *last) / 1e3, &s[i]);
        lh_reset(&l->step_win);
        lh_reset(&l->e2e_win);
        l->win_in = l->win_out = 0;
    }
    pthread_mutex_unlock(&r->mu);
    *last = now;
    pipe_status st = {.seconds = (now - start) / 1e3, .n_streams = r->n_lanes, .stream = s};
    r->opts.status(r->opts.status_user, &st);
}

/* Text sinks get the time even while every source is idle, so results never wait longer
 * than their flush interval. */
static void tick_sinks(run *r)
{
    cin_err e = {0};
    pthread_mutex_lock(&r->out_mu);
    int rc = sinks_tick(r->out, feed_now_ms() / 1e3, &e);
    pthread_mutex_unlock(&r->out_mu);
    if (!rc)
        return;
    pthread_mutex_lock(&r->mu);
    if (!r->halt) {
        r->halt = 1;
        r->sink_rc = rc;
        r->sink_err = e;
    }
    pthread_mutex_unlock(&r->mu);
}

/* Until every worker has ended: ticks, reports, and passes a stop request on. */
static void watch(run *r, double start)
{
    double last = start;
    pthread_mutex_lock(&r->mu);
    while (r->workers_running > 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += PIPE_TICK_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&r->idle, &r->mu, &until);
        if ((stop_requested(r) || r->halt) && !r->stopping)
            stop_lanes(r);
        if (stop_level(r) >= 2 && !r->halt) {
            r->halt = 1;
            pthread_cond_broadcast(&r->work);
        }
        pthread_mutex_unlock(&r->mu);
        tick_sinks(r);
        if (r->opts.status && feed_now_ms() - last >= r->opts.status_every * 1e3)
            report_status(r, start, &last);
        pthread_mutex_lock(&r->mu);
    }
    stop_lanes(r);
    pthread_mutex_unlock(&r->mu);
}

/* ---- the run ---- */

static int default_workers(const pipe_config *c)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int n = c->workers ? c->workers : cores > 0 ? (int)cores : 1;
    return n < c->n_sources || c->workers ? n : c->n_sources;
}

/* Any set with labels gives the CSV sinks label columns. */
static int labelled(const run *r)
{
    for (int i = 0; i < r->n_sets; i++)
        if (r->set[i].labels)
            return 1;
    return 0;
}

static int setup(run *r, cin_err *err)
{
    const pipe_config *c = r->cfg;
    int rc = 0;
    r->n_lanes = c->n_sources;
    r->topk = c->postprocess.topk;
    r->lane = calloc((size_t)r->n_lanes, sizeof *r->lane);
    r->n_workers = default_workers(c);
    r->worker = calloc((size_t)r->n_workers, sizeof *r->worker);
    if (!r->lane || !r->worker)
        return cin_err_set(err, CIN_E_NOMEM, "pipeline: out of memory");
    for (int k = 0; k < r->n_lanes && !rc; k++) {
        lane *l = &r->lane[k];
        *l = (lane){.r = r, .src = &c->sources[k], .index = k, .reading = 1};
        atomic_init(&l->stop, 0);
        rc = find_set(r, l->src, &l->m, err);
    }
    const cin_model_info *i = rc ? NULL : &r->set[0].st[0].info;
    if (i)
        r->frame_size = (size_t)i->in_channels * i->in_height * i->in_width;
    for (int k = 0; k < r->n_lanes && !rc; k++)
        rc = lane_alloc(r, &r->lane[k], err);
    sinks_spec sp = {.out_size = rc ? 0 : out_info(r->lane[0].m)->out_size, .topk = r->topk,
                     .labelled = labelled(r)};
    return rc ? rc : sinks_open(c, &sp, &r->out, err);
}

/* Starts every reader and worker; on a failure to start one, stops those already started. */
static int start_threads(run *r, cin_err *err)
{
    for (int k = 0; k < r->n_lanes; k++) {
        if (pthread_create(&r->lane[k].reader, NULL, reader_main, &r->lane[k]) != 0)
            return cin_err_set(err, CIN_E_NOMEM, "pipeline: cannot start a reader thread");
        r->lane[k].reader_started = 1;
    }
    for (int w = 0; w < r->n_workers; w++) {
        if (pthread_create(&r->worker[w], NULL, worker_main, r) != 0)
            return cin_err_set(err, CIN_E_NOMEM, "pipeline: cannot start a worker thread");
        pthread_mutex_lock(&r->mu);
        r->workers_running++;
        pthread_mutex_unlock(&r->mu);
    }
    return 0;
}

static void join_threads(run *r, int started_workers)
{
    for (int w = 0; w < started_workers; w++)
        pthread_join(r->worker[w], NULL);
    for (int k = 0; k < r->n_lanes; k++)
        if (r->lane[k].reader_started)
            pthread_join(r->lane[k].reader, NULL);
}

/* The run's figures from every lane's; the error is the sinks', else the first lane's. */
static int collect(run *r, pipe_stats *st, cin_err *err)
{
    lathist step, e2e;
    lh_reset(&step);
    lh_reset(&e2e);
    int rc = r->sink_rc;
    if (rc)
        *err = r->sink_err;
    st->n_streams = r->n_lanes;
    for (int k = 0; k < r->n_lanes; k++) {
        lane *l = &r->lane[k];
        double secs = l->done_ms > 0 ? (l->done_ms - r->start_ms) / 1e3 : st->seconds;
        lane_figures(l, 0, secs, &st->stream[k]);
        lh_merge(&step, &l->step);
        lh_merge(&e2e, &l->e2e);
        st->frames += l->frames;
        st->outputs += l->outputs;
        st->drops += l->drops;
        st->damaged += l->counts.damaged;
        st->reconnects += l->counts.reconnects;
        st->skipped += l->counts.skipped;
        st->masked += l->counts.masked;
        st->unnormalised += l->counts.unnormalised;
        st->masked_what = l->counts.masked_what ? l->counts.masked_what : st->masked_what;
        if (l->rc && !rc) {
            rc = l->rc;
            *err = l->err;
        }
    }
    st->p50_ms = lh_quantile(&step, 0.5);
    st->p90_ms = lh_quantile(&step, 0.9);
    st->p99_ms = lh_quantile(&step, 0.99);
    st->max_ms = step.count ? step.max : 0;
    st->e2e_p99_ms = lh_quantile(&e2e, 0.99);
    return rc;
}

static void release(run *r)
{
    for (int k = 0; r->lane && k < r->n_lanes; k++)
        lane_release(&r->lane[k]);
    free(r->lane);
    free(r->worker);
    for (int m = 0; m < r->n_sets; m++) {
        for (int s = 0; s < r->set[m].n_st; s++)
            cin_model_free(r->set[m].st[s].model);
        post_labels_free(r->set[m].labels);
    }
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->out_mu);
    pthread_cond_destroy(&r->work);
    pthread_cond_destroy(&r->space);
    pthread_cond_destroy(&r->idle);
}

static void init_run(run *r, const pipe_config *c, const pipe_run_opts *o)
{
    *r = (run){.cfg = c};
    if (o) {
        r->opts = *o;
        r->log = (cin_logger){o->log, o->log_user, o->log_level};
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->out_mu, NULL);
    pthread_cond_init(&r->work, NULL);
    pthread_cond_init(&r->space, NULL);
    pthread_cond_init(&r->idle, NULL);
}

static void run_facts(const run *r, pipe_stats *st)
{
    const pipe_config *c = r->cfg;
    const mset *m = &r->set[0];
    int clip = c->model.mode == PIPE_MODE_CLIP;
    st->delay = clip ? m->st[0].info.clip_frames - 1 : m->st[0].info.delay;
    if (m->n_st > 1)
        st->delay += m->st[1].info.delay;
    st->workers = r->n_workers;
    snprintf(st->layout, sizeof st->layout, "%s", m->st[0].info.layout);
}

int pipe_run(const pipe_config *c, const pipe_run_opts *o, pipe_stats *stats, cin_err *err)
{
    run r;
    init_run(&r, c, o);
    memset(stats, 0, sizeof *stats);
    int rc = setup(&r, err);
    if (!rc)
        run_facts(&r, stats);
    double start = feed_now_ms();
    r.start_ms = start;
    rc = rc ? rc : start_threads(&r, err);
    int started = 0;
    pthread_mutex_lock(&r.mu);
    started = r.workers_running;
    if (rc)
        stop_lanes(&r);
    pthread_mutex_unlock(&r.mu);
    if (!rc)
        watch(&r, start);
    join_threads(&r, started);
    stats->seconds = (feed_now_ms() - start) / 1e3;
    stats->stopped = !rc && stop_requested(&r);
    rc = rc ? rc : collect(&r, stats, err);
    /* results already written are kept even when the run stops early; a run that fails
     * before its first frame leaves the previous results in place */
    int keep = rc == 0 || stats->frames > 0;
    cin_err close_err = {0};
    int rc_close = sinks_close(r.out, keep, &close_err);
    if (rc_close && rc)
        cin_err_also(err, &close_err); /* a sink that failed at the end too is named */
    else if (rc_close && err)
        *err = close_err;
    rc = rc ? rc : rc_close;
    if (!rc && stats->frames == 0 && stats->skipped > 0)
        rc = cin_err_set(err, CIN_E_FORMAT, "%s: no valid record, %lld malformed lines "
                         "skipped (is source.format right?)", c->sources[0].uri,
                         (long long)stats->skipped);
    release(&r);
    return rc;
}
