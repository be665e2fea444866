/* ST-GCN (Yan et al., AAAI 2018) and its continual forms CoST-GCN and CoST-GCN* (Hedegaard et
 * al., 2022), built from checkpoints under either published naming: the original code's
 * (yysijie/st-gcn: data_bn, st_gcn_networks.N..., edge_importance.N, fcn) or
 * continual-skeletons' (data_bn, layers.layerN..., fc). The variants agcn and agcn* swap in
 * 2s-AGCN's adaptive graph convolution (AGCN, CoAGCN, CoAGCN*), continual-skeletons' names
 * only. */
#ifndef CIN_STGCN_H
#define CIN_STGCN_H

#include "model.h"
#include "weights.h"

typedef enum { STGCN_ORIGINAL, STGCN_COSKEL } stgcn_layout;

/* "st-gcn" or "continual-skeletons". */
const char *stgcn_layout_name(stgcn_layout l);

/* The layout seeded weights take when none is set: continual-skeletons' for AGCN, the only one
 * it is built from, else st-gcn's. */
stgcn_layout stgcn_default_layout(const cin_skeleton_opts *o);

/* Finds the layout from the checkpoint's names. */
int stgcn_detect_layout(const wsrc *w, stgcn_layout *out, cin_err *err);

/* What a built model takes and spans, its settings' defaults filled in. */
typedef struct stgcn_shape {
    int clip_frames;        /* the regular model's clip */
    int joints, persons;    /* a frame is [channels][1][persons * joints] */
} stgcn_shape;

/* Builds the graph with num_classes outputs (0: from the checkpoint, else 60); *shape gets
 * its clip length, joints and persons. */
int stgcn_build(const cin_skeleton_opts *o, int num_classes, wsrc *w, stgcn_layout layout,
                cin_node **root, stgcn_shape *shape, cin_err *err);

#endif
