/* cin: continual inference for video and sensor models.
 *
 * A model is loaded once; its weights are read only and shared. Each input stream (a camera,
 * a file) gets its own cin_stream holding the state the next frame needs: running partial sums
 * of temporal convolutions, pooling windows, delay lines. cin_stream_step() takes one frame and
 * returns the network's output for it once enough frames have been seen; cin_stream_forward()
 * runs the regular network over a whole clip with the same weights.
 *
 * Example: step a CoX3D-S model over frames and print the best class per output.
 *
 *     #include <cin.h>
 *     #include <stdio.h>
 *     #include <stdlib.h>
 *
 *     int classify(const float *frames, int n_frames)    // frames: [n_frames][3][160][160]
 *     {
 *         cin_err err;
 *         cin_model *model;
 *         cin_model_opts opts = {.arch = "x3d", .size = "s",
 *                                .weights = "x3d_s.safetensors"};
 *         if (cin_model_load(&opts, &model, &err) < 0) {
 *             fprintf(stderr, "%s\n", err.msg);
 *             return -1;
 *         }
 *         cin_model_info info;
 *         cin_model_get_info(model, &info);
 *         cin_stream *stream;
 *         if (cin_stream_create(model, &stream, &err) < 0) {
 *             fprintf(stderr, "%s\n", err.msg);
 *             cin_model_free(model);
 *             return -1;
 *         }
 *         float *out = malloc(sizeof(float) * info.out_size);
 *         size_t frame_size = (size_t)info.in_channels * info.in_height * info.in_width;
 *         for (int t = 0; t < n_frames; t++) {
 *             int r = cin_stream_step(stream, frames + t * frame_size, out);
 *             if (r < 0)
 *                 fprintf(stderr, "%s\n", cin_stream_last_error(stream));
 *             if (r <= 0)
 *                 continue;                   // warming up: no output for this frame yet
 *             int best = 0;
 *             for (int k = 1; k < info.out_size; k++)
 *                 best = out[k] > out[best] ? k : best;
 *             printf("frame %d: class %d\n", t, best);
 *         }
 *         free(out);
 *         cin_stream_free(stream);
 *         cin_model_free(model);
 *         return 0;
 *     }
 *
 * Threads: a cin_model may be used by any number of threads at once after cin_model_load()
 * returns (it is never written again). A cin_stream must be used by one thread at a time.
 */
#ifndef CIN_H
#define CIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Only the functions declared here are exported from libcin.so. */
#if defined(__GNUC__)
#define CIN_API __attribute__((visibility("default")))
#else
#define CIN_API
#endif

/* Status codes: every call returns 0 (or a documented positive value) or one of these. */
enum {
    CIN_OK = 0,
    CIN_E_NOMEM = -1,       /* an allocation failed */
    CIN_E_INVAL = -2,       /* an argument is out of range or NULL */
    CIN_E_IO = -3,          /* a file could not be opened, read or written */
    CIN_E_FORMAT = -4,      /* a file is truncated, malformed or inconsistent */
    CIN_E_SHAPE = -5,       /* a tensor or array does not have the expected shape */
    CIN_E_NOTFOUND = -6,    /* a named tensor, key or file is missing */
    CIN_E_UNSUPPORTED = -7, /* valid input that cin does not handle */
    CIN_E_CONFIG = -8,      /* a pipeline or model setting is missing or wrong */
    CIN_E_DECODE = -9,      /* the media could not be demuxed or decoded */
};

/* Name of a status code. Thread-safe; the string is static. */
CIN_API const char *cin_strerror(int code);

/* A status code with its detail: the file, field or tensor, and what was expected. Owned by
 * the caller; filled by calls that take one. */
typedef struct cin_err {
    int code;
    char msg[512];
} cin_err;

/* Log levels, most severe first. The library is silent unless a callback is set. */
enum { CIN_LOG_ERROR = 0, CIN_LOG_WARN = 1, CIN_LOG_INFO = 2, CIN_LOG_DEBUG = 3 };

/* Receives one message without a trailing newline; `component` names the part that logged. */
typedef void (*cin_log_fn)(void *user, int level, const char *component, const char *msg);

typedef struct cin_model cin_model;
typedef struct cin_stream cin_stream;

/* The shape of a transformer encoder over a sliding window of feature vectors (arch
 * "transformer"); its weights use torch.nn.TransformerEncoderLayer's names (docs/models.md). */
typedef struct cin_transformer_opts {
    int input_dim;             /* features per frame; an input projection maps them to d_model */
    int d_model, nhead, dim_feedforward;
    int layers;                /* 1 or 2 */
    int window;                /* frames the encoder attends over */
    int norm_first;            /* torch's norm_first: 0 or 1 */
    const char *activation;    /* "relu" (default) or "gelu" */
    const char *pos;           /* positional encoding: "none" (default), "learned", "sinusoidal" */
    int class_token;           /* 1: a learned class token gives the output */
    const char *first_layer;   /* two layers: "retroactive" (default) or "regular" */
} cin_transformer_opts;

/* The shape of a skeleton model (arch "stgcn"): ST-GCN over the joints of a few persons. Its
 * input frame is [channels][1][persons * joints], joint v of person m at column
 * m * joints + v, absent persons all zero (docs/models.md). */
typedef struct cin_skeleton_opts {
    const char *variant;    /* "st-gcn" (default): temporal padding 4 and strides 2 in blocks 5
                               and 8, an output every 4 frames; "st-gcn*" (CoST-GCN*): no
                               padding, stride 1, an output every frame; "agcn" and "agcn*":
                               the same with 2s-AGCN's adaptive graph convolution (AGCN /
                               CoAGCN, CoAGCN*), continual-skeletons' layout only */
    const char *graph;      /* joints: "ntu-rgb+d" (default, 25), "openpose" (18), "coco" (17),
                               "cmu31" (31, CMU BVH order) */
    const char *strategy;   /* adjacency partitions: "spatial" (default), "distance", "uniform" */
    const char *layout;     /* seeded weights only: "st-gcn" (default; for AGCN
                               "continual-skeletons") or "continual-skeletons"; a checkpoint's
                               names decide otherwise */
    int channels;           /* values per joint; default 3 */
    int persons;            /* default 2 */
    int clip_frames;        /* the regular model's clip; sets the continual pooling window;
                               default 300 */
} cin_skeleton_opts;

/* What to load. Zero means "the default" for every numeric field. */
typedef struct cin_model_opts {
    const char *arch;      /* model family: "x3d", "transformer" or "stgcn" */
    const char *size;      /* x3d: "xs", "s", "m" or "l" */
    const char *weights;   /* safetensors checkpoint; NULL draws weights from `seed` */
    uint64_t seed;         /* used only when weights is NULL */
    int crop;              /* input height and width; default: the size's (160/160/224/312) */
    int pool_window;       /* continual head pooling window, frames; default co3d's (4/13/16/16) */
    int se_window;         /* continual squeeze-excitation window, frames; default 1 (a frame) */
    int num_classes;       /* default: taken from the weights, or 400 */
    const cin_transformer_opts *transformer;  /* arch "transformer" only */
    const cin_skeleton_opts *skeleton;        /* arch "stgcn" only; NULL: all defaults */
    int features;          /* x3d: 1 outputs the 2048 features before the classifier */
    cin_log_fn log;        /* optional; called during load and by streams of this model */
    void *log_user;
    int log_level;         /* highest level passed to `log` */
} cin_model_opts;

typedef struct cin_model_info {
    int in_channels, in_height, in_width;  /* one input frame, planar float32 */
    int out_size;                          /* floats per output (class logits) */
    int clip_frames;                       /* the regular model's clip length */
    int receptive_field;                   /* frames that influence one continual output */
    int delay;                             /* steps before the first output */
    int stride;                            /* steps between outputs */
    int64_t macs_step;                     /* multiply-adds per continual step */
    int64_t macs_clip;                     /* multiply-adds per clip of clip_frames */
    size_t weight_bytes;                   /* shared by all streams */
    size_t state_bytes;                    /* per stream: continual state + work buffers */
    const char *layout;                    /* checkpoint layout found: "pytorchvideo", "slowfast",
                                              "st-gcn", "continual-skeletons", "torch" or
                                              "seeded" */
    int joints, persons;                   /* skeleton models: in_width = persons * joints;
                                              0 for the others */
} cin_model_info;

/* Loads a model and its weights. On success *out owns the model; free it with
 * cin_model_free() after every stream of it is freed. On failure returns < 0, *out is NULL and
 * err (if not NULL) says what was wrong. Thread-safe. */
CIN_API int cin_model_load(const cin_model_opts *opts, cin_model **out, cin_err *err);

/* Frees a model. NULL is a no-op. No stream of it may be used afterwards. */
CIN_API void cin_model_free(cin_model *model);

/* Fills *info. Thread-safe; the strings live as long as the model. */
CIN_API void cin_model_get_info(const cin_model *model, cin_model_info *info);

/* Creates a stream over `model` with zeroed state; all memory it will need is allocated here.
 * The model must outlive the stream. Thread-safe with respect to the model. */
CIN_API int cin_stream_create(const cin_model *model, cin_stream **out, cin_err *err);

/* Frees a stream. NULL is a no-op. */
CIN_API void cin_stream_free(cin_stream *stream);

/* Continual mode: consumes one frame ([in_channels][in_height][in_width], planar float32).
 * Returns 1 and writes out_size floats to `out` when this frame completes an output; returns 0
 * and leaves `out` untouched while the stream warms up (the first `delay` frames) or when a
 * temporal stride skips the frame. Does not allocate. */
CIN_API int cin_stream_step(cin_stream *stream, const float *frame, float *out);

/* Forgets every frame seen so far, as if the stream were new (e.g. after a gap in the input). */
CIN_API void cin_stream_reset(cin_stream *stream);

/* Clip mode: runs the regular network over `frames` frames ([frames][C][H][W]) and writes the
 * output, averaged over the clip's output positions, to `out`. Does not touch the continual
 * state. Allocates its work buffers on the first call and whenever `frames` grows. Returns 0,
 * or CIN_E_INVAL if the clip is shorter than the model's receptive field in clip mode. */
CIN_API int cin_stream_forward(cin_stream *stream, const float *clip, int frames, float *out);

/* The detail of the last failed call on this stream; "" if none. Valid until the next call. */
CIN_API const char *cin_stream_last_error(const cin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif
