/* X3D (Feichtenhofer, CVPR 2020) and its continual form CoX3D (Hedegaard & Iosifidis, 2022),
 * built from checkpoints under either published naming: pytorchvideo's (blocks.N...) or
 * SlowFast's, which co3d uses (s1.pathway0_stem..., sN.pathway0_resK...). */
#ifndef CIN_X3D_H
#define CIN_X3D_H

#include "model.h"
#include "weights.h"

typedef enum { X3D_PYTORCHVIDEO, X3D_SLOWFAST } x3d_layout;

typedef struct x3d_opts {
    const char *size;     /* "xs", "s", "m", "l" */
    int crop;             /* 0: the size's */
    int pool_window;      /* 0: the size's clip length, as co3d */
    int se_window;        /* 0: 1 (per-frame squeeze-excitation, co3d's default) */
    int num_classes;      /* 0: from the checkpoint, or 400 */
    int features;         /* 1: end before the classifier (2048 features per output) */
} x3d_opts;

/* Called with every tensor the builder reads, in order; for tests and tools. */
typedef void (*x3d_visit_fn)(void *user, const char *name, int ndim, const int64_t *shape);

/* Finds the layout from the checkpoint's names; seeded weights use pytorchvideo's names. */
int x3d_detect_layout(const wsrc *w, x3d_layout *out, cin_err *err);

int x3d_build(const x3d_opts *o, wsrc *w, x3d_layout layout, x3d_visit_fn visit,
              void *visit_user, cin_node **root, int *clip_frames, cin_err *err);

#endif
