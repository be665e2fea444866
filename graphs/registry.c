/* cin_model_load: picks the model family, opens the weights and builds the graph. */
#include <stdio.h>
#include <string.h>

#include "model.h"
#include "cotransformer.h"
#include "stgcn.h"
#include "weights.h"
#include "x3d.h"

static const char *layout_name(x3d_layout l)
{
    return l == X3D_SLOWFAST ? "slowfast" : "pytorchvideo";
}

static int open_weights(const cin_model_opts *o, wsrc **w, cin_err *err)
{
    if (o->weights)
        return wsrc_open_file(o->weights, w, err);
    *w = wsrc_seeded(o->seed);
    return *w ? 0 : cin_err_set(err, CIN_E_NOMEM, "model: out of memory");
}

static int load_x3d(const cin_model_opts *o, const cin_logger *log, cin_model **out,
                    cin_err *err)
{
    wsrc *w;
    int rc = open_weights(o, &w, err);
    if (rc)
        return rc;
    x3d_layout layout = X3D_PYTORCHVIDEO;
    rc = o->weights ? x3d_detect_layout(w, &layout, err) : 0;
    x3d_opts xo = {.size = o->size, .crop = o->crop, .pool_window = o->pool_window,
                   .se_window = o->se_window, .num_classes = o->num_classes,
                   .features = o->features};
    cin_node *root = NULL;
    int clip_frames = 0;
    rc = rc ? rc : x3d_build(&xo, w, layout, NULL, NULL, &root, &clip_frames, err);
    const char *lname = o->weights ? layout_name(layout) : "seeded";
    if (rc == 0)
        cin_log(log, CIN_LOG_INFO, "model", "x3d-%s: %s weights from %s", o->size, lname,
                wsrc_name(w));
    wsrc_close(w);
    return rc ? rc : cin_model_wrap(root, clip_frames, lname, log, out, err);
}

/* Classes: the option, else the rows of the checkpoint's head, else 400. */
static int head_rows(const cin_model_opts *o, const wsrc *w)
{
    int ndim;
    int64_t shape[8];
    if (o->num_classes > 0)
        return o->num_classes;
    if (wsrc_shape(w, "head.weight", &ndim, shape, NULL) == 0 && ndim == 2 && shape[0] > 0)
        return (int)shape[0];
    return 400;
}

static int load_transformer(const cin_model_opts *o, const cin_logger *log, cin_model **out,
                            cin_err *err)
{
    wsrc *w;
    int rc = open_weights(o, &w, err);
    if (rc)
        return rc;
    cin_node *root = NULL;
    const cin_transformer_opts *t = o->transformer;
    rc = cotransformer_build(t, head_rows(o, w), w, &root, err);
    if (rc == 0)
        cin_log(log, CIN_LOG_INFO, "model", "transformer: weights from %s", wsrc_name(w));
    const char *lname = o->weights ? "torch" : "seeded";
    wsrc_close(w);
    return rc ? rc : cin_model_wrap(root, t->window, lname, log, out, err);
}

/* A checkpoint's names decide its layout; seeded weights take the option's. */
static int skeleton_layout(const cin_model_opts *o, const wsrc *w, stgcn_layout *out,
                           cin_err *err)
{
    const char *name = o->skeleton ? o->skeleton->layout : NULL;
    if (o->weights)
        return stgcn_detect_layout(w, out, err);
    *out = stgcn_default_layout(o->skeleton);
    if (!name)
        return 0;
    *out = STGCN_ORIGINAL;
    if (strcmp(name, stgcn_layout_name(STGCN_ORIGINAL)) == 0)
        return 0;
    *out = STGCN_COSKEL;
    if (strcmp(name, stgcn_layout_name(STGCN_COSKEL)) == 0)
        return 0;
    return cin_err_set(err, CIN_E_CONFIG, "model: skeleton layout '%s', expected st-gcn or "
                       "continual-skeletons", name);
}

static int load_stgcn(const cin_model_opts *o, const cin_logger *log, cin_model **out,
                      cin_err *err)
{
    wsrc *w;
    int rc = open_weights(o, &w, err);
    if (rc)
        return rc;
    stgcn_layout layout = STGCN_ORIGINAL;
    cin_node *root = NULL;
    stgcn_shape shape = {0};
    rc = skeleton_layout(o, w, &layout, err);
    rc = rc ? rc : stgcn_build(o->skeleton, o->num_classes, w, layout, &root, &shape, err);
    const char *lname = o->weights ? stgcn_layout_name(layout) : "seeded";
    if (rc == 0)
        cin_log(log, CIN_LOG_INFO, "model", "st-gcn: %s weights from %s", lname, wsrc_name(w));
    wsrc_close(w);
    rc = rc ? rc : cin_model_wrap(root, shape.clip_frames, lname, log, out, err);
    if (rc == 0) {
        (*out)->info.joints = shape.joints;
        (*out)->info.persons = shape.persons;
    }
    return rc;
}

int cin_model_load(const cin_model_opts *opts, cin_model **out, cin_err *err)
{
    if (!out)
        return cin_err_set(err, CIN_E_INVAL, "model: no output handle");
    *out = NULL;
    if (!opts || !opts->arch)
        return cin_err_set(err, CIN_E_CONFIG,
                           "model: arch missing, expected one of: x3d, transformer, stgcn");
    cin_logger log = {opts->log, opts->log_user, opts->log_level};
    if (strcmp(opts->arch, "x3d") == 0)
        return load_x3d(opts, &log, out, err);
    if (strcmp(opts->arch, "transformer") == 0)
        return load_transformer(opts, &log, out, err);
    if (strcmp(opts->arch, "stgcn") == 0)
        return load_stgcn(opts, &log, out, err);
    return cin_err_set(err, CIN_E_CONFIG, "model: arch '%s', expected one of: x3d, "
                       "transformer, stgcn", opts->arch);
}
