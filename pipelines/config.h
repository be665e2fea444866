/* The pipeline configuration read by cin-run: one YAML file naming the sources, the
 * preprocessing, the model, the post-processing and the sinks. Loading validates every key and
 * fills defaults, so the rest of the pipeline never sees a partial or ill-typed setting.
 * docs/pipeline.md documents every key.
 *
 *     pipe_config *cfg;
 *     cin_err err;
 *     if (pipe_config_load("pipe.yaml", &cfg, &err) != 0) {
 *         fprintf(stderr, "%s\n", err.msg);   // "pipe.yaml:3:8: model.size: expected ..."
 *         return 1;
 *     }
 *     run(cfg->sources[0].uri, cfg->model.arch, ...);
 *     pipe_config_free(cfg);
 */
#ifndef CIN_PIPE_CONFIG_H
#define CIN_PIPE_CONFIG_H

#include <stdint.h>

#include "error.h"

#define PIPE_MAX_SINKS 8
#define PIPE_MAX_SOURCES 64
#define PIPE_MAX_ID 64             /* bytes of a source id, with its NUL */

typedef enum {
    PIPE_SOURCE_VIDEO, PIPE_SOURCE_NPY, PIPE_SOURCE_FEATURES, PIPE_SOURCE_SKELETON
} pipe_source_type;
/* features: jsonl or csv; skeleton: any (default from the file's extension). */
typedef enum {
    PIPE_FORMAT_JSONL, PIPE_FORMAT_CSV, PIPE_FORMAT_NPY, PIPE_FORMAT_NTU, PIPE_FORMAT_BVH
} pipe_format;
typedef enum { PIPE_MODE_CONTINUAL, PIPE_MODE_CLIP } pipe_mode;
typedef enum { PIPE_SINK_JSONL, PIPE_SINK_NPY, PIPE_SINK_CSV } pipe_sink_type;
/* source.overload, what a full queue of decoded frames does: keep-newest drops the oldest
 * queued frame for the new one (live sources: latency stays bounded), block makes the source
 * wait (files: none of their frames is lost). */
typedef enum { PIPE_OVERLOAD_KEEP_NEWEST, PIPE_OVERLOAD_BLOCK } pipe_overload;

/* A text sink's results wait in a buffer at most this long (seconds) by default. */
#define PIPE_DEFAULT_FLUSH 0.25
/* Live video sources (docs/pipeline.md, "Live sources"). */
#define PIPE_DEFAULT_OPEN_TIMEOUT 10.0
#define PIPE_DEFAULT_READ_TIMEOUT 5.0
/* Features and skeleton rows from a socket connect within PIPE_DEFAULT_OPEN_TIMEOUT; a
 * sender may be idle (nobody in view), so the wait for rows has no limit by default. */
#define PIPE_DEFAULT_ROWS_READ_TIMEOUT 0.0
#define PIPE_DEFAULT_RECONNECT_INITIAL 0.5
#define PIPE_DEFAULT_RECONNECT_MAX 8.0
/* Frames a source decodes ahead of the model, by default. */
#define PIPE_DEFAULT_QUEUE 8

typedef struct pipe_sink {
    pipe_sink_type type;
    char *path;                 /* resolved; "-" = stdout (jsonl and csv) */
    double flush;               /* jsonl, csv: longest wait in the write buffer, seconds */
    int replace;                /* 1: written aside and renamed over path at the end (the
                                   default when every source ends by itself); 0: written at
                                   path as results come (when a source is live) */
} pipe_sink;

/* Every path below is resolved against the directory of the YAML file, except absolute
 * paths, "-" and URIs with a scheme ("rtsp://..."). Strings are owned by the config. */
/* One model of the pipeline; `head`, when given, is fed this model's features (its output
 * before the classifier) frame by frame and gives the results. */
typedef struct pipe_model {
    char *arch;                 /* a known family, e.g. "x3d" */
    char *size;                 /* a size of that family, e.g. "s"; NULL if it has none */
    char *weights;              /* NULL: seeded weights */
    uint64_t seed;
    pipe_mode mode;
    int pool_window;            /* 0 = the size's default */
    int se_window;
    int num_classes;            /* 0: the checkpoint's, else 400 */
    cin_transformer_opts transformer;   /* arch transformer: its shape (static strings) */
    cin_skeleton_opts skeleton;         /* arch stgcn: its shape (static strings) */
    struct pipe_model *head;    /* NULL: this model's output is the result */
} pipe_model;

/* One source of the pipeline; each gets its own stream state of the shared model. */
typedef struct pipe_source {
    pipe_source_type type;
    char *uri;              /* uri (video, features, skeleton) or path (npy) */
    char *id;               /* named in every result; unique; by default "0", "1", ... */
    pipe_format format;     /* features, skeleton: how records are written */
    int score;              /* skeleton rows: the model's last value is the score */
    /* video: live sources (network uris, devices); resolved, so 0 means none */
    double open_timeout;    /* seconds; default PIPE_DEFAULT_OPEN_TIMEOUT for live video and
                               for features and skeleton rows from a socket */
    double read_timeout;    /* seconds; live default PIPE_DEFAULT_READ_TIMEOUT, rows from a
                               socket PIPE_DEFAULT_ROWS_READ_TIMEOUT */
    char *rtsp_transport;   /* "tcp", "udp" or NULL (libav's choice) */
    int width, height;      /* V4L2 requested size; 0 = the device's */
    double rate;            /* V4L2 requested frames per second; 0 = the device's */
    char *pixel_format;     /* V4L2 requested format; NULL = the device's */
    struct {
        int on;             /* live sources: 1 unless `reconnect: false`; files: 0 */
        double initial;     /* first wait before reopening, seconds */
        double max;         /* the wait doubles up to this */
        int attempts;       /* failed reopenings in a row before giving up; 0 = forever */
    } reconnect;
    int queue;              /* frames decoded ahead of the model, at most */
    pipe_overload overload; /* what a full queue does */
    int realtime;           /* files: read at the pace of their timestamps, as a camera */
    char *weights;          /* this source's checkpoint for model (a task's derived model);
                               NULL: model.weights */
    char *labels;           /* its class names; NULL: postprocess.labels */
} pipe_source;

typedef struct pipe_config {
    char *path;                 /* the YAML file itself, as given to pipe_config_load */
    pipe_source sources[PIPE_MAX_SOURCES];
    int n_sources;              /* >= 1 */
    int workers;                /* threads stepping the streams; 0: one per core, at most
                                   one per source */
    struct {
        double fps;             /* 0 = every frame */
        int resize;             /* shorter side, pixels */
        int crop;               /* centre crop side, pixels, <= resize */
        float mean[3];
        float std[3];
        int centre_joint;       /* skeleton: joint whose position is subtracted; -1: none */
        int scale_bone[2];      /* skeleton: joints whose distance scales to 1; -1: none */
    } preprocess;
    pipe_model model;
    struct {
        int softmax;            /* 0 or 1 */
        int topk;               /* 1..model.num_classes */
        int topk_given;         /* 0: topk is the default, 5, and a model with fewer classes
                                   lists them all */
        char *labels;           /* NULL: no labels */
    } postprocess;
    pipe_sink sinks[PIPE_MAX_SINKS];
    int n_sinks;                /* >= 1 */
} pipe_config;

/* Reads and validates the YAML file at path into a new config (*out, free with
 * pipe_config_free). Returns 0, CIN_E_IO if the file cannot be read, CIN_E_CONFIG for any
 * syntax or validation error, or CIN_E_NOMEM; err->msg is then one line of the form
 * "file:line:column: field: expected ..., got ...". *out is NULL on error. Thread-safe. */
int pipe_config_load(const char *path, pipe_config **out, cin_err *err);

/* Frees c and every string it owns; NULL is allowed. */
void pipe_config_free(pipe_config *c);

/* The library options of a pipeline model (pointers into c, valid while c is). */
void pipe_model_opts(const pipe_config *c, const pipe_model *m, int features,
                     cin_model_opts *out);

#endif
