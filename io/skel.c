/* The skeleton sequence shared by the file readers. */
#include "skel.h"

#include <math.h>
#include <stdlib.h>

void skel_seq_free(skel_seq *s)
{
    if (!s)
        return;
    free(s->data);
    *s = (skel_seq){0};
}

void skel_seq_mask(skel_seq *s)
{
    size_t plane = (size_t)s->v * s->m;          /* one channel of a frame: [v][m] */
    for (int t = 0; t < s->t; t++) {
        float *f = s->data + (size_t)t * s->c * plane;
        for (size_t j = 0; j < plane; j++) {
            int bad = 0;
            for (int c = 0; c < s->c; c++)
                bad |= !isfinite(f[c * plane + j]);
            for (int c = 0; bad && c < s->c; c++)
                f[c * plane + j] = 0.0f;
            s->masked += bad;
        }
    }
}
