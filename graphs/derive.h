/* Derived models from structured pruning adapters (Hedegaard et al., as in
 * LukasHedegaard/structured-pruning-adapters, sp_adapters/): a task is a frozen source model,
 * channel masks and adapter weights, fused here into one smaller checkpoint,
 *     W_task = (W0 + adapter at the kernel's centre tap)[m_out][:, m_in],
 * SPLoRA's adapter being cols @ rows (rank r) and SPPaRA's a full pointwise matrix. This phase
 * derives X3D (bottleneck inner and stage output widths), ST-GCN (block inner and output widths)
 * and transformer encoders (feed-forward widths), from masks given or computed; see
 * docs/derive.md. `cin-derive` (graphs/cin_derive.c) drives it.
 *
 *     derive_opts o = {.source = "x3d_s.safetensors", .ratio = 0.5, .norm = DERIVE_L1,
 *                      .out = "derived.safetensors"};
 *     derive_stats s;
 *     cin_err err;
 *     if (derive_x3d(&o, &s, &err) != 0)
 *         fprintf(stderr, "%s\n", err.msg);
 *
 * Every call returns 0 or a negative CIN_E_* and fills err (may be NULL) with a message naming
 * the file and the tensor, expected and found. The functions hold no global state and are
 * thread-safe for distinct outputs.
 */
#ifndef CIN_GRAPHS_DERIVE_H
#define CIN_GRAPHS_DERIVE_H

#include <stdint.h>

#include "error.h"

typedef enum derive_norm { DERIVE_L1, DERIVE_L2 } derive_norm;

/* One layer's adapter; the pointers are NULL when absent. SPLoRA: rows [rank, rows_in] and
 * cols [cols_out, rank], where rows_in is the layer's in/groups or the kept count, cols_out
 * its out or the kept count (the library's masked named_parameters gives the latter). SPPaRA:
 * para [para_out, para_in], either full or sliced alike. */
typedef struct derive_adapter {
    const float *rows, *cols, *para;
    int rank, rows_in, cols_out, para_out, para_in;
} derive_adapter;

/* A weight w0 of shape [out, in, taps...] (ndim 2 for a Linear, 3 to 5 for ConvNd) and the kept
 * output and input indices (NULL: all), fused with adapter a (NULL: none) into
 * dst [n_out, n_in, taps...]. name is for messages. CIN_E_SHAPE when the adapter's shapes do
 * not fit the weight or its ranks disagree. */
int derive_fuse(const char *name, const float *w0, int ndim, const int64_t *shape,
                const int *keep_out, int n_out, const int *keep_in, int n_in,
                const derive_adapter *a, float *dst, cin_err *err);

/* The number of filters kept out of n at pruning ratio r in [0, 1): max(1, round(n (1 - r))),
 * halves to even. */
int derive_keep_count(int n, double ratio);

/* mask01[out] = 1 for the `keep` filters of w [out, per] with the largest L1 or L2 norm (ties:
 * the lower index), 0 for the others. */
void derive_norm_mask(const float *w, int out, int64_t per, derive_norm norm, int keep,
                      float *mask01);

typedef struct derive_opts {
    const char *source;      /* X3D checkpoint, pytorchvideo or SlowFast names */
    const char *masks;       /* given masks (NULL: computed at ratio with norm) */
    const char *adapters;    /* adapter tensors (NULL: none) */
    const char *out;         /* the derived checkpoint */
    const char *write_masks; /* where to write the masks used (NULL: nowhere) */
    double ratio;            /* fraction of each block's inner filters pruned, [0, 1) */
    double stage_ratio;      /* without masks: fraction of each stage's outputs pruned
                              * (0: none), ranked by the summed norms of its conv_c (after
                              * the inner pruning) and shortcut filters */
    derive_norm norm;
} derive_opts;

typedef struct derive_stats {
    const char *unit;         /* what blocks counts: "bottlenecks", "ST-GCN blocks", ... */
    int blocks;
    int64_t inner_before, inner_after; /* summed inner widths */
    int64_t out_before, out_after;     /* ST-GCN: summed block output widths */
    int64_t params_before, params_after;
    int adapted;              /* layers with an adapter fused */
} derive_stats;

/* Writes the derived X3D to o->out, with metadata cin.derive = "x3d-inner", or "x3d-stages"
 * when stage outputs are pruned (which lets the X3D builder take the widths from the file).
 * Masks are 0/1 floats: <block>.branch2.conv_a.out_mask (SlowFast: <block>.branch2.a.out_mask)
 * of the inner width; <block>.branch2.conv_c.out_mask or <first block>.branch1_conv.out_mask
 * (SlowFast: .branch2.c., .branch1.) of the stage's width, which must all agree within a stage
 * (CIN_E_FORMAT names two that do not). Adapters:
 * <layer>.adapter.rows / .adapter.cols (SPLoRA) or <layer>.adapter (SPPaRA), and a tensor
 * named as a source tensor replaces it (a fine-tuned bias or norm). Any other name is
 * refused, naming it. s may be NULL. */
int derive_x3d(const derive_opts *o, derive_stats *s, cin_err *err);

/* Writes the derived ST-GCN (yysijie/st-gcn or continual-skeletons names; not AGCN) to o->out
 * with metadata cin.derive = "stgcn". o->ratio prunes each block's inner width (the graph
 * convolution's outputs, which the temporal convolution reads), o->stage_ratio each block's
 * output (a group of blocks joined by identity residuals shares one mask). Masks:
 * <block>.gcn.conv.out_mask ([C] or [K * C], continual-skeletons: <block>.gcn.g_conv.<k>.out_mask
 * or .gcn.gcn_residual.0.out_mask) for the inner width, <block>.tcn.2.out_mask or
 * .residual.0.out_mask (.tcn.t_conv., .residual.t_conv.) for the output; masks of tied
 * channels must agree (CIN_E_FORMAT names both). Adapters as for derive_x3d. */
int derive_stgcn(const derive_opts *o, derive_stats *s, cin_err *err);

/* Writes the derived transformer encoder (torch.nn.TransformerEncoderLayer names under
 * layers.N) to o->out with metadata cin.derive = "transformer": o->ratio, or the masks
 * layers.N.linear1.out_mask [dim_feedforward], prune each layer's feed-forward width (linear1's
 * outputs, linear2's inputs). Adapters on any Linear, and on the attention's in_proj_weight as
 * <layer>.self_attn.in_proj.adapter[.rows/.cols], are fused unpruned. */
int derive_transformer(const derive_opts *o, derive_stats *s, cin_err *err);

/* derive_x3d, derive_stgcn or derive_transformer, by the source's tensor names. */
int derive_model(const derive_opts *o, derive_stats *s, cin_err *err);

#endif
