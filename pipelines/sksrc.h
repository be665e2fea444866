/* The skeleton source of a pipeline: a sequence file (npy [T][C][V][M], NTU RGB+D .skeleton,
 * BVH) or live rows (JSON lines or CSV from a file, stdin or a local socket), normalised as
 * configured and handed over as the model's frames [C][1][M * V]. It checks the source's
 * channels, joints and persons against the model's before the first frame.
 *
 *     sksrc *src;
 *     if (sksrc_open(&opts, &src, &err) != 0)
 *         return err.code;                        // names the file and what was expected
 *     while ((r = sksrc_read(src, frame, &index, &pts, &err)) == 1)
 *         step(frame);
 *     sksrc_close(src);
 */
#ifndef CIN_SKSRC_H
#define CIN_SKSRC_H

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

typedef void (*sksrc_warn_fn)(void *user, const char *msg);

typedef struct sksrc_opts {
    const char *uri;
    pipe_format format;
    int channels, joints, persons;  /* the model's frame */
    int score;                      /* live rows: the last channel is the confidence score */
    double fps;                     /* BVH: resample to it; 0 keeps the file's rate; the
                                       rate of pts for the others (0: 30, Kinect's) */
    int centre_joint;               /* -1: none */
    int scale_bone[2];              /* -1, -1: none */
    sksrc_warn_fn warn;             /* malformed live rows; may be NULL */
    void *warn_user;
    const atomic_int *stop;    /* live rows: as lines_opts.stop; may be NULL */
    double open_timeout;            /* live rows: as lines_opts; 0: no limit */
    double read_timeout;            /* live rows: as lines_opts; 0: no limit */
} sksrc_opts;

typedef struct sksrc sksrc;

/* Opens and, for files, reads the whole sequence. CIN_E_SHAPE when the source's channels or
 * joints differ from the model's, or it has more persons than the model takes (a sequence
 * with fewer is padded with absent persons); the readers' errors otherwise. */
int sksrc_open(const sksrc_opts *o, sksrc **out, cin_err *err);

/* 1 with the next model frame [channels][1][persons * joints], its index and its time in
 * seconds; 0 at the end; < 0 on a read error. */
int sksrc_read(sksrc *s, float *frame, int64_t *index, double *pts, cin_err *err);

/* Values set to 0: NaN, infinite or missing (live rows count joints of absent or extra
 * persons too). */
int64_t sksrc_masked(const sksrc *s);
/* Persons in frames that normalisation left uncentred (no root joint) or unscaled (no
 * bone). */
int64_t sksrc_unnormalised(const sksrc *s);
/* Live rows skipped: malformed, or late (their frame had passed). */
int64_t sksrc_skipped(const sksrc *s);

void sksrc_close(sksrc *s);

#endif
