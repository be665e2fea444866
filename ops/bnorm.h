/* Batch normalisation in eval mode, which every operator folds into the weights and bias of
 * the layer it follows at load time: y = x * scale + shift per channel, so no operator runs
 * a batch norm of its own on the per-frame path. */
#ifndef CIN_OPS_BNORM_H
#define CIN_OPS_BNORM_H

/* A batch norm's parameters and running statistics, [channels] each; gamma NULL: none. */
typedef struct bn_params {
    const float *gamma, *beta, *mean, *var;
    float eps;
} bn_params;

/* The scale gamma / sqrt(var + eps) and shift beta - mean * scale of channel c, computed in
 * double; 1 and 0 when p->gamma is NULL. */
void bn_fold(const bn_params *p, int c, double *scale, double *shift);

#endif
