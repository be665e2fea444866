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
    size_t n = (size_t)s->t * s->c * s->v * s->m;
    for (size_t i = 0; i < n; i++) {
        if (isfinite(s->data[i]))
            continue;
        s->data[i] = 0.0f;
        s->masked++;
    }
}
