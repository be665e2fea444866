/* Video source: decodes a file or URL with libavformat/libavcodec, samples frames to a target
 * rate and turns each sampled frame into a model input, float32 planar [3][crop][crop] RGB.
 * It is the first stage of a cin-run pipeline (source -> preprocess -> model); it knows no model.
 *
 *     video_opts o = {.uri = "clip.mp4", .fps = 10, .resize = 182, .crop = 160,
 *                     .mean = {0.45f, 0.45f, 0.45f}, .std = {0.225f, 0.225f, 0.225f}};
 *     video_src *v;
 *     cin_err err;
 *     if (video_open(&o, &v, &err) < 0)
 *         fprintf(stderr, "%s\n", err.msg);
 *     float *frame = malloc(sizeof(float) * 3 * 160 * 160);
 *     video_frame_info info;
 *     int r;
 *     while ((r = video_read(v, frame, &info, &err)) == 1)
 *         use(frame, info.pts);
 *     video_close(v);   // r is 0 at the end of the stream, < 0 on an error
 *
 * Sampling: output frame k is the first decoded frame whose time, relative to the first frame,
 * is >= k / fps. Times are compared with a tolerance of one tick of the stream's time base (at
 * most a quarter of the output period), so that container timestamps rounded to the tick do not
 * drop frames when sampling at the source's own rate. A frame is never output twice: a source
 * slower than fps gives every frame, and after a forward jump in time sampling resumes from the
 * frame after the jump. A timestamp that goes backwards (concatenated streams, broken muxers) is
 * treated as following the previous frame by one frame duration. Missing timestamps are replaced
 * by counting frames at the stream's average (else real base) frame rate, else at fps, else 25.
 *
 * Preprocessing: the decoded picture (its pixel grid; the sample aspect ratio is ignored, as
 * array-based training pipelines do) is first turned upright by the stream's display matrix
 * (rotation metadata, as phones write it), to the nearest quarter turn; a mirroring in the
 * matrix is not applied. The upright picture is scaled so its short side is `resize` pixels,
 * the long side rounded to the nearest pixel, then the centre crop x crop square is taken
 * (offset rounded down). YUV is converted with the matrix and range the frame is tagged with;
 * untagged YUV uses BT.601, limited range except yuvj* formats (full). Grey and RGB sources are
 * full range.
 * Channel c of pixel p is (rgb / 255 - mean[c]) / std[c].
 *
 * Live sources: libav waits for a network peer forever by default. Here every blocking call of
 * libavformat runs under an interrupt callback with a monotonic deadline, open_timeout for
 * video_open and read_timeout for each packet, so a frozen peer (connected, silent) ends the
 * call with CIN_E_IO and a message saying how long the uri was silent. Option strings are
 * checked before anything is opened; an option the demuxer does not take is an error.
 *
 * Thread safety: a video_src is used by one thread at a time; distinct sources are independent.
 * libav's own log output is left alone: the program sets av_log_set_level().
 */
#ifndef CIN_IO_VIDEO_H
#define CIN_IO_VIDEO_H

#include <stdatomic.h>
#include <stdint.h>

#include "error.h"

typedef struct video_opts {
    const char *uri;   /* file name or URL, anything libavformat opens; copied by video_open */
    double fps;        /* output frame rate; 0 = every decoded frame */
    int resize;        /* short side after resize, in pixels, 1..16384 */
    int crop;          /* side of the centre square crop, 1..resize */
    float mean[3];     /* per channel R, G, B, on values scaled to [0, 1]: (x/255 - mean) / std */
    float std[3];      /* non-zero */

    /* Live sources. Timeouts are seconds of wall time on the monotonic clock, 0 = none. */
    double open_timeout;        /* video_open as a whole: connect, headers, stream parameters */
    double read_timeout;        /* each wait for the next packet */
    const char *rtsp_transport; /* rtsp:// only: "tcp" or "udp"; NULL = libav's choice */
    int width, height;          /* V4L2 (/dev/video*): requested size; 0 = the device's */
    double rate;                /* V4L2: requested frames per second; 0 = the device's */
    const char *pixel_format;   /* V4L2: a libav pixel format or codec name ("yuyv422",
                                   "mjpeg"); NULL = the device's */
    const atomic_int *stop;    /* when non-zero, a blocked open or read gives up at
                                           once (CIN_E_IO); NULL: never */
} video_opts;

typedef struct video_frame_info {
    int64_t index;        /* output frame number: 0, 1, 2, ... */
    int64_t source_index; /* decoded frame number, counting every frame the decoder returned */
    double pts;           /* seconds, presentation time of the source frame as the stream gives
                             it (best effort), or counted from the frame rate when it is missing */
} video_frame_info;

typedef struct video_src video_src;

/* Opens o->uri, selects its best video stream and opens a decoder (2 threads at most).
 * On success stores a new source in *out and returns 0. Otherwise returns CIN_E_INVAL (bad
 * options), CIN_E_IO (cannot open), CIN_E_DECODE (not media, no video stream, no decoder) or
 * CIN_E_NOMEM, with a message in err that starts with the uri. The caller owns *out and frees it
 * with video_close. */
int video_open(const video_opts *o, video_src **out, cin_err *err);

/* Decodes up to the next sampled frame and writes it to frame, [3][crop][crop] floats that the
 * caller owns, and its description to info (may be NULL). Returns 1 with a frame, 0 at the end
 * of the stream (and on every later call), or a negative CIN_E_* with a message in err.
 * Packets and frames the decoder rejects are counted (video_damaged) and skipped. A read error
 * other than end of file ends the input: the frames still in the decoder come out first, then
 * one CIN_E_IO (CIN_E_DECODE if the demuxer found invalid data), then 0. CIN_E_UNSUPPORTED: a
 * picture swscale cannot convert, or one whose scaled long side would exceed 16384 pixels.
 * After the first frame nothing is allocated by cin unless the picture size, pixel format or
 * colour tags change. */
int video_read(video_src *v, float *frame, video_frame_info *info, cin_err *err);

/* 1 if uri names a live source: a network URL (a scheme other than file:) or a device under
 * /dev/. Such sources never end at a known end and get timeouts and reconnection in cin-run. */
int video_uri_is_live(const char *uri);

/* 1 if uri is a V4L2 device (/dev/video*), opened through libavdevice's video4linux2. */
int video_uri_is_v4l2(const char *uri);

/* 1 if the last error of v came from read_timeout running out (the source went silent). */
int video_timed_out(const video_src *v);

/* Number of packets and frames the decoder has rejected and skipped so far. */
int64_t video_damaged(const video_src *v);

/* Frees the source and everything it holds; NULL is allowed. */
void video_close(video_src *v);

/* How much libav itself prints on stderr, on cin's scale (CIN_LOG_ERROR .. CIN_LOG_DEBUG).
 * This is libav's process-wide setting: tools call it once at start, libraries leave it be. */
void video_set_log_level(int level);

#endif
