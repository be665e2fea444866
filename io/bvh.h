/* BVH motion capture files (Biovision Hierarchy, as the CMU mocap database is distributed):
 * the joint hierarchy and its per-frame channels, turned by forward kinematics into the world
 * position of every joint, a skel_seq [frames][3][joints][1] for skeleton models.
 *
 *     skel_seq seq = {0};
 *     bvh_info info = {0};
 *     cin_err err;
 *     if (bvh_read_ex("01_01.bvh", 30.0, &seq, &info, &err) != 0)
 *         return err.code;                // err.msg: "01_01.bvh:190: expected 96 numbers ..."
 *     // seq.t frames at 30 fps, seq.c == 3 (x, y, z), seq.v == info.joints, seq.m == 1;
 *     // joint j is info.names[j], in file order (Hips first for CMU: graph "cmu31")
 *     float x = seq.data[((size_t)t * 3 + 0) * seq.v + j];
 *     skel_seq_free(&seq);
 *     bvh_info_free(&info);
 *
 * Hierarchy. HIERARCHY, then one or more ROOT blocks; a ROOT or JOINT block holds its OFFSET
 * x y z, then an optional CHANNELS n name..., then its JOINT and End Site blocks; an End Site
 * holds only an OFFSET. Names are one token. CHANNELS n is 0..6 names out of Xposition,
 * Yposition, Zposition, Xrotation, Yrotation, Zrotation, in any order, each at most once.
 * Joints are numbered in the order their ROOT or JOINT keyword appears (End Sites are not
 * joints), which is also the order of their channels on a motion line.
 * Motion. MOTION, "Frames: n" (n >= 1), "Frame Time: s" (finite, > 0), then one line per frame
 * of exactly the total channel count of numbers; only blank lines may follow the last frame.
 * Numbers are decimal (strtod's C-locale syntax without hex), or nan/inf/infinity with an
 * optional sign. Blanks are spaces, tabs and carriage returns (CRLF files read as LF ones);
 * a leading UTF-8 byte order mark is skipped.
 *
 * Forward kinematics, in double precision: a joint's local transform is the translation by
 * OFFSET + (Xposition, Yposition, Zposition) (channels not given are 0) times its rotations
 * in the order its CHANNELS line lists them, angles in degrees ("Zrotation Yrotation
 * Xrotation" is Rz * Ry * Rx, each R rotating column vectors counter-clockwise about its axis);
 * world = parent world * local, and the joint's position is the world translation. Positions
 * are in the file's units.
 *
 * Resampling. fps > 0: output frame k is at time k / fps, k = 0 .. t-1 with
 * t = floor((frames - 1) * frame_time * fps + 1e-9) + 1 (the 1e-9 only absorbs rounding: 30
 * frames 0.01 s apart give 30 frames at 100 fps, not 29). Its positions are linearly interpolated
 * between the two source frames around source frame s = k / fps / frame_time, i0 = floor(s),
 * weights 1 - (s - i0) and s - i0 (positions are interpolated, not angles: see
 * docs/KNOWN_ISSUES.md). fps <= 0 keeps every frame.
 *
 * Non-finite values are masked, as skel_seq's readers do: a NaN or infinite channel value (an
 * overflowing one such as 1e999 included) makes its joint and every descendant unknown in that
 * source frame, and so does a position that is not finite or does not fit in a float. Such a
 * joint is 0 (x, y and z) in each output frame that takes it with a non-zero weight, and
 * counted once per joint and output frame in seq.masked. OFFSET and Frame Time values must be
 * finite.
 *
 * Bounds. At most BVH_MAX_JOINTS joints and blocks nested at most BVH_MAX_DEPTH deep (ROOT is
 * 1; CIN_E_FORMAT beyond), a file of at most BVH_MAX_FILE bytes and an output of at most
 * BVH_MAX_VALUES floats (CIN_E_UNSUPPORTED beyond). "Frames:" is checked against the bytes left
 * in the file before anything is allocated from it. A hierarchy without any channel is refused
 * (CIN_E_UNSUPPORTED).
 */
#ifndef CIN_IO_BVH_H
#define CIN_IO_BVH_H

#include "error.h"
#include "skel.h"

#define BVH_MAX_JOINTS 1024
#define BVH_MAX_DEPTH 64
#define BVH_MAX_FILE (1LL << 30)
#define BVH_MAX_VALUES (1LL << 26)

/* What the file holds, besides the positions. */
typedef struct bvh_info {
    int joints;             /* ROOT and JOINT blocks, End Sites left out */
    double frame_time;      /* seconds between source frames ("Frame Time:") */
    int frames;             /* source frames ("Frames:") */
    char **names;           /* names[joints], each malloc'd, in joint order */
} bvh_info;

/* Reads the BVH file at path into *out (c = 3, v = joints, m = 1, masked as above), resampled
 * to fps when fps > 0, and, when info is not NULL, its joints, names and source timing into
 * *info. *out and *info are overwritten, not freed first: pass zeroed or freed ones. On error
 * both are left zeroed and err says why: CIN_E_INVAL (NULL path or out, fps NaN or infinite),
 * CIN_E_IO (cannot open or read, not a regular file), CIN_E_FORMAT ("<path>:<line>: expected
 * ..., found ..."), CIN_E_UNSUPPORTED (file or output too large, no channels), CIN_E_NOMEM.
 * The caller frees *out with skel_seq_free and *info with bvh_info_free. Thread-safe: the
 * call keeps no state (strtod follows the process locale, which cin never changes). */
int bvh_read_ex(const char *path, double fps, skel_seq *out, bvh_info *info, cin_err *err);

/* Frees the names and zeroes *info; safe on a zeroed or already freed one, and on NULL. */
void bvh_info_free(bvh_info *info);

#endif
