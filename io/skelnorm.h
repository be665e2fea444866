/* Normalisation of a skeleton frame [C][V][M] as skelrows.h returns it, for the pipeline to
 * apply before a step: centre each person on a root joint, then divide by one of its bone
 * lengths, in place.
 *
 *     skelnorm_opts o = {.c = 3, .with_score = 0, .v = 25, .m = 2,
 *                        .root = 1, .bone_from = 0, .bone_to = 20};
 *     if (skelnorm_check(&o, &err) != 0)          // once, when the pipeline is built
 *         return err.code;
 *     skelnorm_counts n = {0};
 *     while (skelrows_read(src, frame, &t, &err) == 1) {
 *         skelnorm_apply(&o, frame, &n);          // no allocation, no failure
 *         step(t, frame);
 *     }
 *
 * What the common pipelines do, so a model sees what it was trained on:
 *  - 2s-AGCN's pre_normalization (data_gen/preprocess.py, the same in MS-G3D, for NTU RGB+D)
 *    subtracts joint 1 ("spine" in NTU, "neck" in Kinetics-skeleton) of the first person from
 *    every person of the frame, keeping joints whose coordinates sum to 0 at 0, then rotates
 *    the skeleton; it does not scale. skelnorm centres each person on its own root (root 1
 *    with m = 1 matches it up to the rotation) and does not rotate.
 *  - ST-GCN's Kinetics feeder does not centre on a joint: it subtracts 0.5 from the
 *    normalised x and y and zeroes joints whose score is 0; that is no skelnorm option.
 *  - Dividing by a bone length (a torso or shoulder width) makes the input independent of
 *    the person's size and distance to the camera; use it only when the training data was
 *    normalised so, with the same joints.
 * A joint is given when any of its coordinates is nonzero, as skelrows leaves joints that are
 * missing all zero. Per person: a person with no joint given is left alone (all zero); one
 * whose root is not given is left as it is and counted (uncentred); otherwise each given
 * joint's coordinates become (p - root) / length, the root itself 0, missing joints staying
 * 0. The length is the distance between joints bone_from and bone_to over the coordinate
 * channels; when either is not given or the length is <= SKELNORM_MIN_BONE the person is only
 * centred and counted (unscaled). The score channel is never changed.
 *
 * skelnorm_apply is reentrant: it touches only the frame and the counts it is given.
 */
#ifndef CIN_SKELNORM_H
#define CIN_SKELNORM_H

#include <stdint.h>

#include "error.h"

/* Bone lengths at most this leave the person unscaled. */
#define SKELNORM_MIN_BONE 1e-6f

typedef struct skelnorm_opts {
    int c, with_score, v, m;   /* the frame's layout, as in skelrows_opts */
    int root;                  /* joint each person is centred on; -1: no centring */
    int bone_from, bone_to;    /* joints whose distance divides; both -1: no scaling */
} skelnorm_opts;

/* Persons counted by skelnorm_apply, added to over calls. */
typedef struct skelnorm_counts {
    int64_t uncentred;         /* had joints but not the root: left as they were */
    int64_t unscaled;          /* not scaled: a bone end missing or the bone too short */
} skelnorm_counts;

/* Checks the layout (c 2 or 3, with_score 0 or 1, v and m >= 1) and that root, bone_from and
 * bone_to are -1 or joints in 0..v-1, bone_from and bone_to both -1 or both not and distinct.
 * Returns 0 or CIN_E_INVAL with a message naming the field. */
int skelnorm_check(const skelnorm_opts *o, cin_err *err);

/* Normalises frame [c + with_score][v][m] in place as described above, adding to *counts.
 * o must have passed skelnorm_check. */
void skelnorm_apply(const skelnorm_opts *o, float *frame, skelnorm_counts *counts);

#endif
