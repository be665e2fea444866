/* Average pooling: over each frame's positions, over a sliding temporal window, and the
 * clip-wide average that closes the regular network (an identity when stepping, where every
 * step is one output position). */
#ifndef CIN_POOL_H
#define CIN_POOL_H

#include "node.h"

/* [c][h][w] -> [c][1][1], per frame. */
int pool_spatial_create(cin_dims dims, cin_node **out, cin_err *err);

/* Mean of the last `window` frames, temporal stride 1: delay window - 1 - pad. Stepping, the
 * first outputs come `pad` steps early and count the frames before the stream as zeros
 * (continual-skeletons' head pooling, co.AvgPool1d with padding); a clip is pooled over its
 * full windows only, so a clip of `window` frames gives the plain mean. 0 <= pad < window. */
int pool_temporal_create(cin_dims dims, int window, int pad, cin_node **out, cin_err *err);

/* Clip mode: the mean of all frames (one output frame). Continual mode: the identity. */
int pool_clip_mean_create(cin_dims dims, cin_node **out, cin_err *err);

#endif
