/* An affine map with its own scale and shift for every element of a frame: a batch norm whose
 * channels are all of a frame's positions, as ST-GCN's data_bn normalises every coordinate of
 * every joint of every person separately. Stateless: both modes apply it per frame. */
#ifndef CIN_AFFINE_H
#define CIN_AFFINE_H

#include "node.h"

/* y[i] = scale[i] * x[i] + shift[i] for the cin_dims_size(dims) elements of a frame; both
 * arrays are copied. */
int affine_create(cin_dims dims, const float *scale, const float *shift, cin_node **out,
                  cin_err *err);

#endif
