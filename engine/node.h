/* The operator interface and the dataflow graph built from it.
 *
 * A node maps a stream of frames ([c][h][w] float32) to a stream of frames. It declares its
 * temporal geometry (receptive field, zero padding, stride); its delay is rf - 1 - pad: the
 * number of steps before its first continual output. Operators (ops/) implement cin_node_ops;
 * containers (sequence, parallel branches reduced by sum, product or concatenation) are nodes
 * too and compose the geometry of their children. Nodes are built once and then only read;
 * everything a stream changes lives in its state block, whose layout the node fixes. */
#ifndef CIN_NODE_H
#define CIN_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct cin_dims {
    int c, h, w;
} cin_dims;

static inline size_t cin_dims_size(cin_dims d)
{
    return (size_t)d.c * (size_t)d.h * (size_t)d.w;
}

typedef struct cin_node cin_node;

typedef struct cin_node_ops {
    const char *kind;
    /* Continual mode: consume one frame. Returns 1 with an output frame in `out`, or 0 when no
     * output is due. `state` is this node's block (zeroed at stream start); `scratch` holds at
     * least node->step_scratch floats. Must not allocate. */
    int (*step)(const cin_node *n, void *state, const float *in, float *out, float *scratch);
    /* Clip mode: t_in frames in, cin_node_clip_frames(n, t_in) frames out. */
    void (*forward)(const cin_node *n, const float *in, int t_in, float *out, float *scratch);
    /* Scratch floats forward needs for t_in input frames; NULL means none. */
    size_t (*clip_scratch)(const cin_node *n, int t_in);
    /* Output frames of forward for t_in input frames; NULL means the temporal geometry rule. */
    int (*clip_frames)(const cin_node *n, int t_in);
    /* Multiply-adds per input frame (continual) / for t_in frames (clip); NULL means none. */
    int64_t (*macs_step)(const cin_node *n);
    int64_t (*macs_clip)(const cin_node *n, int t_in);
    /* Weight bytes held below this node; NULL means the node's own param_bytes. */
    size_t (*param_bytes)(const cin_node *n);
    void (*destroy)(cin_node *n);
} cin_node_ops;

struct cin_node {
    const cin_node_ops *ops;
    cin_dims in, out;       /* one frame in and out */
    int rf, pad, stride;    /* temporal receptive field, zero padding, stride */
    size_t state_bytes;     /* per-stream state, a multiple of CIN_ALIGN */
    size_t step_scratch;    /* floats of scratch a step needs */
    size_t param_bytes;     /* weights owned by the node (for reporting) */
};

#define CIN_ALIGN 64

static inline size_t cin_align(size_t n)
{
    return (n + CIN_ALIGN - 1) / CIN_ALIGN * CIN_ALIGN;
}

/* Steps before the first continual output. */
static inline int cin_node_delay(const cin_node *n)
{
    return n->rf - 1 - n->pad;
}

/* Frames forward() produces from t_in frames; 0 if the clip is too short. */
int cin_node_clip_frames(const cin_node *n, int t_in);
size_t cin_node_clip_scratch(const cin_node *n, int t_in);
int64_t cin_node_macs_step(const cin_node *n);
int64_t cin_node_macs_clip(const cin_node *n, int t_in);
size_t cin_node_param_bytes(const cin_node *n);
void cin_node_free(cin_node *n);

/* Containers. Each takes ownership of its children, also on failure. */
typedef enum { CIN_REDUCE_SUM, CIN_REDUCE_MUL, CIN_REDUCE_CONCAT } cin_reduce;

/* Children applied in order; each child's output frame must match the next one's input. */
int cin_seq_create(cin_node **children, int n, cin_node **out, cin_err *err);

/* The same input fed to every branch, outputs reduced. Branches whose delays differ are padded
 * with delay lines so that their outputs meet in time; their strides must agree. A NULL branch
 * stands for the identity. */
int cin_parallel_create(cin_node **branches, int n, cin_reduce reduce, cin_node **out,
                        cin_err *err);

/* A delay line of d frames: output at step t is the input of step t - d; identity in clips. */
int cin_delay_create(cin_dims dims, int d, cin_node **out, cin_err *err);

/* A centre crop of s frames: a clip loses s frames at each end; stepping, the output at step t
 * is the input of step t - s, from step 2 s on (receptive field 2 s + 1, no padding). It aligns
 * a shortcut with a branch that shrinks the clip by s at each end (an unpadded temporal
 * convolution of kernel 2 s + 1), as continual-skeletons' residual_shrink does. */
int cin_crop_create(cin_dims dims, int s, cin_node **out, cin_err *err);

/* A builder helper: appends to a growing list of children, freeing them all on failure. */
typedef struct cin_node_list {
    cin_node **items;
    int n, cap;
    int failed;
} cin_node_list;

void cin_node_list_push(cin_node_list *l, cin_node *node);
/* Builds a sequence from the list and empties it. */
int cin_node_list_seq(cin_node_list *l, cin_node **out, cin_err *err);

#endif
