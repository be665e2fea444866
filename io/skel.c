/* The skeleton sequence shared by the file readers. */
#include "skel.h"

#include <stdlib.h>

void skel_seq_free(skel_seq *s)
{
    if (!s)
        return;
    free(s->data);
    *s = (skel_seq){0};
}
