/* Video source for cin-run: demux and decode with libavformat/libavcodec, sample frames to the
 * target rate by their timestamps, scale and convert with libswscale, then centre-crop and
 * normalise into float32 planar [3][crop][crop]. See video.h for the sampling and colour rules.
 * Everything per frame is reused: one packet, one frame, one scaler, one RGB buffer. */
#include "video.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libavcodec/avcodec.h>
#include <libavdevice/avdevice.h>
#include <libavformat/avformat.h>
#include <libavutil/dict.h>
#include <libavutil/display.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#define VIDEO_MAX_SIDE 16384     /* largest resize, and largest scaled side we accept */
#define VIDEO_MAX_FAILS 1000     /* decoder errors in a row, without a frame, before giving up */
#define VIDEO_THREADS 2
#define VIDEO_SWS_FLAGS (SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT)
#define VIDEO_CLOSE_WAIT 1.0     /* seconds a closing connection may take (RTSP TEARDOWN) */
#define VIDEO_MAX_RATE 1000.0

/* What the scaler was built for; a frame that differs rebuilds it. */
typedef struct video_key {
    int w, h, format, range, space;
} video_key;

struct video_src {
    char *uri;
    video_opts o;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    int stream;
    AVPacket *pkt;
    AVFrame *frm;

    struct SwsContext *sws;
    video_key key;
    int rotation;              /* clockwise degrees to turn the picture upright: 0, 90, 180, 270 */
    int dst_w, dst_h;          /* scaled upright picture, short side == o.resize */
    int scl_w, scl_h;          /* the scaler's output: dst_w x dst_h before the rotation */
    uint8_t *rgb;              /* packed RGB24 [scl_h][rgb_stride] */
    int rgb_stride;
    size_t rgb_cap;
    float lut[3][256];         /* byte value -> normalised value, per channel */

    int draining, ended;
    int read_err;              /* a demuxer error other than EOF that ended the input */

    /* The interrupt callback's state: libav polls it while it blocks on the network. */
    double deadline;           /* monotonic seconds; 0 = no deadline */
    double armed_for;          /* the timeout that set deadline, for messages */
    int timed_out, stopped;    /* why the callback interrupted libav: the source is done */
    int64_t damaged, decoded, emitted;

    /* Sampling clock, seconds: rel = source time + offset, never decreasing. */
    double tb;                 /* stream time base in seconds, 0 if unknown */
    double frame_dur;          /* assumed frame spacing where timestamps are missing or go back */
    double tol;                /* timestamp tolerance, see video.h */
    int have_prev, have_offset;
    double prev_rel, offset;
    int64_t next_k;            /* index of the next output slot: time next_k / fps */
};

static double video_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Called by libav, often, while it waits: non-zero makes the blocking call return. */
static int video_interrupt(void *opaque)
{
    video_src *v = opaque;
    if (v->o.stop && *v->o.stop) {
        v->stopped = 1;
        return 1;
    }
    if (v->deadline > 0 && video_now() > v->deadline) {
        v->timed_out = 1;
        return 1;
    }
    return 0;
}

/* The next blocking call must finish within secs (0: no limit). timed_out stays set: libav
 * may return packets it buffered before the interrupted read (RTSP's reordering queue does)
 * and report the error later. */
static void video_arm(video_src *v, double secs)
{
    v->deadline = secs > 0 ? video_now() + secs : 0.0;
    v->armed_for = secs;
}

/* Arms the read timeout for the next packet, unless it has already run out: the packets
 * libav still hands out after that do not buy the silent peer another full timeout. */
static void video_arm_read(video_src *v)
{
    if (!v->timed_out)
        video_arm(v, v->o.read_timeout);
}

static int video_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

int video_uri_is_v4l2(const char *uri)
{
    return uri && video_has_prefix(uri, "/dev/video");
}

int video_uri_is_live(const char *uri)
{
    if (!uri)
        return 0;
    if (video_has_prefix(uri, "/dev/"))
        return 1;
    const char *sep = strstr(uri, "://");
    size_t n = sep ? (size_t)(sep - uri) : 0;
    if (n == 0 || strspn(uri, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
                      != n)
        return 0;
    return !(n == 4 && strncmp(uri, "file", 4) == 0);
}

static int video_check_number(const char *uri, const char *name, double x, double hi,
                              cin_err *err)
{
    if (isfinite(x) && x >= 0 && x <= hi)
        return 0;
    return cin_err_set(err, CIN_E_INVAL, "%s: %s must be in 0..%g, got %g", uri, name, hi, x);
}

/* The live-source options: timeouts, the RTSP transport, and V4L2 settings on devices only. */
static int video_check_live_opts(const video_opts *o, cin_err *err)
{
    const char *u = o->uri, *pf = o->pixel_format;
    int r = video_check_number(u, "open_timeout", o->open_timeout, 86400, err);
    r = r ? r : video_check_number(u, "read_timeout", o->read_timeout, 86400, err);
    r = r ? r : video_check_number(u, "rate", o->rate, VIDEO_MAX_RATE, err);
    if (r)
        return r;
    const char *tr = o->rtsp_transport;
    if (tr && (!video_has_prefix(u, "rtsp://") || (strcmp(tr, "tcp") && strcmp(tr, "udp"))))
        return cin_err_set(err, CIN_E_INVAL, "%s: rtsp_transport '%s': expected tcp or udp, on "
                           "an rtsp:// uri", u, tr);
    int v4l2 = video_uri_is_v4l2(u);
    if (!v4l2 && (o->width || o->height || o->rate > 0 || pf))
        return cin_err_set(err, CIN_E_INVAL, "%s: size, rate and pixel_format are for V4L2 "
                           "devices (/dev/video*) only", u);
    if ((o->width > 0) != (o->height > 0) || o->width < 0 || o->height < 0 ||
        o->width > VIDEO_MAX_SIDE || o->height > VIDEO_MAX_SIDE)
        return cin_err_set(err, CIN_E_INVAL, "%s: size %dx%d: expected both sides in 1..%d",
                           u, o->width, o->height, VIDEO_MAX_SIDE);
    if (pf && av_get_pix_fmt(pf) == AV_PIX_FMT_NONE && !avcodec_descriptor_get_by_name(pf))
        return cin_err_set(err, CIN_E_INVAL, "%s: pixel_format '%s': expected a libav pixel "
                           "format (yuyv422, nv12, ...) or codec (mjpeg, h264)", u, pf);
    return 0;
}

static int video_check_opts(const video_opts *o, cin_err *err)
{
    if (!o || !o->uri || !o->uri[0])
        return cin_err_set(err, CIN_E_INVAL, "video: no uri given");
    if (!isfinite(o->fps) || o->fps < 0)
        return cin_err_set(err, CIN_E_INVAL, "%s: fps must be >= 0, got %g", o->uri, o->fps);
    if (o->resize <= 0 || o->resize > VIDEO_MAX_SIDE)
        return cin_err_set(err, CIN_E_INVAL, "%s: resize must be in 1..%d, got %d", o->uri,
                           VIDEO_MAX_SIDE, o->resize);
    if (o->crop <= 0 || o->crop > o->resize)
        return cin_err_set(err, CIN_E_INVAL, "%s: crop must be in 1..resize (%d), got %d",
                           o->uri, o->resize, o->crop);
    for (int c = 0; c < 3; c++) {
        if (!isfinite(o->mean[c]) || !isfinite(o->std[c]) || o->std[c] == 0.0f)
            return cin_err_set(err, CIN_E_INVAL, "%s: mean[%d] = %g, std[%d] = %g: need finite "
                               "values and std != 0", o->uri, c, o->mean[c], c, o->std[c]);
    }
    return video_check_live_opts(o, err);
}

/* libav's own error tags are about the content; errno values are about reaching it. */
static int video_open_error(const video_src *v, int averr, cin_err *err)
{
    char why[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(averr, why, sizeof why);
    if (averr == AVERROR(ENOMEM))
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", v->uri);
    if (v->stopped)
        return cin_err_set(err, CIN_E_IO, "%s: cannot open: stopped", v->uri);
    if (v->timed_out)
        return cin_err_set(err, CIN_E_IO, "%s: cannot open: timed out, no answer within %g s "
                           "(open timeout)", v->uri, v->armed_for);
    if (averr == AVERROR_INVALIDDATA || averr == AVERROR_EOF)
        return cin_err_set(err, CIN_E_DECODE, "%s: %s", v->uri, why);
    return cin_err_set(err, CIN_E_IO, "%s: cannot open: %s", v->uri, why);
}

static pthread_once_t video_devices_once = PTHREAD_ONCE_INIT;

static void video_register_devices(void)
{
    avdevice_register_all();
}

/* The demuxer options of the live settings; a V4L2 device's demuxer in *fmt. */
static int video_input_options(const video_src *v, AVDictionary **d, const AVInputFormat **fmt)
{
    const video_opts *o = &v->o;
    char text[64];
    int r = 0;
    *fmt = NULL;
    if (o->rtsp_transport)
        r = av_dict_set(d, "rtsp_transport", o->rtsp_transport, 0);
    if (!video_uri_is_v4l2(v->uri))
        return r;
    pthread_once(&video_devices_once, video_register_devices);
    *fmt = av_find_input_format("video4linux2");
    if (r == 0 && o->width > 0) {
        snprintf(text, sizeof text, "%dx%d", o->width, o->height);
        r = av_dict_set(d, "video_size", text, 0);
    }
    if (r == 0 && o->rate > 0) {
        snprintf(text, sizeof text, "%.6g", o->rate);
        r = av_dict_set(d, "framerate", text, 0);
    }
    if (r == 0 && o->pixel_format)
        r = av_dict_set(d, "input_format", o->pixel_format, 0);
    return r;
}

/* A device demuxer's options are checked against its class before the device is opened, so
 * a name it does not take is found even where the device is missing. */
static int video_check_device_options(const video_src *v, const AVInputFormat *fmt,
                                      const AVDictionary *d, cin_err *err)
{
    const AVDictionaryEntry *e = NULL;
    while (fmt && fmt->priv_class && (e = av_dict_get(d, "", e, AV_DICT_IGNORE_SUFFIX))) {
        if (!av_opt_find((void *)&fmt->priv_class, e->key, NULL, 0, AV_OPT_SEARCH_FAKE_OBJ))
            return cin_err_set(err, CIN_E_INVAL, "%s: the %s demuxer does not take option %s",
                               v->uri, fmt->name, e->key);
    }
    return 0;
}

/* Opens the demuxer with the interrupt callback in place and every option consumed. */
static int video_open_demuxer(video_src *v, cin_err *err)
{
    AVDictionary *d = NULL;
    const AVInputFormat *fmt;
    if (!(v->fmt = avformat_alloc_context()) || video_input_options(v, &d, &fmt) < 0) {
        av_dict_free(&d);
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", v->uri);
    }
    if (video_uri_is_v4l2(v->uri) && !fmt) {
        av_dict_free(&d);
        return cin_err_set(err, CIN_E_UNSUPPORTED, "%s: this libavdevice has no video4linux2 "
                           "input", v->uri);
    }
    if (video_check_device_options(v, fmt, d, err) < 0) {
        av_dict_free(&d);
        return CIN_E_INVAL;
    }
    v->fmt->interrupt_callback = (AVIOInterruptCB){video_interrupt, v};
    int r = avformat_open_input(&v->fmt, v->uri, fmt, &d);
    const AVDictionaryEntry *left = av_dict_get(d, "", NULL, AV_DICT_IGNORE_SUFFIX);
    if (r == 0 && left)
        r = cin_err_set(err, CIN_E_INVAL, "%s: the %s demuxer does not take option %s", v->uri,
                        v->fmt->iformat->name, left->key);
    else if (r < 0)
        r = video_open_error(v, r, err);
    av_dict_free(&d);
    return r;
}

static int video_open_input(video_src *v, cin_err *err)
{
    video_arm(v, v->o.open_timeout);
    int r = video_open_demuxer(v, err);
    if (r < 0)
        return r;
    r = avformat_find_stream_info(v->fmt, NULL);
    if (r < 0 && (v->timed_out || v->stopped))
        return video_open_error(v, r, err);
    if (r < 0) {
        char why[AV_ERROR_MAX_STRING_SIZE];
        av_strerror(r, why, sizeof why);
        return cin_err_set(err, CIN_E_DECODE, "%s: cannot read stream parameters: %s", v->uri,
                           why);
    }
    return 0;
}

/* Sets v->stream to the best video stream and *codec to its decoder. */
static int video_find_stream(video_src *v, const AVCodec **codec, cin_err *err)
{
    int s = av_find_best_stream(v->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, codec, 0);
    if (s == AVERROR_STREAM_NOT_FOUND)
        return cin_err_set(err, CIN_E_DECODE, "%s: no video stream", v->uri);
    if (s < 0) {
        s = av_find_best_stream(v->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
        enum AVCodecID id = s >= 0 ? v->fmt->streams[s]->codecpar->codec_id : AV_CODEC_ID_NONE;
        return cin_err_set(err, CIN_E_DECODE, "%s: no decoder for %s video", v->uri,
                           avcodec_get_name(id));
    }
    v->stream = s;
    return 0;
}

static int video_open_decoder(video_src *v, cin_err *err)
{
    const AVCodec *codec = NULL;
    int r = video_find_stream(v, &codec, err);
    if (r < 0)
        return r;
    const AVStream *st = v->fmt->streams[v->stream];
    v->dec = avcodec_alloc_context3(codec);
    if (!v->dec || avcodec_parameters_to_context(v->dec, st->codecpar) < 0)
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", v->uri);
    v->dec->pkt_timebase = st->time_base;
    v->dec->thread_count = VIDEO_THREADS;
    r = avcodec_open2(v->dec, codec, NULL);
    if (r < 0) {
        char why[AV_ERROR_MAX_STRING_SIZE];
        av_strerror(r, why, sizeof why);
        return cin_err_set(err, CIN_E_DECODE, "%s: cannot open %s decoder: %s", v->uri,
                           codec->name, why);
    }
    return 0;
}

static int video_rate_valid(AVRational q)
{
    return q.num > 0 && q.den > 0;
}

static void video_init_clock(video_src *v)
{
    const AVStream *st = v->fmt->streams[v->stream];
    double rate = 25.0;
    if (video_rate_valid(st->avg_frame_rate))
        rate = av_q2d(st->avg_frame_rate);
    else if (video_rate_valid(st->r_frame_rate))
        rate = av_q2d(st->r_frame_rate);
    else if (v->o.fps > 0)
        rate = v->o.fps;
    v->frame_dur = 1.0 / rate;
    v->tb = video_rate_valid(st->time_base) ? av_q2d(st->time_base) : 0.0;

    /* The 1e-9 absorbs rounding in k / fps and pts * tb. */
    v->tol = 1e-9;
    if (v->o.fps > 0)
        v->tol += fmin(v->tb, 0.25 / v->o.fps);
}

/* The stream's display matrix (phones record upright video sideways and say so), rounded to
 * the nearest quarter turn; a mirroring in the matrix is not applied. */
static void video_init_rotation(video_src *v)
{
    size_t size = 0;
    const uint8_t *m = av_stream_get_side_data(v->fmt->streams[v->stream],
                                               AV_PKT_DATA_DISPLAYMATRIX, &size);
    if (!m || size < 9 * sizeof(int32_t))
        return;
    double ccw = av_display_rotation_get((const int32_t *)m);
    if (!isfinite(ccw))
        return;
    long quarter = lround(-ccw / 90.0) % 4;
    v->rotation = (int)((quarter + 4) % 4) * 90;
}

static void video_init_lut(video_src *v)
{
    for (int c = 0; c < 3; c++) {
        for (int i = 0; i < 256; i++)
            v->lut[c][i] = ((float)i / 255.0f - v->o.mean[c]) / v->o.std[c];
    }
}

int video_open(const video_opts *o, video_src **out, cin_err *err)
{
    cin_err_clear(err);
    if (!out)
        return cin_err_set(err, CIN_E_INVAL, "video: no output handle");
    *out = NULL;
    int r = video_check_opts(o, err);
    if (r < 0)
        return r;

    video_src *v = calloc(1, sizeof *v);
    if (!v || !(v->uri = strdup(o->uri))) {
        free(v);
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", o->uri);
    }
    v->o = *o;
    v->o.uri = v->uri;
    v->key.format = AV_PIX_FMT_NONE;

    r = video_open_input(v, err);
    if (r == 0)
        r = video_open_decoder(v, err);
    if (r == 0 && (!(v->pkt = av_packet_alloc()) || !(v->frm = av_frame_alloc())))
        r = cin_err_set(err, CIN_E_NOMEM, "%s: out of memory", v->uri);
    if (r < 0) {
        video_close(v);
        return r;
    }
    video_init_clock(v);
    video_init_rotation(v);
    video_init_lut(v);
    *out = v;
    return 0;
}

/* Reads one packet of our stream and sends it to the decoder; at the end of the input, starts
 * draining. A packet the decoder refuses is counted and dropped. */
static void video_feed(video_src *v)
{
    video_arm_read(v);
    int r = av_read_frame(v->fmt, v->pkt);
    if (r == AVERROR(EAGAIN))
        return;
    if (r < 0) {
        if (r != AVERROR_EOF)
            v->read_err = r;
        avcodec_send_packet(v->dec, NULL);
        v->draining = 1;
        return;
    }
    if (v->pkt->stream_index == v->stream) {
        r = avcodec_send_packet(v->dec, v->pkt);
        if (r < 0 && r != AVERROR(EAGAIN) && r != AVERROR_EOF)
            v->damaged++;
    }
    av_packet_unref(v->pkt);
}

/* Leaves the next decoded frame in v->frm: returns 1, or 0 when the decoder is drained. */
static int video_decode(video_src *v, cin_err *err)
{
    int fails = 0;
    for (;;) {
        int r = avcodec_receive_frame(v->dec, v->frm);
        if (r == 0)
            return 1;
        if (r == AVERROR_EOF || (r == AVERROR(EAGAIN) && v->draining))
            return 0;
        if (r == AVERROR(EAGAIN)) {
            video_feed(v);
            continue;
        }
        v->damaged++;
        if (++fails > VIDEO_MAX_FAILS)
            return cin_err_set(err, CIN_E_DECODE, "%s: decoder failed %d times in a row",
                               v->uri, fails);
    }
}

/* Places the frame on the never-decreasing sampling clock; stores its source time in *pts. */
static double video_clock(video_src *v, int64_t ts, double *pts)
{
    int known = ts != AV_NOPTS_VALUE && v->tb > 0;
    double src = known ? (double)ts * v->tb : 0.0;
    double rel = 0.0;
    if (v->have_prev && known && v->have_offset)
        rel = src + v->offset;
    else if (v->have_prev)
        rel = v->prev_rel + v->frame_dur;
    if (v->have_prev && rel < v->prev_rel)
        rel = v->prev_rel + v->frame_dur;
    if (known && (!v->have_offset || rel != src + v->offset)) {
        v->offset = rel - src;
        v->have_offset = 1;
    }
    *pts = known ? src : (v->have_offset ? rel - v->offset : rel);
    v->have_prev = 1;
    v->prev_rel = rel;
    return rel;
}

/* Whether the frame at clock time rel fills the next output slot; advances the slot if so. */
static int video_sample(video_src *v, double rel)
{
    double fps = v->o.fps;
    if (fps <= 0)
        return 1;
    if (rel < (double)v->next_k / fps - v->tol)
        return 0;
    int64_t k = (int64_t)floor((rel + v->tol) * fps) + 1;
    v->next_k = k > v->next_k + 1 ? k : v->next_k + 1;
    return 1;
}

/* yuvj* formats are yuv* in full range; telling swscale so avoids its deprecation warning. */
static enum AVPixelFormat video_unjpeg(enum AVPixelFormat f, int *full)
{
    *full = 1;
    switch (f) {
    case AV_PIX_FMT_YUVJ420P: return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P: return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P: return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P: return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P: return AV_PIX_FMT_YUV411P;
    default: *full = 0; return f;
    }
}

/* Matrix and range from the frame's tags; untagged keeps swscale's defaults (BT.601; limited
 * for YUV, full for grey). The output is always full-range RGB. */
static int video_set_colour(struct SwsContext *sws, const AVFrame *f, int jpeg)
{
    int *inv, *table, src_range, dst_range, bright, contrast, sat;
    if (sws_getColorspaceDetails(sws, &inv, &src_range, &table, &dst_range, &bright, &contrast,
                                 &sat) < 0)
        return -1;
    if (jpeg || f->color_range == AVCOL_RANGE_JPEG)
        src_range = 1;
    else if (f->color_range == AVCOL_RANGE_MPEG)
        src_range = 0;
    const int *coefs = inv;
    switch (f->colorspace) {
    case AVCOL_SPC_BT709: case AVCOL_SPC_FCC: case AVCOL_SPC_BT470BG: case AVCOL_SPC_SMPTE170M:
    case AVCOL_SPC_SMPTE240M: case AVCOL_SPC_BT2020_NCL: case AVCOL_SPC_BT2020_CL:
        coefs = sws_getCoefficients(f->colorspace);
        break;
    default:
        break;
    }
    return sws_setColorspaceDetails(sws, coefs, src_range, table, 1, bright, contrast, sat);
}

/* Short side to o.resize, long side rounded to the nearest pixel (never below resize). */
static int video_scaled_size(video_src *v, int w, int h, cin_err *err)
{
    int s = v->o.resize;
    int64_t lw = (int64_t)llround((double)w * s / h), lh = (int64_t)llround((double)h * s / w);
    v->dst_w = w <= h ? s : (int)(lw < s ? s : lw > VIDEO_MAX_SIDE ? 0 : lw);
    v->dst_h = w <= h ? (int)(lh < s ? s : lh > VIDEO_MAX_SIDE ? 0 : lh) : s;
    if (v->dst_w == 0 || v->dst_h == 0)
        return cin_err_set(err, CIN_E_UNSUPPORTED, "%s: a %dx%d picture resized to short side "
                           "%d would be longer than %d pixels", v->uri, w, h, s, VIDEO_MAX_SIDE);
    return 0;
}

static int video_alloc_rgb(video_src *v, cin_err *err)
{
    int turned = v->rotation == 90 || v->rotation == 270;
    v->scl_w = turned ? v->dst_h : v->dst_w;
    v->scl_h = turned ? v->dst_w : v->dst_h;
    v->rgb_stride = (v->scl_w * 3 + 63) & ~63;
    /* 64 spare bytes: swscale's SIMD stores may run a little past the last row */
    size_t need = (size_t)v->rgb_stride * (size_t)v->scl_h + 64;
    if (need <= v->rgb_cap)
        return 0;
    av_freep(&v->rgb);
    v->rgb_cap = 0;
    if (!(v->rgb = av_malloc(need)))
        return cin_err_set(err, CIN_E_NOMEM, "%s: out of memory for a %dx%d picture", v->uri,
                           v->dst_w, v->dst_h);
    v->rgb_cap = need;
    return 0;
}

/* Builds the scaler for this frame's size, format and colour tags unless it already fits. */
static int video_prepare_scaler(video_src *v, const AVFrame *f, cin_err *err)
{
    video_key key = {f->width, f->height, f->format, f->color_range, f->colorspace};
    if (v->sws && memcmp(&key, &v->key, sizeof key) == 0)
        return 0;
    sws_freeContext(v->sws);
    v->sws = NULL;
    v->key.format = AV_PIX_FMT_NONE;
    if (f->width <= 0 || f->height <= 0)
        return cin_err_set(err, CIN_E_DECODE, "%s: decoded a %dx%d picture", v->uri, f->width,
                           f->height);
    int jpeg;
    enum AVPixelFormat in = video_unjpeg((enum AVPixelFormat)f->format, &jpeg);
    if (!sws_isSupportedInput(in))
        return cin_err_set(err, CIN_E_UNSUPPORTED, "%s: cannot convert pixel format %s",
                           v->uri, av_get_pix_fmt_name(f->format));
    int turned = v->rotation == 90 || v->rotation == 270;
    int r = turned ? video_scaled_size(v, f->height, f->width, err)
                   : video_scaled_size(v, f->width, f->height, err);
    if (r == 0)
        r = video_alloc_rgb(v, err);
    if (r < 0)
        return r;
    v->sws = sws_getContext(f->width, f->height, in, v->scl_w, v->scl_h, AV_PIX_FMT_RGB24,
                            VIDEO_SWS_FLAGS, NULL, NULL, NULL);
    if (!v->sws)
        return cin_err_set(err, CIN_E_UNSUPPORTED, "%s: cannot scale %dx%d %s to %dx%d RGB",
                           v->uri, f->width, f->height, av_get_pix_fmt_name(f->format),
                           v->scl_w, v->scl_h);
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(in);
    if (!(d->flags & AV_PIX_FMT_FLAG_RGB) && video_set_colour(v->sws, f, jpeg) < 0)
        return cin_err_set(err, CIN_E_UNSUPPORTED, "%s: cannot set the colour conversion of %s",
                           v->uri, av_get_pix_fmt_name(f->format));
    v->key = key;
    return 0;
}

/* Where upright pixel (x0, y0) is in the scaler's output, and the byte steps to the next
 * upright pixel to the right (*dx) and below (*dy). Turned clockwise by 90 degrees, upright
 * (X, Y) is scaled (Y, scl_h - 1 - X); by 270, (scl_w - 1 - Y, X). */
static ptrdiff_t video_walk(const video_src *v, ptrdiff_t x0, ptrdiff_t y0, ptrdiff_t *dx,
                            ptrdiff_t *dy)
{
    ptrdiff_t s = v->rgb_stride, w = v->scl_w, h = v->scl_h;
    switch (v->rotation) {
    case 90:
        *dx = -s, *dy = 3;
        return (h - 1 - x0) * s + y0 * 3;
    case 180:
        *dx = -3, *dy = -s;
        return (h - 1 - y0) * s + (w - 1 - x0) * 3;
    case 270:
        *dx = s, *dy = -3;
        return x0 * s + (w - 1 - y0) * 3;
    default:
        *dx = 3, *dy = s;
        return y0 * s + x0 * 3;
    }
}

/* rgb, turned upright -> out [3][crop][crop], centre crop, normalised through the LUT. */
static void video_crop_normalise(const video_src *v, float *out)
{
    size_t n = (size_t)v->o.crop, plane = n * n;
    ptrdiff_t dx, dy;
    ptrdiff_t at = video_walk(v, (v->dst_w - v->o.crop) / 2, (v->dst_h - v->o.crop) / 2, &dx,
                              &dy);
    for (size_t y = 0; y < n; y++, at += dy) {
        const uint8_t *px = v->rgb + at;
        float *r = out + y * n, *g = r + plane, *b = g + plane;
        for (size_t x = 0; x < n; x++, px += dx) {
            r[x] = v->lut[0][px[0]];
            g[x] = v->lut[1][px[1]];
            b[x] = v->lut[2][px[2]];
        }
    }
}

static int video_preprocess(video_src *v, float *out, cin_err *err)
{
    const AVFrame *f = v->frm;
    int r = video_prepare_scaler(v, f, err);
    if (r < 0)
        return r;
    uint8_t *dst[4] = {v->rgb, NULL, NULL, NULL};
    int stride[4] = {v->rgb_stride, 0, 0, 0};
    if (sws_scale(v->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst,
                  stride) != v->scl_h)
        return cin_err_set(err, CIN_E_DECODE, "%s: scaling frame %lld failed", v->uri,
                           (long long)v->decoded - 1);
    video_crop_normalise(v, out);
    return 0;
}

static int video_end(video_src *v, cin_err *err)
{
    v->ended = 1;
    if (!v->read_err)
        return 0;
    char why[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(v->read_err, why, sizeof why);
    int code = v->read_err == AVERROR_INVALIDDATA ? CIN_E_DECODE : CIN_E_IO;
    v->read_err = 0;
    if (v->stopped)
        return cin_err_set(err, CIN_E_IO, "%s: stopped after %lld frames", v->uri,
                           (long long)v->decoded);
    if (v->timed_out)
        return cin_err_set(err, CIN_E_IO, "%s: timed out: no data for %g s (read timeout) "
                           "after %lld frames", v->uri, v->armed_for, (long long)v->decoded);
    return cin_err_set(err, code, "%s: read error after %lld frames: %s", v->uri,
                       (long long)v->decoded, why);
}

int video_read(video_src *v, float *frame, video_frame_info *info, cin_err *err)
{
    cin_err_clear(err);
    if (!v || !frame)
        return cin_err_set(err, CIN_E_INVAL, "video: no source or no frame buffer");
    if (v->ended)
        return 0;
    for (;;) {
        int r = video_decode(v, err);
        if (r == 0)
            return video_end(v, err);
        if (r < 0)
            return r;
        int64_t source_index = v->decoded++;
        double pts;
        double rel = video_clock(v, v->frm->best_effort_timestamp, &pts);
        if (!video_sample(v, rel)) {
            av_frame_unref(v->frm);
            continue;
        }
        r = video_preprocess(v, frame, err);
        av_frame_unref(v->frm);
        if (r < 0)
            return r;
        if (info)
            *info = (video_frame_info){v->emitted, source_index, pts};
        v->emitted++;
        return 1;
    }
}

int video_timed_out(const video_src *v)
{
    return v && v->timed_out;
}

int64_t video_damaged(const video_src *v)
{
    return v ? v->damaged : 0;
}

void video_close(video_src *v)
{
    if (!v)
        return;
    sws_freeContext(v->sws);
    av_free(v->rgb);
    av_frame_free(&v->frm);
    av_packet_free(&v->pkt);
    avcodec_free_context(&v->dec);
    video_arm(v, VIDEO_CLOSE_WAIT);
    avformat_close_input(&v->fmt);
    free(v->uri);
    free(v);
}

void video_set_log_level(int level)
{
    /* cin's own messages say what failed; libav's lines start at --log-level info */
    static const int av_levels[] = {AV_LOG_QUIET, AV_LOG_QUIET, AV_LOG_WARNING, AV_LOG_DEBUG};
    av_log_set_level(av_levels[level < 0 ? 0 : level > 3 ? 3 : level]);
}
