/* Per-frame elementwise activations and the channel softmax. Stateless: both modes apply the
 * same function to every frame. */
#ifndef CIN_ACTIVATION_H
#define CIN_ACTIVATION_H

#include "node.h"

typedef enum { ACT_RELU, ACT_SWISH, ACT_SIGMOID, ACT_SOFTMAX } act_kind;

/* ACT_SOFTMAX normalises over channels at each (h, w) position. */
int act_create(act_kind kind, cin_dims dims, cin_node **out, cin_err *err);

/* The functions themselves, for operators that fuse them. */
void act_apply(act_kind kind, cin_dims dims, const float *in, float *out);

#endif
