/* Squeeze-and-excitation: each channel of a frame is scaled by
 * sigmoid(fc2(relu(fc1(mean)))), where `mean` is the channel's average.
 * Clip mode averages over the whole clip, as pytorchvideo's X3D does. Continual mode averages
 * over a window of the last `window` frames (CoX3D; window 1 is co3d's per-frame scope) and
 * scales the oldest frame of that window, so its delay is window - 1. */
#ifndef CIN_SE_H
#define CIN_SE_H

#include "node.h"

typedef struct se_params {
    cin_dims dims;
    int reduced;                /* channels between fc1 and fc2 */
    const float *fc1_w, *fc1_b; /* [reduced][c], [reduced] */
    const float *fc2_w, *fc2_b; /* [c][reduced], [c] */
    int window;                 /* continual pooling window in frames, >= 1 */
} se_params;

int se_create(const se_params *p, cin_node **out, cin_err *err);

#endif
