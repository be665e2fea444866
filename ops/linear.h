/* A fully connected layer on frames that are vectors ([c][1][1]): y = W x + b per frame. */
#ifndef CIN_LINEAR_H
#define CIN_LINEAR_H

#include "node.h"

/* weight [cout][cin] (PyTorch's layout), bias [cout] or NULL; both are copied. */
int linear_create(int cin, int cout, const float *weight, const float *bias, cin_node **out,
                  cin_err *err);

#endif
