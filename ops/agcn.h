/* Adaptive graph convolution (2s-AGCN, Shi et al., CVPR 2019) as continual-skeletons computes
 * it (models/a_gcn/a_gcn.py, AdaptiveGraphConvolution), without its shortcut and ReLU:
 *     y = bn(sum_k W_k x (C_k + B_k) + b),   C_k = softmax_v(theta_k^T phi_k / (C_e T)),
 * theta_k = a_k x + a_bias_k and phi_k = b_k x + b_bias_k embeddings of C_e channels, the
 * product summed over channels and the T frames given, the softmax taken over the source
 * joint v of each target joint w. Clip mode takes T = the whole clip: one graph per clip, which
 * no causal stream can compute. A step takes T = 1, the frame alone, as CoAGCN steps it
 * (coa_gcn.py: co.forward_stepping's forward_step). Frames are [channels][1][persons * joints],
 * joint v of person m at column m * joints + v; each person gets its own C_k. */
#ifndef CIN_AGCN_H
#define CIN_AGCN_H

#include "bnorm.h"
#include "node.h"

typedef struct agcn_params {
    int cin, cout;
    int k;                  /* subsets (partitions of B) */
    int inter;              /* C_e, embedding channels: continual-skeletons' inter_c */
    int joints, persons;
    const float *weight;    /* [k][cout][cin]: g_conv.0..k-1 stacked */
    const float *bias;      /* [cout]: the sum of the g_conv biases, or NULL */
    const float *theta_w;   /* [k][inter][cin]: a_conv.0..k-1 */
    const float *theta_b;   /* [k][inter], or NULL */
    const float *phi_w;     /* [k][inter][cin]: b_conv.0..k-1 */
    const float *phi_b;     /* [k][inter], or NULL */
    const float *adj;       /* [k][joints][joints]: B_k, the fixed graph plus the learned one */
    bn_params bn;           /* after aggregation, folded in; bn.gamma NULL for none */
} agcn_params;

/* Copies and repacks what it needs: the caller's arrays may be freed afterwards. */
int agcn_create(const agcn_params *p, cin_node **out, cin_err *err);

#endif
