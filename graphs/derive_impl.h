/* Internal to cin-derive's modules: the derivation context and the steps every model shares
 * (reading tensors and adapters, ranking filters, slicing and fusing every source tensor into
 * the output list). graphs/derive.c holds them and X3D's couplings; derive_stgcn.c and
 * derive_tfm.c hold ST-GCN's and the transformer's, each through a `slices` callback that
 * says which output and input channels of a source tensor survive. */
#ifndef CIN_GRAPHS_DERIVE_IMPL_H
#define CIN_GRAPHS_DERIVE_IMPL_H

#include "derive.h"
#include "safetensors.h"

/* Kept channel indices; keep == NULL: all n. */
typedef struct chmask {
    int *keep, n;
} chmask;

/* An X3D bottleneck. */
typedef struct block {
    char prefix[96];   /* "...branch2." */
    int base_len;      /* the length of the block's own prefix, before "branch2." */
    int stage, index;  /* 1..4, from 0 */
    int inner;
    int *keep, n_keep; /* the inner mask */
} block;

/* A stage's output mask, tied across its residuals, and the mask tensor that first gave it. */
typedef struct stage_mask {
    int width;
    chmask m;
    char given_by[192];
} stage_mask;

typedef struct dctx dctx;

/* The kept outputs and inputs of source tensor `name` (keep NULL: all). */
typedef void (*derive_slices_fn)(const dctx *c, const char *name, chmask *out, chmask *in);

enum { DERIVE_LAYER = 192, DERIVE_MAX_PARTS = 3 };

/* For a weight that packs several layers as equal blocks of its rows (torch's in_proj_weight
 * holds q_proj, k_proj and v_proj), the layers whose adapters fuse into each block, in row
 * order; returns their count, or 0 when `name` is one layer. */
typedef int (*derive_parts_fn)(const char *name, char layers[][DERIVE_LAYER]);

struct dctx {
    const derive_opts *o;
    st_file *src, *adapters, *masks;
    derive_slices_fn slices;
    derive_parts_fn parts;  /* NULL: no packed weights */
    const void *model;    /* the slices callback's own state (ST-GCN, transformer) */
    int slowfast;         /* X3D: SlowFast names */
    block *blocks;        /* X3D */
    int n_blocks;
    stage_mask stages[5]; /* X3D: [0] is the stem, never pruned */
    int stage_pruned;
    unsigned char *adapter_used;
    st_out *outs;
    int n_outs;
    derive_stats stats;
    cin_err *err;
};

/* A layer's adapter arrays, owned. */
typedef struct derive_bufs {
    float *rows, *cols, *para;
} derive_bufs;

/* Opens o->source and o->adapters into c; derive_close frees what derive_open and
 * derive_tensors made (not the model's own state). */
int derive_open(dctx *c);
void derive_close(dctx *c);

/* Reads a whole F32 tensor of f into a new array. */
int derive_read_all(st_file *f, const char *name, st_info *info, float **out, cin_err *err);

/* The adapter of <layer> (SPLoRA, SPPaRA or both); *found = 0 when it has none. */
int derive_load_adapter(dctx *c, const char *layer, derive_adapter *a, derive_bufs *b,
                        int *found);
void derive_bufs_free(derive_bufs *b);

/* score[o] += the L1 or L2 norm of filter o of w [out, per]. */
void derive_add_norms(const float *w, int out, int64_t per, derive_norm norm, double *score);

/* mask01 = 1 for the `keep` largest scores (ties: the lower index), 0 elsewhere. */
void derive_mask_from_scores(const double *score, int out, int keep, float *mask01);

/* Adds the filter norms of source weight `name`, with its adapter fused and its inputs sliced
 * by `in`, to score [its output rows]. */
int derive_layer_norms(dctx *c, const char *name, chmask in, double *score);

/* A mask of n values from o->masks: each 0 or 1, at least one 1; else names the tensor. */
int derive_check_mask(dctx *c, const char *name, const float *m, int n);

/* Every source tensor sliced by c->slices, fused with its adapter, into c->outs; refuses an
 * adapters tensor that no source tensor used. */
int derive_tensors(dctx *c);

/* The kept indices of a 0/1 mask of n values into m (malloc'd). */
int derive_chmask_of(dctx *c, const float *mask01, int n, chmask *m);

/* Writes c->outs to o->out with metadata format = pt and cin.derive = kind. */
int derive_write(dctx *c, const char *kind);

#endif
