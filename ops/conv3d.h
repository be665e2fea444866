/* 3D convolution over frame streams: dense, grouped and depthwise, with spatial stride and
 * padding and a temporal kernel, stride and zero padding. An optional batch norm that follows
 * the convolution is folded into its weights when the node is built. */
#ifndef CIN_CONV3D_H
#define CIN_CONV3D_H

#include "bnorm.h"
#include "node.h"

typedef struct conv3d_params {
    int cin, cout, groups;
    int kt, kh, kw;         /* kernel: time, height, width */
    int st, sh, sw;         /* stride */
    int pt, ph, pw;         /* zero padding; pt <= kt - 1 */
    int h, w;               /* input frame height and width */
    const float *weight;    /* [cout][cin/groups][kt][kh][kw], PyTorch's layout */
    const float *bias;      /* [cout] or NULL */
    bn_params bn;           /* after the convolution, folded in; bn.gamma NULL for none */
} conv3d_params;

/* Copies (and repacks) the weights: the caller's arrays may be freed afterwards. */
int conv3d_create(const conv3d_params *p, cin_node **out, cin_err *err);

#endif
