/* A skeleton sequence read whole from a file (NTU RGB+D .skeleton, BVH): float32
 * [frames][channels][joints][persons], the layout of ST-GCN's data arrays per sample, with
 * missing joints and persons zero and a count of the values that were masked to zero.
 * The readers (ntu.h, bvh.h) fill one; the pipeline's skeleton source steps through it. */
#ifndef CIN_IO_SKEL_H
#define CIN_IO_SKEL_H

#include <stdint.h>

typedef struct skel_seq {
    int t, c, v, m;         /* frames, channels per joint, joints, persons */
    float *data;            /* [t][c][v][m], malloc'd, owned by the sequence */
    int64_t masked;         /* joints set to 0 when read (a NaN or infinite value, a person
                               dropped), counted once a joint and frame */
} skel_seq;

/* Sets every joint with a NaN or infinite value to 0 in all its channels, adding one to
 * s->masked for each. */
void skel_seq_mask(skel_seq *s);

/* Frees data and zeroes the sequence; safe on a zeroed or already freed one. */
void skel_seq_free(skel_seq *s);

#endif
