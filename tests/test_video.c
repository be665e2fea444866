/* Tests for io/video: frame counts on the real clips in media/, colours checked against clips the
 * test encodes itself with libavcodec (known values, several pixel formats, odd sizes) and against
 * a per-pixel conversion done here, crop geometry, frame-rate sampling, and bad or damaged input.
 * Runs with cwd = tests/. Colour tolerances are in 8-bit levels, stated per test. */
#include "video.h"
#include "util.h"

#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/log.h>
#include <libavutil/pixdesc.h>

#define VT_MAX_FRAMES 100000 /* bound on every read loop: a stuck source fails, never hangs */
#define VT_MAX_INFO 512

/* ---- reading through video_src ---- */

/* mean 0, std 1: outputs are rgb / 255, easy to compare with 8-bit levels. */
static video_opts vt_opts(const char *uri, double fps, int resize, int crop)
{
    video_opts o = {.uri = uri, .fps = fps, .resize = resize, .crop = crop, .mean = {0, 0, 0},
                    .std = {1, 1, 1}};
    return o;
}

typedef struct vt_run {
    int64_t frames;
    int status;                        /* last return of video_open / video_read */
    int64_t damaged;
    video_frame_info info[VT_MAX_INFO]; /* the first VT_MAX_INFO frames */
    double mean[3];                    /* per channel, over the first frame */
    cin_err err;
} vt_run;

static void vt_channel_mean(const float *f, int crop, double mean[3])
{
    size_t plane = (size_t)crop * crop;
    for (int c = 0; c < 3; c++) {
        double s = 0;
        for (size_t i = 0; i < plane; i++)
            s += f[c * plane + i];
        mean[c] = s / (double)plane;
    }
}

/* Reads every frame of o into r (allocated by the caller: it is large). */
static void vt_read_all(const video_opts *o, vt_run *r)
{
    memset(r, 0, sizeof *r);
    video_src *v = NULL;
    r->status = video_open(o, &v, &r->err);
    if (r->status < 0)
        return;
    float *f = malloc(sizeof(float) * 3 * o->crop * o->crop);
    video_frame_info info;
    while (r->frames < VT_MAX_FRAMES && (r->status = video_read(v, f, &info, &r->err)) == 1) {
        if (r->frames == 0)
            vt_channel_mean(f, o->crop, r->mean);
        if (r->frames < VT_MAX_INFO)
            r->info[r->frames] = info;
        r->frames++;
    }
    r->damaged = video_damaged(v);
    video_close(v);
    free(f);
}

static int64_t vt_count(const char *uri, double fps)
{
    vt_run *r = malloc(sizeof *r);
    video_opts o = vt_opts(uri, fps, 64, 64);
    vt_read_all(&o, r);
    int64_t n = r->status < 0 ? r->status : r->frames;
    free(r);
    return n;
}

/* ---- writing test clips with libavcodec ---- */

typedef struct vt_clip {
    enum AVCodecID codec;
    enum AVPixelFormat pix_fmt;
    int w, h;
    int frames;
    int rate;                /* frames per second; the encoder's time base is 1 / rate */
    enum AVColorRange range; /* tag written to the container (0: none) */
    enum AVColorSpace space; /* idem */
    int ramp;                /* 0: every pixel holds val; 1 (packed RGB): R = 2x, G = 3y, B = val */
    int val[3];              /* per component (Y, U, V or R, G, B or Y), in the format's depth */
} vt_clip;

static int vt_value(const vt_clip *c, int comp, int x, int y)
{
    if (!c->ramp)
        return c->val[comp];
    return comp == 0 ? 2 * x : comp == 1 ? 3 * y : c->val[2];
}

static void vt_fill(AVFrame *f, const vt_clip *c)
{
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(c->pix_fmt);
    for (int k = 0; k < d->nb_components; k++) {
        const AVComponentDescriptor *cd = &d->comp[k];
        int sub = (k == 1 || k == 2) && !(d->flags & AV_PIX_FMT_FLAG_RGB);
        int w = sub ? AV_CEIL_RSHIFT(c->w, d->log2_chroma_w) : c->w;
        int h = sub ? AV_CEIL_RSHIFT(c->h, d->log2_chroma_h) : c->h;
        for (int y = 0; y < h; y++) {
            uint8_t *row = f->data[cd->plane] + (size_t)y * f->linesize[cd->plane];
            for (int x = 0; x < w; x++) {
                uint8_t *p = row + (size_t)x * cd->step + cd->offset;
                int v = vt_value(c, k, x, y);
                p[0] = (uint8_t)(v & 255);
                if (cd->depth > 8)
                    p[1] = (uint8_t)(v >> 8); /* the deep formats used here are little-endian */
            }
        }
    }
}

static AVCodecContext *vt_encoder(const vt_clip *c, AVRational sar, int global_header)
{
    const AVCodec *codec = avcodec_find_encoder(c->codec);
    AVCodecContext *enc = codec ? avcodec_alloc_context3(codec) : NULL;
    if (!enc)
        return NULL;
    enc->width = c->w;
    enc->height = c->h;
    enc->pix_fmt = c->pix_fmt;
    enc->time_base = (AVRational){1, c->rate};
    enc->framerate = (AVRational){c->rate, 1};
    enc->color_range = c->range;
    enc->colorspace = c->space;
    enc->sample_aspect_ratio = sar;
    enc->gop_size = 5;
    enc->flags |= AV_CODEC_FLAG_QSCALE; /* lossy codecs at their finest quantiser */
    enc->global_quality = FF_QP2LAMBDA;
    if (global_header)
        enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (avcodec_open2(enc, codec, NULL) < 0)
        avcodec_free_context(&enc);
    return enc;
}

/* Sends f (NULL: flush) and writes every packet the encoder has ready. */
static int vt_encode(AVFormatContext *oc, AVCodecContext *enc, AVFrame *f, AVPacket *pkt)
{
    int r = avcodec_send_frame(enc, f);
    while (r >= 0) {
        r = avcodec_receive_packet(enc, pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
            return 0;
        if (r < 0)
            return r;
        av_packet_rescale_ts(pkt, enc->time_base, oc->streams[0]->time_base);
        pkt->stream_index = 0;
        r = av_interleaved_write_frame(oc, pkt);
    }
    return r;
}

static int vt_write_frames(AVFormatContext *oc, AVCodecContext *enc, const vt_clip *c)
{
    AVFrame *f = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    int r = f && pkt ? 0 : -1;
    if (r == 0) {
        f->format = c->pix_fmt;
        f->width = c->w;
        f->height = c->h;
        r = av_frame_get_buffer(f, 0);
    }
    for (int i = 0; r >= 0 && i < c->frames; i++) {
        r = av_frame_make_writable(f);
        vt_fill(f, c);
        f->pts = i;
        f->quality = enc->global_quality;
        if (r >= 0)
            r = vt_encode(oc, enc, f, pkt);
    }
    if (r >= 0)
        r = vt_encode(oc, enc, NULL, pkt);
    av_packet_free(&pkt);
    av_frame_free(&f);
    return r;
}

/* Encodes clip c into path; the container comes from the file name. A display matrix, when
 * given, goes into the stream's side data; a sample aspect ratio other than {0, 0} (unknown)
 * is written to the stream and the codec. Returns 0 on success. */
static int vt_write_clip_tagged(const vt_clip *c, const char *path, const int32_t *matrix,
                                AVRational sar)
{
    AVFormatContext *oc = NULL;
    if (avformat_alloc_output_context2(&oc, NULL, NULL, path) < 0)
        return -1;
    AVCodecContext *enc = vt_encoder(c, sar, oc->oformat->flags & AVFMT_GLOBALHEADER);
    AVStream *st = enc ? avformat_new_stream(oc, NULL) : NULL;
    int r = st ? avcodec_parameters_from_context(st->codecpar, enc) : -1;
    if (r >= 0) {
        st->time_base = enc->time_base;
        st->sample_aspect_ratio = sar;
        r = avio_open(&oc->pb, path, AVIO_FLAG_WRITE);
    }
    uint8_t *sd = r >= 0 && matrix ? av_stream_new_side_data(st, AV_PKT_DATA_DISPLAYMATRIX,
                                                             9 * sizeof(int32_t)) : NULL;
    if (sd)
        memcpy(sd, matrix, 9 * sizeof(int32_t));
    if (r >= 0)
        r = avformat_write_header(oc, NULL);
    if (r >= 0)
        r = vt_write_frames(oc, enc, c);
    if (r >= 0)
        r = av_write_trailer(oc);
    avio_closep(&oc->pb);
    avcodec_free_context(&enc);
    avformat_free_context(oc);
    return r < 0 ? -1 : 0;
}

static int vt_write_clip(const vt_clip *c, const char *path)
{
    return vt_write_clip_tagged(c, path, NULL, (AVRational){0, 0});
}

/* ---- independent colour conversion ---- */

/* YCbCr (8-bit scale) -> RGB levels, unclipped, from the definitions Y = kr R + kg G + kb B,
 * Cb = (B - Y) / (2 (1 - kb)), Cr = (R - Y) / (2 (1 - kr)); limited range is 16..235 / 16..240. */
static void vt_yuv_to_rgb(double y, double u, double v, int full, int bt709, double rgb[3])
{
    double kr = bt709 ? 0.2126 : 0.299, kb = bt709 ? 0.0722 : 0.114, kg = 1 - kr - kb;
    double yy = full ? y : (y - 16) * 255.0 / 219.0;
    double cb = (u - 128) * (full ? 1.0 : 255.0 / 224.0);
    double cr = (v - 128) * (full ? 1.0 : 255.0 / 224.0);
    rgb[0] = yy + 2 * (1 - kr) * cr;
    rgb[2] = yy + 2 * (1 - kb) * cb;
    rgb[1] = (yy - kr * rgb[0] - kb * rgb[2]) / kg;
}

static double vt_clamp255(double x)
{
    return x < 0 ? 0 : x > 255 ? 255 : x;
}

/* Mean RGB over [x0, x0 + n) x [y0, y0 + n) of an 8-bit planar YUV frame, each pixel converted
 * with its co-sited chroma sample and clipped as an 8-bit RGB image would be. */
static void vt_frame_mean(const AVFrame *f, int x0, int y0, int n, double mean[3])
{
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
    int full = f->color_range == AVCOL_RANGE_JPEG || f->format == AV_PIX_FMT_YUVJ420P ||
               f->format == AV_PIX_FMT_YUVJ422P || f->format == AV_PIX_FMT_YUVJ444P;
    int bt709 = f->colorspace == AVCOL_SPC_BT709;
    double sum[3] = {0, 0, 0};
    for (int y = y0; y < y0 + n; y++) {
        for (int x = x0; x < x0 + n; x++) {
            int cx = x >> d->log2_chroma_w, cy = y >> d->log2_chroma_h;
            double rgb[3];
            vt_yuv_to_rgb(f->data[0][y * f->linesize[0] + x], f->data[1][cy * f->linesize[1] + cx],
                          f->data[2][cy * f->linesize[2] + cx], full, bt709, rgb);
            for (int c = 0; c < 3; c++)
                sum[c] += vt_clamp255(rgb[c]);
        }
    }
    for (int c = 0; c < 3; c++)
        mean[c] = sum[c] / ((double)n * n);
}

/* Decodes the first frame of path here, without video_src; returns 0 on success. */
static int vt_direct_mean(const char *path, int x0, int y0, int n, double mean[3])
{
    AVFormatContext *fmt = NULL;
    const AVCodec *codec = NULL;
    AVCodecContext *dec = NULL;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *f = av_frame_alloc();
    int got = 0, s = -1;
    if (avformat_open_input(&fmt, path, NULL, NULL) == 0 &&
        avformat_find_stream_info(fmt, NULL) >= 0)
        s = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (s >= 0 && (dec = avcodec_alloc_context3(codec)) &&
        avcodec_parameters_to_context(dec, fmt->streams[s]->codecpar) >= 0 &&
        avcodec_open2(dec, codec, NULL) == 0) {
        while (!got && av_read_frame(fmt, pkt) >= 0) {
            if (pkt->stream_index == s && avcodec_send_packet(dec, pkt) >= 0)
                got = avcodec_receive_frame(dec, f) == 0;
            av_packet_unref(pkt);
        }
        if (!got && avcodec_send_packet(dec, NULL) >= 0)
            got = avcodec_receive_frame(dec, f) == 0;
    }
    if (got)
        vt_frame_mean(f, x0, y0, n, mean);
    av_frame_free(&f);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    return got ? 0 : -1;
}

/* ---- files ---- */

static size_t vt_load(const char *path, unsigned char **data)
{
    FILE *fp = fopen(path, "rb");
    *data = NULL;
    if (!fp)
        return 0;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *data = malloc(n > 0 ? (size_t)n : 1);
    size_t got = n > 0 ? fread(*data, 1, (size_t)n, fp) : 0;
    fclose(fp);
    return got;
}

/* Copies the first `keep` bytes of src (all if 0) to dst, overwriting `len` bytes from the
 * middle with a fixed pattern. Returns 0 on success. */
static int vt_copy_damaged(const char *src, const char *dst, size_t keep, size_t len)
{
    unsigned char *d;
    size_t n = vt_load(src, &d);
    if (n == 0) {
        free(d);
        return -1;
    }
    if (keep && keep < n)
        n = keep;
    for (size_t i = n / 2; i < n / 2 + len && i < n; i++)
        d[i] = (unsigned char)(i * 7 + 3);
    int r = tu_write_file(dst, d, n);
    free(d);
    return r;
}

/* ---- tests: real clips ---- */

static const struct {
    const char *path;
    int64_t frames; /* as in media/SOURCES.md */
} vt_clips[] = {
    {"media/imageio__realshort.mp4", 36},
    {"media/kphotoalbum__movie.avi", 68},
    {"media/mecavideo__balle-jbart.mp4", 255},
    {"media/mimetype__webm.webm", 166},
    {"media/sage__example.avi", 2},
    {"media/sage__example.mp4", 2},
    {"media/sage__example.webm", 2},
    {"media/forensics-samples__VID_20191220_170832.mp4", 41},
};

static void test_every_frame_is_read_including_those_held_in_the_decoder(void)
{
    for (size_t i = 0; i < sizeof vt_clips / sizeof vt_clips[0]; i++) {
        int64_t n = vt_count(vt_clips[i].path, 0);
        if (n != vt_clips[i].frames)
            fprintf(stderr, "\n%s: %lld frames, expected %lld\n", vt_clips[i].path,
                    (long long)n, (long long)vt_clips[i].frames);
        CU_ASSERT_EQUAL(n, vt_clips[i].frames);
    }
}

/* The project's shared media, beside the checkout in development and CI (not in a user's
 * clone): vtest.avi (msmpeg4v3, 795 frames) is not copied into media/ for its 8 MB. */
#define VT_SHARED "../../shared/media/video/"

static void test_every_frame_of_the_shared_media_is_read(void)
{
    static const struct {
        const char *name;
        int64_t frames;
    } clips[] = {{"opencv-doc__vtest.avi", 795}, {"imageio__realshort.mp4", 36},
                 {"mimetype__webm.webm", 166}, {"kphotoalbum__movie.avi", 68}};
    if (access(VT_SHARED, R_OK) != 0) {
        fprintf(stderr, "\n    no %s beside the checkout: shared clips not read ", VT_SHARED);
        return;
    }
    for (size_t i = 0; i < sizeof clips / sizeof clips[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, VT_SHARED "%s", clips[i].name);
        int64_t n = vt_count(path, 0);
        if (n != clips[i].frames)
            fprintf(stderr, "\n%s: %lld frames, expected %lld\n", path, (long long)n,
                    (long long)clips[i].frames);
        CU_ASSERT_EQUAL(n, clips[i].frames);
    }
}

static void test_frame_info_counts_up_and_pts_increase(void)
{
    vt_run *r = malloc(sizeof *r);
    video_opts o = vt_opts("media/mecavideo__balle-jbart.mp4", 0, 32, 32);
    vt_read_all(&o, r);
    CU_ASSERT_EQUAL(r->status, 0);
    CU_ASSERT_EQUAL(r->frames, 255);
    for (int64_t i = 0; i < r->frames && i < VT_MAX_INFO; i++) {
        CU_ASSERT_EQUAL(r->info[i].index, i);
        CU_ASSERT_EQUAL(r->info[i].source_index, i);
        if (i > 0) /* 25 fps: 0.04 s apart, to the 1/12800 s time base */
            CU_ASSERT_DOUBLE_EQUAL(r->info[i].pts - r->info[i - 1].pts, 0.04, 1e-4);
    }
    free(r);
}

/* Normalised values must be finite and within [(0 - mean) / std, (1 - mean) / std]. */
static void vt_check_range(const char *path, int resize, int crop)
{
    video_opts o = {.uri = path, .resize = resize, .crop = crop,
                    .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}};
    video_src *v = NULL;
    cin_err err;
    CU_ASSERT_EQUAL_FATAL(video_open(&o, &v, &err), 0);
    size_t plane = (size_t)crop * crop;
    float *f = malloc(sizeof(float) * 3 * plane);
    int frames = 0, bad = 0;
    while (frames < VT_MAX_FRAMES && video_read(v, f, NULL, &err) == 1) {
        for (int c = 0; c < 3; c++) {
            float lo = (0 - o.mean[c]) / o.std[c], hi = (1 - o.mean[c]) / o.std[c];
            for (size_t i = 0; i < plane; i++)
                bad += !(f[c * plane + i] >= lo - 1e-5f && f[c * plane + i] <= hi + 1e-5f);
        }
        frames++;
    }
    CU_ASSERT(frames > 0);
    CU_ASSERT_EQUAL(bad, 0);
    video_close(v);
    free(f);
}

static void test_real_clip_values_are_finite_and_in_normalised_range(void)
{
    vt_check_range("media/sage__example.avi", 33, 33);
    vt_check_range("media/sage__example.mp4", 40, 31);
    vt_check_range("media/sage__example.webm", 17, 16);
    vt_check_range("media/kphotoalbum__movie.avi", 182, 160);
}

/* The first frame's mean colour over the crop against vt_direct_mean. resize = the source's short
 * side, so nothing is scaled and the crop is a known source region. Tolerance: 1 level of 255
 * (measured: 0.3 at most; chroma interpolation at the sharp edges of the sage curve). */
static void vt_check_mean(const char *path, int w, int h)
{
    int n = h < w ? h : w;
    vt_run *r = malloc(sizeof *r);
    video_opts o = vt_opts(path, 0, n, n);
    vt_read_all(&o, r);
    double want[3];
    CU_ASSERT_EQUAL_FATAL(vt_direct_mean(path, (w - n) / 2, (h - n) / 2, n, want), 0);
    CU_ASSERT(r->frames > 0);
    for (int c = 0; c < 3; c++) {
        if (fabs(r->mean[c] * 255 - want[c]) > 1.0)
            fprintf(stderr, "\n%s channel %d: mean %.2f, direct conversion %.2f\n", path, c,
                    r->mean[c] * 255, want[c]);
        CU_ASSERT_DOUBLE_EQUAL(r->mean[c] * 255, want[c], 1.0);
    }
    free(r);
}

static void test_real_clip_mean_colour_matches_a_direct_conversion(void)
{
    vt_check_mean("media/sage__example.mp4", 84, 33);      /* yuv444p, odd height */
    vt_check_mean("media/sage__example.avi", 84, 33);      /* yuv420p, odd height */
    vt_check_mean("media/sage__example.webm", 84, 33);     /* yuv420p, tagged BT.601 */
    vt_check_mean("media/kphotoalbum__movie.avi", 160, 120); /* yuvj422p, full range */
}

/* ---- tests: encoded clips with known colours ---- */

/* Every output pixel of every frame of c, at the given resize/crop, is expected +- tol levels. */
static void vt_check_solid(const vt_clip *c, const char *name, int resize, int crop,
                           const double want[3], double tol)
{
    const char *path = tu_tmp_path(name);
    CU_ASSERT_EQUAL_FATAL(vt_write_clip(c, path), 0);
    video_opts o = vt_opts(path, 0, resize, crop);
    video_src *v = NULL;
    cin_err err;
    CU_ASSERT_EQUAL_FATAL(video_open(&o, &v, &err), 0);
    size_t plane = (size_t)crop * crop;
    float *f = malloc(sizeof(float) * 3 * plane);
    int frames = 0;
    double worst = 0;
    while (frames < VT_MAX_FRAMES && video_read(v, f, NULL, &err) == 1) {
        for (int ch = 0; ch < 3; ch++) {
            for (size_t i = 0; i < plane; i++)
                worst = fmax(worst, fabs(f[ch * plane + i] * 255.0 - want[ch]));
        }
        frames++;
    }
    if (worst > tol)
        fprintf(stderr, "\n%s %dx%d -> %d/%d: off by %.2f levels (want %.1f %.1f %.1f)\n",
                name, c->w, c->h, resize, crop, worst, want[0], want[1], want[2]);
    CU_ASSERT_EQUAL(frames, c->frames);
    CU_ASSERT(worst <= tol);
    video_close(v);
    free(f);
}

/* Downscaled, unscaled and upscaled; odd sizes throughout. */
static void vt_check_solid_sizes(const vt_clip *c, const char *name, const double want[3],
                                 double tol)
{
    int s = c->w < c->h ? c->w : c->h;
    vt_check_solid(c, name, 9, 7, want, tol);
    vt_check_solid(c, name, s, s, want, tol);
    vt_check_solid(c, name, 2 * s + 1, 2 * s - 1, want, tol);
}

/* Tolerance 1 level of 255: the output is 8-bit RGB (0.5 from rounding) from swscale's fixed
 * point; measured 0.39 for every YUV case here, MJPEG's quantiser included, 0 for grey and RGB. */
static void test_yuv_sources_convert_with_their_range_and_matrix(void)
{
    vt_clip c = {AV_CODEC_ID_FFV1, AV_PIX_FMT_YUV420P, 37, 23, 3, 25, 0, 0, 0, {120, 100, 170}};
    double limited[3], full[3], bt709[3];
    vt_yuv_to_rgb(120, 100, 170, 0, 0, limited);
    vt_yuv_to_rgb(120, 100, 170, 1, 0, full);
    vt_yuv_to_rgb(120, 100, 170, 0, 1, bt709);
    vt_check_solid_sizes(&c, "yuv420p.mkv", limited, 1.0);

    c.pix_fmt = AV_PIX_FMT_YUV444P;
    c.w = 33, c.h = 17;
    vt_check_solid_sizes(&c, "yuv444p.mkv", limited, 1.0);

    c.pix_fmt = AV_PIX_FMT_YUV420P10LE;
    c.w = 37, c.h = 23;
    c.val[0] = 480, c.val[1] = 400, c.val[2] = 680; /* the same colour at 10 bits */
    vt_check_solid_sizes(&c, "yuv420p10le.mkv", limited, 1.0);

    c.pix_fmt = AV_PIX_FMT_YUV420P;
    c.val[0] = 120, c.val[1] = 100, c.val[2] = 170;
    c.range = AVCOL_RANGE_JPEG;
    vt_check_solid_sizes(&c, "yuv420p-full.mkv", full, 1.0);

    c.range = AVCOL_RANGE_UNSPECIFIED;
    c.space = AVCOL_SPC_BT709;
    vt_check_solid_sizes(&c, "yuv420p-bt709.mkv", bt709, 1.0);
}

static void test_yuvj_sources_are_full_range(void)
{
    vt_clip c = {AV_CODEC_ID_MJPEG, AV_PIX_FMT_YUVJ420P, 37, 23, 3, 25, AVCOL_RANGE_JPEG, 0, 0,
                 {120, 100, 170}};
    double full[3];
    vt_yuv_to_rgb(120, 100, 170, 1, 0, full);
    vt_check_solid_sizes(&c, "yuvj420p.avi", full, 1.0);
}

/* Every chroma layout swscale takes, 4:1:0 to 4:4:4, at sizes no subsampling divides: the
 * partial last chroma column and row must not leak into the picture. Tolerance as above. */
static void test_every_chroma_subsampling_converts_at_odd_sizes(void)
{
    static const struct {
        enum AVPixelFormat fmt;
        const char *name;
    } layouts[] = {
        {AV_PIX_FMT_YUV410P, "yuv410p.mkv"}, {AV_PIX_FMT_YUV411P, "yuv411p.mkv"},
        {AV_PIX_FMT_YUV420P, "yuv420p-odd.mkv"}, {AV_PIX_FMT_YUV422P, "yuv422p.mkv"},
        {AV_PIX_FMT_YUV440P, "yuv440p.mkv"}, {AV_PIX_FMT_YUV444P, "yuv444p-odd.mkv"},
    };
    double want[3];
    vt_yuv_to_rgb(120, 100, 170, 0, 0, want);
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        vt_clip c = {AV_CODEC_ID_FFV1, layouts[i].fmt, 39, 21, 3, 25, 0, 0, 0, {120, 100, 170}};
        vt_check_solid_sizes(&c, layouts[i].name, want, 1.0);
    }
}

/* The model sees the coded pixel grid: a clip tagged with non-square pixels (16:15, as PAL
 * 4:3 footage and media/mecavideo__balle-jbart.mp4 are) gives exactly what the same pixels
 * tagged square give (io/video.h says why). */
static void test_non_square_pixels_keep_the_coded_grid(void)
{
    vt_clip c = {AV_CODEC_ID_RAWVIDEO, AV_PIX_FMT_RGB24, 99, 61, 2, 25, 0, 0, 1, {0, 0, 50}};
    const char *square = tu_tmp_path("sar-1-1.nut"), *pal = tu_tmp_path("sar-16-15.nut");
    CU_ASSERT_EQUAL_FATAL(vt_write_clip(&c, square), 0);
    CU_ASSERT_EQUAL_FATAL(vt_write_clip_tagged(&c, pal, NULL, (AVRational){16, 15}), 0);
    AVFormatContext *fmt = NULL;
    CU_ASSERT_EQUAL_FATAL(avformat_open_input(&fmt, pal, NULL, NULL), 0);
    AVRational got = av_guess_sample_aspect_ratio(fmt, fmt->streams[0], NULL);
    CU_ASSERT(got.num == 16 && got.den == 15); /* the tag is really there */
    avformat_close_input(&fmt);

    vt_run *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    video_opts o = vt_opts(square, 0, 30, 20);
    vt_read_all(&o, a);
    o.uri = pal;
    vt_read_all(&o, b);
    CU_ASSERT_EQUAL(a->frames, 2);
    CU_ASSERT_EQUAL(b->frames, 2);
    for (int ch = 0; ch < 3; ch++)
        CU_ASSERT_DOUBLE_EQUAL(b->mean[ch], a->mean[ch], 1e-6);
    free(a);
    free(b);
}

static void test_grey_and_rgb_sources_convert_exactly(void)
{
    vt_clip grey = {AV_CODEC_ID_FFV1, AV_PIX_FMT_GRAY8, 35, 21, 3, 25, 0, 0, 0, {77, 0, 0}};
    double want_grey[3] = {77, 77, 77};
    vt_check_solid_sizes(&grey, "gray.mkv", want_grey, 1.0);

    vt_clip rgb = {AV_CODEC_ID_RAWVIDEO, AV_PIX_FMT_RGB24, 31, 19, 3, 25, 0, 0, 0, {200, 30, 90}};
    double want_rgb[3] = {200, 30, 90};
    vt_check_solid_sizes(&rgb, "rgb24.nut", want_rgb, 1.0);
}

static void test_normalisation_applies_mean_and_std_per_channel(void)
{
    vt_clip c = {AV_CODEC_ID_RAWVIDEO, AV_PIX_FMT_RGB24, 31, 19, 2, 25, 0, 0, 0, {200, 30, 90}};
    const char *path = tu_tmp_path("norm.nut");
    CU_ASSERT_EQUAL_FATAL(vt_write_clip(&c, path), 0);
    video_opts o = {.uri = path, .resize = 19, .crop = 19, .mean = {0.485f, 0.456f, 0.406f},
                    .std = {0.229f, 0.224f, 0.225f}};
    vt_run *r = malloc(sizeof *r);
    vt_read_all(&o, r);
    CU_ASSERT_EQUAL(r->frames, 2);
    for (int ch = 0; ch < 3; ch++) { /* an unscaled RGB source is copied exactly */
        double want = (c.val[ch] / 255.0 - o.mean[ch]) / o.std[ch];
        CU_ASSERT_DOUBLE_EQUAL(r->mean[ch], want, 1e-5);
    }
    free(r);
}

/* An unscaled ramp R = 2x, G = 3y shows where the crop was taken: (w - crop) / 2, rounded down. */
static void vt_check_crop(int w, int h, int crop)
{
    vt_clip c = {AV_CODEC_ID_RAWVIDEO, AV_PIX_FMT_RGB24, w, h, 1, 25, 0, 0, 1, {0, 0, 50}};
    const char *path = tu_tmp_path("ramp.nut");
    CU_ASSERT_EQUAL_FATAL(vt_write_clip(&c, path), 0);
    int s = w < h ? w : h;
    video_opts o = vt_opts(path, 0, s, crop);
    video_src *v = NULL;
    cin_err err;
    CU_ASSERT_EQUAL_FATAL(video_open(&o, &v, &err), 0);
    float *f = malloc(sizeof(float) * 3 * crop * crop);
    CU_ASSERT_EQUAL_FATAL(video_read(v, f, NULL, &err), 1);
    int x0 = (w - crop) / 2, y0 = (h - crop) / 2, bad = 0;
    size_t plane = (size_t)crop * crop;
    for (int y = 0; y < crop; y++) {
        for (int x = 0; x < crop; x++) {
            bad += fabsf(f[y * crop + x] * 255 - 2 * (x0 + x)) > 0.01f;
            bad += fabsf(f[plane + y * crop + x] * 255 - 3 * (y0 + y)) > 0.01f;
            bad += fabsf(f[2 * plane + y * crop + x] * 255 - 50) > 0.01f;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(video_read(v, f, NULL, &err), 0);
    video_close(v);
    free(f);
}

static void test_crop_is_centred_in_landscape_and_portrait_frames(void)
{
    vt_check_crop(65, 47, 30);
    vt_check_crop(47, 65, 30);
    vt_check_crop(64, 48, 48);
}

/* 99x61 scaled to 49x30 (99 * 30 / 61 = 48.7), crop 20 at (14, 5): output pixel centres map
 * back to source x = (x + 0.5) * 99 / 49 - 0.5, so the crop's mean R and G are the ramp at the
 * mapped crop centre, within 2 levels, and R rises by 2 * 99 / 49 levels per column. */
static void test_resize_keeps_aspect_and_crop_stays_centred(void)
{
    vt_clip c = {AV_CODEC_ID_RAWVIDEO, AV_PIX_FMT_RGB24, 99, 61, 1, 25, 0, 0, 1, {0, 0, 50}};
    const char *path = tu_tmp_path("ramp-scaled.nut");
    CU_ASSERT_EQUAL_FATAL(vt_write_clip(&c, path), 0);
    vt_run *r = malloc(sizeof *r);
    video_opts o = vt_opts(path, 0, 30, 20);
    vt_read_all(&o, r);
    CU_ASSERT_EQUAL(r->frames, 1);
    CU_ASSERT_DOUBLE_EQUAL(r->mean[0] * 255, 2 * ((14 + 10) * 99.0 / 49 - 0.5), 2.0);
    CU_ASSERT_DOUBLE_EQUAL(r->mean[1] * 255, 3 * ((5 + 10) * 61.0 / 30 - 0.5), 2.0);
    free(r);

    video_src *v = NULL;
    cin_err err;
    float f[3 * 20 * 20];
    CU_ASSERT_EQUAL_FATAL(video_open(&o, &v, &err), 0);
    CU_ASSERT_EQUAL(video_read(v, f, NULL, &err), 1);
    for (int x = 1; x < 20; x++)
        CU_ASSERT_DOUBLE_EQUAL((f[10 * 20 + x] - f[10 * 20 + x - 1]) * 255, 2 * 99.0 / 49, 1.0);
    video_close(v);
}

/* ---- tests: frame-rate sampling ---- */

/* Reference rule: output k is the first frame at or after k / fps from the first frame. */
static int64_t vt_expected_samples(const vt_run *all, double fps, int64_t *pick, int64_t cap)
{
    int64_t n = 0, k = 0;
    for (int64_t i = 0; i < all->frames && i < VT_MAX_INFO; i++) {
        double t = all->info[i].pts - all->info[0].pts;
        if (t < k / fps - 1e-6)
            continue;
        if (n < cap)
            pick[n] = i;
        n++;
        while (k / fps - 1e-6 <= t)
            k++;
    }
    return n;
}

static void vt_check_sampling(const char *path, double fps)
{
    vt_run *all = malloc(sizeof *all), *some = malloc(sizeof *some);
    video_opts o = vt_opts(path, 0, 16, 16);
    vt_read_all(&o, all);
    o.fps = fps;
    vt_read_all(&o, some);
    int64_t pick[VT_MAX_INFO];
    int64_t n = vt_expected_samples(all, fps, pick, VT_MAX_INFO);
    CU_ASSERT_EQUAL(some->status, 0);
    CU_ASSERT_EQUAL(some->frames, n);
    for (int64_t i = 0; i < n && i < some->frames; i++) {
        CU_ASSERT_EQUAL(some->info[i].index, i);
        CU_ASSERT_EQUAL(some->info[i].source_index, pick[i]);
    }
    free(all);
    free(some);
}

static void test_sampling_takes_the_first_frame_at_or_after_each_slot(void)
{
    /* realshort is 90000/2998 fps: at 10 fps frames 0, 4, 7, 10, ..., 34: 12 of 36 */
    vt_check_sampling("media/imageio__realshort.mp4", 10);
    CU_ASSERT_EQUAL(vt_count("media/imageio__realshort.mp4", 10), 12);
    vt_check_sampling("media/mecavideo__balle-jbart.mp4", 7.5);

    vt_clip c = {AV_CODEC_ID_RAWVIDEO, AV_PIX_FMT_GRAY8, 16, 16, 90, 30, 0, 0, 0, {9, 0, 0}};
    const char *path = tu_tmp_path("30fps.nut");
    CU_ASSERT_EQUAL_FATAL(vt_write_clip(&c, path), 0);
    CU_ASSERT_EQUAL(vt_count(path, 10), 30); /* exactly every third frame */
    vt_check_sampling(path, 10);
}

static void test_sampling_at_the_source_rate_keeps_every_frame(void)
{
    /* webm timestamps are whole milliseconds (0, 33, 67, 100, ...): the one-tick tolerance
     * keeps frames that the rounding puts just before their slot */
    CU_ASSERT_EQUAL(vt_count("media/mimetype__webm.webm", 30), 166);
    CU_ASSERT_EQUAL(vt_count("media/mecavideo__balle-jbart.mp4", 25), 255);
}

static void test_sampling_faster_than_the_source_never_duplicates(void)
{
    CU_ASSERT_EQUAL(vt_count("media/mimetype__webm.webm", 60), 166);
    CU_ASSERT_EQUAL(vt_count("media/sage__example.avi", 30), 2);
    CU_ASSERT_EQUAL(vt_count("media/kphotoalbum__movie.avi", 1000), 68);
}

/* Two copies of one MPEG-TS clip back to back: timestamps jump back to the start halfway. */
static void test_timestamps_jumping_back_do_not_stall_sampling(void)
{
    vt_clip c = {AV_CODEC_ID_MPEG2VIDEO, AV_PIX_FMT_YUV420P, 64, 48, 20, 25, 0, 0, 0,
                 {120, 100, 170}};
    const char *one = tu_tmp_path("one.ts"), *two = tu_tmp_path("two.ts");
    CU_ASSERT_EQUAL_FATAL(vt_write_clip(&c, one), 0);
    unsigned char *d;
    size_t n = vt_load(one, &d);
    unsigned char *dd = malloc(2 * n + 1);
    memcpy(dd, d, n);
    memcpy(dd + n, d, n);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(two, dd, 2 * n), 0);
    free(d);
    free(dd);

    vt_run *r = malloc(sizeof *r);
    video_opts o = vt_opts(two, 0, 16, 16);
    vt_read_all(&o, r);
    CU_ASSERT_EQUAL(r->frames, 40);
    o.fps = 12.5; /* every other frame of each copy */
    vt_read_all(&o, r);
    CU_ASSERT(r->frames >= 19 && r->frames <= 21);
    CU_ASSERT(r->frames > 0 && r->info[r->frames - 1].source_index >= 37);
    for (int64_t i = 1; i < r->frames; i++)
        CU_ASSERT(r->info[i].source_index > r->info[i - 1].source_index);
    free(r);
}

/* A 4 s gap after frame 10 of 20 (25 fps): every frame is still read, and sampling takes the
 * first frame after the gap and goes on from it, never repeating one to fill the gap. */
static void test_timestamps_with_a_gap_resume_sampling_after_it(void)
{
    vt_clip c = {AV_CODEC_ID_RAWVIDEO, AV_PIX_FMT_GRAY8, 16, 16, 20, 25, 0, 0, 0, {9, 0, 0}};
    const char *plain = tu_tmp_path("nogap.nut"), *gap = tu_tmp_path("gap.nut");
    CU_ASSERT_EQUAL_FATAL(vt_write_clip(&c, plain), 0);
    CU_ASSERT_EQUAL_FATAL(tu_remux_video(plain, gap, 0, 10, 4.0), 0);

    vt_run *r = malloc(sizeof *r);
    video_opts o = vt_opts(gap, 0, 16, 16);
    vt_read_all(&o, r);
    CU_ASSERT_EQUAL(r->frames, 20);
    CU_ASSERT_DOUBLE_EQUAL(r->info[10].pts - r->info[9].pts, 4.04, 1e-3); /* the gap is there */
    free(r);
    vt_check_sampling(gap, 5);    /* frames 0, 5, 10, 15 */
    CU_ASSERT_EQUAL(vt_count(gap, 5), 4);
    vt_check_sampling(gap, 12.5); /* every other frame on both sides */
    CU_ASSERT_EQUAL(vt_count(gap, 12.5), 10);
}

/* ---- tests: bad input ---- */

/* Worst difference, in 8-bit levels, between a [3][n] frame and a solid colour. */
static double vt_off_by(const float *f, int n, const double want[3])
{
    double worst = 0;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < n; i++)
            worst = fmax(worst, fabs(vt_clamp255(want[c]) - f[c * n + i] * 255.0));
    return worst;
}

/* Two MPEG-2 streams of different sizes and colours, one after the other in one MPEG-TS file
 * (a camera changing its resolution): the scaler is rebuilt for the second size and every frame
 * comes out in its part's colour. libav's MPEG-2 decoder drops the last picture before a size
 * change (a plain libavcodec decode of this file gives 19 frames too). */
static void test_resolution_change_mid_stream_rebuilds_the_scaler(void)
{
    vt_clip a = {AV_CODEC_ID_MPEG2VIDEO, AV_PIX_FMT_YUV420P, 64, 48, 10, 25, 0, 0, 0,
                 {120, 100, 170}};
    vt_clip b = a;
    b.w = 48, b.h = 80, b.val[0] = 60, b.val[1] = 160, b.val[2] = 90;
    const char *pa = tu_tmp_path("size-a.ts"), *pb = tu_tmp_path("size-b.ts");
    const char *both = tu_tmp_path("size-ab.ts");
    CU_ASSERT_EQUAL_FATAL(vt_write_clip(&a, pa) || vt_write_clip(&b, pb), 0);
    unsigned char *da, *db;
    size_t na = vt_load(pa, &da), nb = vt_load(pb, &db);
    unsigned char *d = malloc(na + nb + 1);
    memcpy(d, da, na);
    memcpy(d + na, db, nb);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(both, d, na + nb), 0);
    free(da), free(db), free(d);

    double want[2][3];
    vt_yuv_to_rgb(120, 100, 170, 0, 0, want[0]);
    vt_yuv_to_rgb(60, 160, 90, 0, 0, want[1]);
    video_opts o = vt_opts(both, 0, 24, 20);
    video_src *v = NULL;
    cin_err err;
    CU_ASSERT_EQUAL_FATAL(video_open(&o, &v, &err), 0);
    float f[3 * 20 * 20];
    int count[2] = {0, 0}, part = 0, r;
    while (count[0] + count[1] < VT_MAX_FRAMES && (r = video_read(v, f, NULL, &err)) == 1) {
        part = part || vt_off_by(f, 400, want[1]) <= 2.0; /* once in part b, never back */
        CU_ASSERT(vt_off_by(f, 400, want[part]) <= 2.0);
        count[part]++;
    }
    CU_ASSERT_EQUAL(r, 0);
    CU_ASSERT(count[0] >= a.frames - 1 && count[0] <= a.frames);
    CU_ASSERT_EQUAL(count[1], b.frames);
    video_close(v);
}

/* The counterclockwise turn the display matrix of path's video stream asks for, as libavformat
 * reads it back (FFmpeg 5.1's mov muxer and demuxer disagree on the sign), or 0. */
static int vt_read_rotation(const char *path)
{
    AVFormatContext *ic = NULL;
    if (avformat_open_input(&ic, path, NULL, NULL) < 0)
        return 0;
    size_t size = 0;
    const uint8_t *m = ic->nb_streams ? av_stream_get_side_data(ic->streams[0],
                                        AV_PKT_DATA_DISPLAYMATRIX, &size) : NULL;
    int ccw = m && size >= 36 ? (int)lround(av_display_rotation_get((const int32_t *)m)) : 0;
    avformat_close_input(&ic);
    return ccw;
}

/* An RGB ramp (R = 2x, G = 3y) W x H stored with a display matrix. Resized to its short side,
 * no scaling happens, so every pixel of the crop is the source pixel that turning the picture
 * as the matrix says (ffmpeg's autorotate convention: clockwise by minus the matrix's
 * counterclockwise angle) puts there. */
static void vt_check_rotation(int angle, const char *name)
{
    enum { W = 40, H = 24, N = 24 };
    vt_clip c = {AV_CODEC_ID_RAWVIDEO, AV_PIX_FMT_RGB24, W, H, 2, 25, 0, 0, 1, {0, 0, 50}};
    int32_t m[9];
    av_display_rotation_set(m, angle);
    const char *path = tu_tmp_path(name);
    CU_ASSERT_EQUAL_FATAL(vt_write_clip_tagged(&c, path, m, (AVRational){0, 0}), 0);
    int ccw = vt_read_rotation(path);
    CU_ASSERT_EQUAL(abs(ccw), abs(angle));
    video_opts o = vt_opts(path, 0, N, N);
    video_src *v = NULL;
    cin_err err;
    float f[3 * N * N];
    CU_ASSERT_EQUAL_FATAL(video_open(&o, &v, &err), 0);
    CU_ASSERT_EQUAL_FATAL(video_read(v, f, NULL, &err), 1);
    int quarter = ((-ccw / 90) % 4 + 4) % 4, upright_w = quarter % 2 ? H : W;
    int upright_h = quarter % 2 ? W : H, x0 = (upright_w - N) / 2, y0 = (upright_h - N) / 2;
    double worst = 0;
    for (int y = 0; y < N; y++) {
        for (int x = 0; x < N; x++) {
            /* the upright pixel (X, Y), and the source pixel that lands there */
            int X = x0 + x, Y = y0 + y;
            int sx = quarter == 0 ? X : quarter == 1 ? Y : quarter == 2 ? W - 1 - X : W - 1 - Y;
            int sy = quarter == 0 ? Y : quarter == 1 ? H - 1 - X : quarter == 2 ? H - 1 - Y : X;
            worst = fmax(worst, fabs(f[y * N + x] * 255.0 - 2 * sx));
            worst = fmax(worst, fabs(f[N * N + y * N + x] * 255.0 - 3 * sy));
        }
    }
    CU_ASSERT(worst <= 1.0);
    if (worst > 1.0)
        fprintf(stderr, "\n%s: rotation %d off by %.1f levels\n", name, ccw, worst);
    video_close(v);
}

/* Phones store the picture as the sensor saw it and a matrix to turn it upright for display;
 * the model must see what the viewer sees. */
static void test_rotation_metadata_turns_the_picture_upright(void)
{
    vt_check_rotation(0, "rot0.mov");
    vt_check_rotation(-90, "rot-90.mov");   /* shown turned clockwise, as most phones */
    vt_check_rotation(90, "rot90.mov");
    vt_check_rotation(180, "rot180.mov");
}

static void vt_check_open_fails(const char *path, int code, const char *text)
{
    video_opts o = vt_opts(path, 0, 16, 16);
    char marker;
    video_src *v = (video_src *)(void *)&marker; /* video_open must reset it to NULL */
    cin_err err;
    CU_ASSERT_EQUAL(video_open(&o, &v, &err), code);
    CU_ASSERT_EQUAL(err.code, code);
    CU_ASSERT_PTR_NULL(v);
    CU_ASSERT_EQUAL(strncmp(err.msg, path, strlen(path)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, text));
    if (!strstr(err.msg, text))
        fprintf(stderr, "\nmessage: %s\n", err.msg);
}

static void test_missing_file_is_an_io_error_naming_it(void)
{
    vt_check_open_fails("media/no-such-clip.mp4", CIN_E_IO,
                        "media/no-such-clip.mp4: cannot open: No such file or directory");
}

static void test_text_and_empty_files_are_decode_errors(void)
{
    const char *txt = tu_tmp_path("x.txt"), *empty = tu_tmp_path("empty.mp4");
    const char *text = "this is not a video, just a line of text\n";
    CU_ASSERT_EQUAL_FATAL(tu_write_file(txt, text, strlen(text)), 0);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(empty, "", 0), 0);
    vt_check_open_fails(txt, CIN_E_DECODE, ": Invalid data found when processing input");
    vt_check_open_fails(empty, CIN_E_DECODE, ": Invalid data found when processing input");
}

/* 16-bit mono PCM WAV, 0.1 s of silence. */
static void test_audio_only_file_has_no_video_stream(void)
{
    unsigned char wav[44 + 1600] = "RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0"
                                   "\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0data";
    uint32_t riff = sizeof wav - 8, data = 1600;
    memcpy(wav + 4, &riff, 4); /* little-endian hosts, as the rest of cin assumes */
    memcpy(wav + 40, &data, 4);
    const char *path = tu_tmp_path("silence.wav");
    CU_ASSERT_EQUAL_FATAL(tu_write_file(path, wav, sizeof wav), 0);
    vt_check_open_fails(path, CIN_E_DECODE, ": no video stream");
}

/* realshort.mp4 keeps its index (moov) after the data: its first 10 KB cannot be opened at all.
 * A truncated WebM or AVI has its header first: it gives the frames before the cut, no error. */
static void test_truncated_files_fail_to_open_or_give_fewer_frames(void)
{
    const char *mp4 = tu_tmp_path("cut.mp4"), *webm = tu_tmp_path("cut.webm");
    const char *avi = tu_tmp_path("cut.avi");
    CU_ASSERT_EQUAL_FATAL(vt_copy_damaged("media/imageio__realshort.mp4", mp4, 10240, 0), 0);
    CU_ASSERT_EQUAL_FATAL(vt_copy_damaged("media/mimetype__webm.webm", webm, 100000, 0), 0);
    CU_ASSERT_EQUAL_FATAL(vt_copy_damaged("media/kphotoalbum__movie.avi", avi, 250000, 0), 0);
    vt_check_open_fails(mp4, CIN_E_DECODE, ": Invalid data found when processing input");
    int64_t n = vt_count(webm, 0);
    CU_ASSERT(n > 10 && n < 166);
    n = vt_count(avi, 0);
    CU_ASSERT(n > 10 && n < 68);
}

/* 8 KB of the media data overwritten at the middle of the file: decoding goes on after it, at
 * most `lost` frames are missing, and at least `rejected` packets were counted as damaged. */
static void vt_check_damage(const char *src, const char *name, int64_t frames, int64_t lost,
                            int64_t rejected)
{
    const char *path = tu_tmp_path(name);
    CU_ASSERT_EQUAL_FATAL(vt_copy_damaged(src, path, 0, 8192), 0);
    vt_run *r = malloc(sizeof *r);
    video_opts o = vt_opts(path, 0, 32, 32);
    vt_read_all(&o, r);
    CU_ASSERT_EQUAL(r->status, 0);
    CU_ASSERT(r->frames >= frames - lost && r->frames <= frames);
    int64_t last = r->frames < VT_MAX_INFO ? r->frames - 1 : VT_MAX_INFO - 1;
    CU_ASSERT(last >= 0 && r->info[last].source_index >= frames - lost - 1);
    CU_ASSERT(r->damaged >= rejected);
    free(r);
}

static void test_damaged_packets_are_skipped_and_decoding_continues(void)
{
    /* H.264 rejects the packets with broken NAL sizes (FFmpeg 5.1: 254 of 255, 33 of 36 frames
     * out); in the AVI the demuxer drops one frame (67 packets) and MJPEG conceals the rest */
    vt_check_damage("media/mecavideo__balle-jbart.mp4", "damaged.mp4", 255, 5, 1);
    vt_check_damage("media/imageio__realshort.mp4", "damaged-short.mp4", 36, 5, 1);
    vt_check_damage("media/kphotoalbum__movie.avi", "damaged.avi", 68, 3, 0);
}

static void test_bad_options_are_rejected(void)
{
    video_src *v = NULL;
    cin_err err;
    video_opts ok = vt_opts("media/sage__example.avi", 0, 16, 16);
    video_opts o = ok;
    o.crop = 17;
    CU_ASSERT_EQUAL(video_open(&o, &v, &err), CIN_E_INVAL);
    o = ok, o.resize = 0;
    CU_ASSERT_EQUAL(video_open(&o, &v, &err), CIN_E_INVAL);
    o = ok, o.fps = -1;
    CU_ASSERT_EQUAL(video_open(&o, &v, &err), CIN_E_INVAL);
    o = ok, o.fps = NAN;
    CU_ASSERT_EQUAL(video_open(&o, &v, &err), CIN_E_INVAL);
    o = ok, o.std[1] = 0;
    CU_ASSERT_EQUAL(video_open(&o, &v, &err), CIN_E_INVAL);
    o = ok, o.uri = NULL;
    CU_ASSERT_EQUAL(video_open(&o, &v, &err), CIN_E_INVAL);
    CU_ASSERT_EQUAL(video_open(NULL, &v, &err), CIN_E_INVAL);
    CU_ASSERT_PTR_NULL(v);
    CU_ASSERT_EQUAL(video_open(&ok, &v, &err), 0);
    CU_ASSERT_EQUAL(video_read(v, NULL, NULL, &err), CIN_E_INVAL);
    video_close(v);
    video_close(NULL);
}

/* The live settings are checked before anything is opened, and name the uri and the value. */
static void test_live_options_are_checked_before_opening(void)
{
    static const struct {
        const char *uri, *transport, *pixel_format, *text;
        int w, h;
        double open_timeout, rate;
    } cases[] = {
        {"media/sage__example.avi", "tcp", NULL, "rtsp_transport 'tcp': expected tcp or udp, "
         "on an rtsp:// uri", 0, 0, 0, 0},
        {"rtsp://127.0.0.1:9/x", "sctp", NULL, "rtsp_transport 'sctp'", 0, 0, 0, 0},
        {"media/sage__example.avi", NULL, NULL, "are for V4L2 devices (/dev/video*) only", 640,
         480, 0, 0},
        {"/dev/video9", NULL, "no-such-format", "pixel_format 'no-such-format': expected a "
         "libav pixel format", 0, 0, 0, 0},
        {"/dev/video9", NULL, NULL, "size 640x0", 640, 0, 0, 0},
        {"/dev/video9", NULL, NULL, "rate must be in 0..1000, got -1", 0, 0, 0, -1},
        {"rtsp://127.0.0.1:9/x", NULL, NULL, "open_timeout must be in 0..86400, got -1", 0, 0,
         -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        video_opts o = vt_opts(cases[i].uri, 0, 16, 16);
        o.rtsp_transport = cases[i].transport;
        o.pixel_format = cases[i].pixel_format;
        o.width = cases[i].w, o.height = cases[i].h;
        o.open_timeout = cases[i].open_timeout, o.rate = cases[i].rate;
        video_src *v = NULL;
        cin_err err;
        CU_ASSERT_EQUAL(video_open(&o, &v, &err), CIN_E_INVAL);
        CU_ASSERT_EQUAL(strncmp(err.msg, cases[i].uri, strlen(cases[i].uri)), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, cases[i].text));
        if (!strstr(err.msg, cases[i].text))
            fprintf(stderr, "\ncase %zu: %s\n", i, err.msg);
    }
}

/* No camera here: a V4L2 uri with every device option goes to libavdevice's video4linux2
 * demuxer, which finds no device and says so. */
/* With size, rate and pixel format set: their option names are checked against libavdevice's
 * video4linux2 demuxer before the device is opened, so reaching the missing device shows
 * that the demuxer takes every one of them. */
static void test_missing_v4l2_device_is_an_io_error_naming_it(void)
{
    video_opts o = vt_opts("/dev/video9", 0, 16, 16);
    o.width = 640, o.height = 480, o.rate = 30, o.pixel_format = "yuyv422";
    o.open_timeout = 2;
    video_src *v = NULL;
    cin_err err;
    CU_ASSERT_EQUAL(video_open(&o, &v, &err), CIN_E_IO);
    CU_ASSERT_PTR_NULL(v);
    CU_ASSERT_STRING_EQUAL(err.msg, "/dev/video9: cannot open: No such file or directory");
}

static void test_network_uris_and_devices_are_live_files_are_not(void)
{
    const char *live[] = {"rtsp://cam/1", "udp://127.0.0.1:5000", "http://x/a.ts",
                          "srt://h:1", "/dev/video0", "rtmp://h/app"};
    const char *not_live[] = {"clip.mp4", "/tmp/clip.mp4", "file:///tmp/a.mp4",
                              "dir/x://y", "-"};
    for (size_t i = 0; i < sizeof live / sizeof live[0]; i++)
        CU_ASSERT(video_uri_is_live(live[i]));
    for (size_t i = 0; i < sizeof not_live / sizeof not_live[0]; i++)
        CU_ASSERT(!video_uri_is_live(not_live[i]));
    CU_ASSERT(video_uri_is_v4l2("/dev/video2") && !video_uri_is_v4l2("/dev/dri/card0"));
}

static void test_reading_past_the_end_keeps_returning_zero(void)
{
    video_opts o = vt_opts("media/sage__example.webm", 0, 16, 16);
    video_src *v = NULL;
    cin_err err;
    float f[3 * 16 * 16];
    CU_ASSERT_EQUAL_FATAL(video_open(&o, &v, &err), 0);
    CU_ASSERT_EQUAL(video_read(v, f, NULL, &err), 1);
    CU_ASSERT_EQUAL(video_read(v, f, NULL, &err), 1);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(video_read(v, f, NULL, &err), 0);
    CU_ASSERT_EQUAL(video_damaged(v), 0);
    video_close(v);
}

static int vt_setup(void)
{
    av_log_set_level(AV_LOG_QUIET);
    return 0;
}

int test_video_register(void)
{
    CU_pSuite s = CU_add_suite("video", vt_setup, NULL);
    if (!s)
        return -1;
    struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
#define VT_TEST(f) {#f, f}
        VT_TEST(test_every_frame_is_read_including_those_held_in_the_decoder),
        VT_TEST(test_every_frame_of_the_shared_media_is_read),
        VT_TEST(test_frame_info_counts_up_and_pts_increase),
        VT_TEST(test_real_clip_values_are_finite_and_in_normalised_range),
        VT_TEST(test_real_clip_mean_colour_matches_a_direct_conversion),
        VT_TEST(test_yuv_sources_convert_with_their_range_and_matrix),
        VT_TEST(test_yuvj_sources_are_full_range),
        VT_TEST(test_every_chroma_subsampling_converts_at_odd_sizes),
        VT_TEST(test_non_square_pixels_keep_the_coded_grid),
        VT_TEST(test_grey_and_rgb_sources_convert_exactly),
        VT_TEST(test_normalisation_applies_mean_and_std_per_channel),
        VT_TEST(test_crop_is_centred_in_landscape_and_portrait_frames),
        VT_TEST(test_resize_keeps_aspect_and_crop_stays_centred),
        VT_TEST(test_sampling_takes_the_first_frame_at_or_after_each_slot),
        VT_TEST(test_sampling_at_the_source_rate_keeps_every_frame),
        VT_TEST(test_sampling_faster_than_the_source_never_duplicates),
        VT_TEST(test_timestamps_jumping_back_do_not_stall_sampling),
        VT_TEST(test_timestamps_with_a_gap_resume_sampling_after_it),
        VT_TEST(test_resolution_change_mid_stream_rebuilds_the_scaler),
        VT_TEST(test_rotation_metadata_turns_the_picture_upright),
        VT_TEST(test_missing_file_is_an_io_error_naming_it),
        VT_TEST(test_text_and_empty_files_are_decode_errors),
        VT_TEST(test_audio_only_file_has_no_video_stream),
        VT_TEST(test_truncated_files_fail_to_open_or_give_fewer_frames),
        VT_TEST(test_damaged_packets_are_skipped_and_decoding_continues),
        VT_TEST(test_bad_options_are_rejected),
        VT_TEST(test_reading_past_the_end_keeps_returning_zero),
        VT_TEST(test_live_options_are_checked_before_opening),
        VT_TEST(test_missing_v4l2_device_is_an_io_error_naming_it),
        VT_TEST(test_network_uris_and_devices_are_live_files_are_not),
#undef VT_TEST
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    }
    return 0;
}
