/* Skeleton frame normalisation (see skelnorm.h): per person, centre on a root joint and divide
 * by a bone length, skipping joints that are missing (all coordinates zero). */
#include "skelnorm.h"

#include <math.h>
#include <stddef.h>

/* The frame's coordinates of one person: coord(ch, j) = base[ch * plane + j * m]. */
typedef struct skelnorm_person {
    float *base;
    int c, v;
    size_t m, plane;
} skelnorm_person;

static float *skelnorm_at(const skelnorm_person *p, int ch, int j)
{
    return p->base + (size_t)ch * p->plane + (size_t)j * p->m;
}

static int skelnorm_given(const skelnorm_person *p, int j)
{
    for (int ch = 0; ch < p->c; ch++)
        if (*skelnorm_at(p, ch, j) != 0.0f)
            return 1;
    return 0;
}

static int skelnorm_any_given(const skelnorm_person *p)
{
    for (int j = 0; j < p->v; j++)
        if (skelnorm_given(p, j))
            return 1;
    return 0;
}

/* 1 / the bone length, or 0 if an end is missing or the length is too short. */
static float skelnorm_inv_bone(const skelnorm_person *p, int from, int to)
{
    if (!skelnorm_given(p, from) || !skelnorm_given(p, to))
        return 0.0f;
    double sq = 0.0;
    for (int ch = 0; ch < p->c; ch++) {
        double d = (double)*skelnorm_at(p, ch, to) - (double)*skelnorm_at(p, ch, from);
        sq += d * d;
    }
    double len = sqrt(sq);
    return len > SKELNORM_MIN_BONE ? (float)(1.0 / len) : 0.0f;
}

/* Every given joint: (coord - origin) * scale. */
static void skelnorm_transform(const skelnorm_person *p, const float *origin, float scale)
{
    for (int j = 0; j < p->v; j++) {
        if (!skelnorm_given(p, j))
            continue;
        for (int ch = 0; ch < p->c; ch++) {
            float *x = skelnorm_at(p, ch, j);
            *x = (*x - origin[ch]) * scale;
        }
    }
}

static void skelnorm_person_apply(const skelnorm_opts *o, const skelnorm_person *p,
                                  skelnorm_counts *counts)
{
    if (!skelnorm_any_given(p))
        return;
    float origin[3] = {0.0f, 0.0f, 0.0f};
    if (o->root >= 0 && !skelnorm_given(p, o->root)) {
        counts->uncentred++;
        return;
    }
    for (int ch = 0; o->root >= 0 && ch < p->c; ch++)
        origin[ch] = *skelnorm_at(p, ch, o->root);
    float scale = 1.0f;
    if (o->bone_from >= 0) {
        float inv = skelnorm_inv_bone(p, o->bone_from, o->bone_to);
        counts->unscaled += inv == 0.0f;
        scale = inv == 0.0f ? 1.0f : inv;
    }
    skelnorm_transform(p, origin, scale);
}

void skelnorm_apply(const skelnorm_opts *o, float *frame, skelnorm_counts *counts)
{
    for (int m = 0; m < o->m; m++) {
        skelnorm_person p = {.base = frame + m, .c = o->c, .v = o->v, .m = (size_t)o->m,
                             .plane = (size_t)o->v * (size_t)o->m};
        skelnorm_person_apply(o, &p, counts);
    }
}

static int skelnorm_check_joint(const skelnorm_opts *o, const char *field, int j,
                                cin_err *err)
{
    if (j < -1 || j >= o->v)
        return cin_err_set(err, CIN_E_INVAL, "skeleton normalisation: %s is %d, not -1 or a "
                           "joint in 0..%d", field, j, o->v - 1);
    return 0;
}

int skelnorm_check(const skelnorm_opts *o, cin_err *err)
{
    if ((o->c != 2 && o->c != 3) || (o->with_score != 0 && o->with_score != 1) || o->v < 1 ||
        o->m < 1)
        return cin_err_set(err, CIN_E_INVAL, "skeleton normalisation: layout c %d, "
                           "with_score %d, v %d, m %d is not c 2 or 3, with_score 0 or 1, "
                           "v and m >= 1", o->c, o->with_score, o->v, o->m);
    int rc = skelnorm_check_joint(o, "root", o->root, err);
    if (!rc)
        rc = skelnorm_check_joint(o, "bone_from", o->bone_from, err);
    if (!rc)
        rc = skelnorm_check_joint(o, "bone_to", o->bone_to, err);
    if (!rc && ((o->bone_from < 0) != (o->bone_to < 0) ||
                (o->bone_from >= 0 && o->bone_from == o->bone_to)))
        rc = cin_err_set(err, CIN_E_INVAL, "skeleton normalisation: bone_from %d and bone_to "
                         "%d are not two distinct joints, nor both -1", o->bone_from,
                         o->bone_to);
    return rc;
}
