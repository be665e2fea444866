/* cin_model and cin_stream: one read-only graph shared by any number of streams, each with
 * its own state block and work buffers, allocated once when the stream is created. */
#include "model.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cin_stream {
    const cin_model *model;
    void *state;            /* the root node's state block */
    float *scratch;         /* root->step_scratch floats */
    float *out;             /* one output, copied to the caller only when one is produced */
    float *clip_work;       /* clip mode: scratch + output frames, grown on demand */
    size_t clip_work_floats;
    char error[512];
};

void cin_log(const cin_logger *lg, int level, const char *component, const char *fmt, ...)
{
    if (!lg || !lg->fn || level > lg->level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lg->fn(lg->user, level, component, msg);
}

int cin_model_wrap(cin_node *root, int clip_frames, const char *layout, const cin_logger *log,
                   cin_model **out, cin_err *err)
{
    *out = NULL;
    cin_model *m = calloc(1, sizeof *m);
    if (!m) {
        cin_node_free(root);
        return cin_err_set(err, CIN_E_NOMEM, "model: out of memory");
    }
    m->root = root;
    if (log)
        m->log = *log;
    snprintf(m->layout, sizeof m->layout, "%s", layout);
    cin_model_info *i = &m->info;
    i->in_channels = root->in.c;
    i->in_height = root->in.h;
    i->in_width = root->in.w;
    i->out_size = (int)cin_dims_size(root->out);
    i->clip_frames = clip_frames;
    i->receptive_field = root->rf;
    i->delay = cin_node_delay(root);
    i->stride = root->stride;
    i->macs_step = cin_node_macs_step(root);
    i->macs_clip = cin_node_macs_clip(root, clip_frames);
    i->weight_bytes = cin_node_param_bytes(root);
    i->state_bytes = root->state_bytes + (root->step_scratch + (size_t)i->out_size) *
                     sizeof(float);
    i->layout = m->layout;
    *out = m;
    return 0;
}

void cin_model_free(cin_model *model)
{
    if (!model)
        return;
    cin_node_free(model->root);
    free(model);
}

void cin_model_get_info(const cin_model *model, cin_model_info *info)
{
    *info = model->info;
}

int cin_stream_create(const cin_model *model, cin_stream **out, cin_err *err)
{
    *out = NULL;
    if (!model)
        return cin_err_set(err, CIN_E_INVAL, "stream: no model");
    const cin_node *root = model->root;
    cin_stream *s = calloc(1, sizeof *s);
    if (s) {
        s->model = model;
        s->state = aligned_alloc(CIN_ALIGN, cin_align(root->state_bytes + 1));
        s->scratch = aligned_alloc(CIN_ALIGN, cin_align(sizeof(float) * (root->step_scratch + 1)));
        s->out = malloc(sizeof(float) * model->info.out_size);
    }
    if (!s || !s->state || !s->scratch || !s->out) {
        cin_stream_free(s);
        return cin_err_set(err, CIN_E_NOMEM, "stream: out of memory (%zu bytes of state)",
                           model->info.state_bytes);
    }
    cin_stream_reset(s);
    *out = s;
    return 0;
}

void cin_stream_free(cin_stream *stream)
{
    if (!stream)
        return;
    free(stream->state);
    free(stream->scratch);
    free(stream->out);
    free(stream->clip_work);
    free(stream);
}

void cin_stream_reset(cin_stream *stream)
{
    memset(stream->state, 0, stream->model->root->state_bytes);
    stream->error[0] = '\0';
}

int cin_stream_step(cin_stream *stream, const float *frame, float *out)
{
    const cin_node *root = stream->model->root;
    if (!frame || !out) {
        snprintf(stream->error, sizeof stream->error, "step: NULL frame or output");
        return CIN_E_INVAL;
    }
    if (!root->ops->step(root, stream->state, frame, stream->out, stream->scratch))
        return 0;
    memcpy(out, stream->out, sizeof(float) * stream->model->info.out_size);
    return 1;
}

/* Grows the clip work area to hold forward's scratch and output for `frames` frames. */
static int clip_reserve(cin_stream *s, size_t floats)
{
    if (floats <= s->clip_work_floats)
        return 0;
    float *w = realloc(s->clip_work, sizeof(float) * floats);
    if (!w)
        return CIN_E_NOMEM;
    s->clip_work = w;
    s->clip_work_floats = floats;
    return 0;
}

int cin_stream_forward(cin_stream *stream, const float *clip, int frames, float *out)
{
    const cin_node *root = stream->model->root;
    int t_out = frames > 0 ? cin_node_clip_frames(root, frames) : 0;
    if (!clip || !out || t_out < 1) {
        snprintf(stream->error, sizeof stream->error,
                 "forward: a clip of %d frames gives no output (the model needs at least %d)",
                 frames, root->rf - 2 * root->pad);
        return CIN_E_INVAL;
    }
    size_t out_floats = (size_t)t_out * cin_dims_size(root->out);
    size_t need = cin_node_clip_scratch(root, frames) + out_floats;
    if (clip_reserve(stream, need)) {
        snprintf(stream->error, sizeof stream->error, "forward: out of memory (%zu floats)",
                 need);
        return CIN_E_NOMEM;
    }
    float *result = stream->clip_work + (need - out_floats);
    root->ops->forward(root, clip, frames, result, stream->clip_work);
    memcpy(out, result, sizeof(float) * stream->model->info.out_size);
    return 0;
}

const char *cin_stream_last_error(const cin_stream *stream)
{
    return stream->error;
}
