/* Skeleton sources: every format ends as a frame [c][v][m] (io's layout), which is
 * normalised and then laid out for the model, persons side by side. */
#include "sksrc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bvh.h"
#include "npy.h"
#include "ntu.h"
#include "skel.h"
#include "skelnorm.h"
#include "skelrows.h"

struct sksrc {
    sksrc_opts o;
    char *uri;
    skel_seq seq;           /* a file, read whole */
    skelrows_src *rows;     /* or live rows */
    int64_t next;
    double rate;            /* frames per second, for pts */
    float *frame;           /* [c][v][m] of the source */
    skelnorm_opts norm;
    skelnorm_counts norm_counts;
    int normalise;
};

static int check_layout(const sksrc *s, int c, int v, int m, cin_err *err)
{
    const sksrc_opts *o = &s->o;
    if (c == o->channels && v == o->joints && m <= o->persons && m >= 1)
        return 0;
    return cin_err_set(err, CIN_E_SHAPE, "%s: skeletons of %d values x %d joints x %d "
                       "persons, but the model takes %d values x %d joints x at most %d "
                       "persons", s->uri, c, v, m, o->channels, o->joints, o->persons);
}

/* npy [T][C][V][M], the layout ST-GCN's data files have per sample. */
static int open_npy(sksrc *s, cin_err *err)
{
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    float *data;
    int rc = npy_read_f32(s->uri, &ndim, shape, &data, err);
    if (rc)
        return rc;
    int ok = ndim == 4 && shape[1] < 64 && shape[2] < 65536 && shape[3] < 64;
    if (!ok) {
        char found[128] = "";
        for (int d = 0; d < ndim; d++)
            snprintf(found + strlen(found), sizeof found - strlen(found), "%s%lld",
                     d ? ", " : "", (long long)shape[d]);
        free(data);
        return cin_err_set(err, CIN_E_SHAPE, "%s: a skeleton array is [frames, values, joints, "
                           "persons] (values and persons under 64), found [%s]", s->uri, found);
    }
    s->seq = (skel_seq){.t = (int)shape[0], .c = (int)shape[1], .v = (int)shape[2],
                        .m = (int)shape[3], .data = data};
    skel_seq_mask(&s->seq);
    return 0;
}

/* BVH: joint positions resampled to preprocess.fps, or at the file's own rate. */
static int open_bvh(sksrc *s, cin_err *err)
{
    bvh_info info;
    int rc = bvh_read_ex(s->uri, s->o.fps, &s->seq, &info, err);
    if (rc == 0 && s->o.fps <= 0)
        s->rate = 1.0 / info.frame_time;
    bvh_info_free(&info);
    return rc;
}

static int open_file(sksrc *s, cin_err *err)
{
    const sksrc_opts *o = &s->o;
    int rc;
    s->rate = o->fps > 0 ? o->fps : 30.0;
    if (o->format == PIPE_FORMAT_NPY)
        rc = open_npy(s, err);
    else if (o->format == PIPE_FORMAT_NTU)
        rc = ntu_read(s->uri, o->persons, &s->seq, err);
    else
        rc = open_bvh(s, err);
    return rc ? rc : check_layout(s, s->seq.c, s->seq.v, s->seq.m, err);
}

static int open_rows(sksrc *s, cin_err *err)
{
    const sksrc_opts *o = &s->o;
    skelrows_opts ro = {.uri = s->uri, .c = o->channels - o->score, .with_score = o->score,
                        .v = o->joints, .m = o->persons, .warn = o->warn,
                        .warn_user = o->warn_user, .stop = o->stop,
                        .open_timeout = o->open_timeout, .read_timeout = o->read_timeout,
                        .format = o->format == PIPE_FORMAT_CSV ? SKELROWS_CSV : SKELROWS_JSONL};
    s->rate = o->fps > 0 ? o->fps : 30.0;
    if (ro.c < 2 || ro.c > 3)
        return cin_err_set(err, CIN_E_SHAPE, "%s: live skeleton rows give x, y[, z] and "
                           "optionally a score; the model takes %d values per joint", s->uri,
                           o->channels);
    s->seq = (skel_seq){.c = o->channels, .v = o->joints, .m = o->persons};
    return skelrows_open(&ro, &s->rows, err);
}

static int setup_norm(sksrc *s, cin_err *err)
{
    const sksrc_opts *o = &s->o;
    int score = s->rows ? o->score : 0;
    s->normalise = o->centre_joint >= 0 || o->scale_bone[0] >= 0;
    s->norm = (skelnorm_opts){.c = s->seq.c - score, .with_score = score, .v = s->seq.v,
                              .m = s->seq.m, .root = o->centre_joint,
                              .bone_from = o->scale_bone[0], .bone_to = o->scale_bone[1]};
    if (!s->normalise)
        return 0;
    int rc = skelnorm_check(&s->norm, err);
    return rc ? cin_err_wrap(err, rc, "%s: preprocess", s->uri) : 0;
}

int sksrc_open(const sksrc_opts *o, sksrc **out, cin_err *err)
{
    *out = NULL;
    sksrc *s = calloc(1, sizeof *s);
    if (!s || !(s->uri = strdup(o->uri))) {
        free(s);
        return cin_err_set(err, CIN_E_NOMEM, "skeleton source: out of memory");
    }
    s->o = *o;
    s->o.uri = s->uri;
    int live = o->format == PIPE_FORMAT_JSONL || o->format == PIPE_FORMAT_CSV;
    int rc = live ? open_rows(s, err) : open_file(s, err);
    rc = rc ? rc : setup_norm(s, err);
    if (!rc && !(s->frame = malloc(sizeof(float) * s->seq.c * s->seq.v * s->seq.m)))
        rc = cin_err_set(err, CIN_E_NOMEM, "skeleton source: out of memory");
    if (rc) {
        sksrc_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* [c][v][m] of the source (m <= persons) -> [c][1][persons * joints], absent persons 0. */
static void lay_out(const sksrc *s, float *frame)
{
    int nc = s->seq.c, nv = s->seq.v, nm = s->seq.m, np = s->o.persons;
    memset(frame, 0, sizeof(float) * nc * nv * np);
    for (int c = 0; c < nc; c++)
        for (int v = 0; v < nv; v++)
            for (int m = 0; m < nm; m++)
                frame[((size_t)c * np + m) * nv + v] = s->frame[((size_t)c * nv + v) * nm + m];
}

int sksrc_read(sksrc *s, float *frame, int64_t *index, double *pts, cin_err *err)
{
    size_t n = (size_t)s->seq.c * s->seq.v * s->seq.m;
    if (s->rows) {
        int rc = skelrows_read(s->rows, s->frame, index, err);
        if (rc != 1)
            return rc;
    } else {
        if (s->next >= s->seq.t)
            return 0;
        *index = s->next;
        memcpy(s->frame, s->seq.data + (size_t)s->next++ * n, sizeof(float) * n);
    }
    if (s->normalise)
        skelnorm_apply(&s->norm, s->frame, &s->norm_counts);
    lay_out(s, frame);
    *pts = (double)*index / s->rate;
    return 1;
}

int64_t sksrc_masked(const sksrc *s)
{
    return s->rows ? skelrows_masked(s->rows) : s->seq.masked;
}

int64_t sksrc_unnormalised(const sksrc *s)
{
    return s->norm_counts.uncentred + s->norm_counts.unscaled;
}

int64_t sksrc_skipped(const sksrc *s)
{
    if (!s->rows)
        return 0;
    skelrows_stats st;
    skelrows_get_stats(s->rows, &st);
    return st.skipped + st.late_lines;
}

void sksrc_close(sksrc *s)
{
    if (!s)
        return;
    skelrows_close(s->rows);
    skel_seq_free(&s->seq);
    free(s->frame);
    free(s->uri);
    free(s);
}
