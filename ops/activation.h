/* Per-frame elementwise activations and the channel softmax. Stateless: both modes apply the
 * same function to every frame. */
#ifndef CIN_ACTIVATION_H
#define CIN_ACTIVATION_H

#include "node.h"

/* ACT_GELU is the exact one, 0.5 x (1 + erf(x / sqrt 2)), as torch's default. */
typedef enum { ACT_RELU, ACT_SWISH, ACT_SIGMOID, ACT_SOFTMAX, ACT_GELU } act_kind;

/* ACT_SOFTMAX normalises over channels at each (h, w) position. */
int act_create(act_kind kind, cin_dims dims, cin_node **out, cin_err *err);

/* The functions themselves, for operators that fuse them. */
void act_apply(act_kind kind, cin_dims dims, const float *in, float *out);

#endif
