/* Spatial graph convolution over a skeleton (ST-GCN, Yan et al. 2018), one frame at a time:
 *     y[c][w] = sum_k sum_v (W_k x)[c][v] A_k[v][w] + bias terms,
 * then an optional batch norm and ReLU. It has no temporal extent, so both modes apply it to
 * every frame. A frame is [channels][1][persons * joints], joint v of person m at column
 * m * joints + v; persons never mix. */
#ifndef CIN_GCN_H
#define CIN_GCN_H

#include "bnorm.h"
#include "node.h"

typedef struct gcn_params {
    int cin, cout;
    int k;                  /* adjacency partitions */
    int joints, persons;
    const float *weight;    /* [k][cout][cin]: ST-GCN's conv to k * cout channels, or
                               continual-skeletons' g_conv.0..k-1 stacked */
    const float *adj;       /* [k][joints][joints], edge importance already applied */
    const float *pre_bias;  /* [k][cout], added before aggregation (ST-GCN's conv), or NULL */
    const float *post_bias; /* [cout], added after it (the sum of g_conv biases), or NULL */
    bn_params bn;           /* after aggregation, folded in; bn.gamma NULL for none */
    int relu;               /* 1: ReLU last */
} gcn_params;

/* Copies and repacks what it needs: the caller's arrays may be freed afterwards. */
int gcn_create(const gcn_params *p, cin_node **out, cin_err *err);

#endif
