/* Folding of eval-mode batch norms (see bnorm.h). */
#include "bnorm.h"

#include <math.h>

void bn_fold(const bn_params *p, int c, double *scale, double *shift)
{
    *scale = 1.0;
    *shift = 0.0;
    if (!p->gamma)
        return;
    *scale = p->gamma[c] / sqrt((double)p->var[c] + p->eps);
    *shift = p->beta[c] - p->mean[c] * *scale;
}
