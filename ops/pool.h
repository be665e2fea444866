/* Average pooling: over each frame's positions, over a sliding temporal window, and the
 * clip-wide average that closes the regular network (an identity when stepping, where every
 * step is one output position). */
#ifndef CIN_POOL_H
#define CIN_POOL_H

#include "node.h"

/* [c][h][w] -> [c][1][1], per frame. */
int pool_spatial_create(cin_dims dims, cin_node **out, cin_err *err);

/* Mean of the last `window` frames, temporal stride 1, no padding: delay window - 1. */
int pool_temporal_create(cin_dims dims, int window, cin_node **out, cin_err *err);

/* Clip mode: the mean of all frames (one output frame). Continual mode: the identity. */
int pool_clip_mean_create(cin_dims dims, cin_node **out, cin_err *err);

#endif
