/* NTU RGB+D (60 and 120) skeleton files: the Kinect v2 text files of the dataset, read whole
 * into a skeleton sequence (skel.h) with the layout ST-GCN's and 2s-AGCN's data generators
 * give one sample: x, y, z of 25 joints per person, persons in the file's order per frame.
 *
 *     skel_seq seq;
 *     cin_err err;
 *     if (ntu_read("S001C001P001R001A001.skeleton", 2, &seq, &err) != 0)
 *         return err.code;                // err.msg: "<path>:<line>: expected ..., found ..."
 *     // seq.t frames, seq.data [t][3][25][2] in metres, camera space; seq.masked
 *     skel_seq_free(&seq);
 *
 * The file, line by line (numbers separated by spaces or tabs, "\n" or "\r\n" line ends):
 *     frame count
 *     per frame:  body count (0 allowed)
 *       per body: bodyID clipedEdges handLeftConfidence handLeftState handRightConfidence
 *                 handRightState isRestricted leanX leanY trackingState       (10 numbers)
 *                 joint count, which must be 25
 *                 per joint: x y z depthX depthY colorX colorY orientationW orientationX
 *                            orientationY orientationZ trackingState          (12 numbers)
 * Only x, y and z are kept; the other numbers are checked to be numbers and ignored. Counts
 * are decimal integers; other numbers are anything strtod reads whole in the C locale (so
 * "1.5E-05", "nan" and "inf" too), whatever the process locale is. Blank lines and any text
 * after the last frame other than white space are errors.
 *
 * Persons: body b of a frame is person b (as read_xyz in st-gcn and 2s-AGCN does, before any
 * choice of the most active bodies); a frame with fewer bodies than max_persons has zeros for
 * the rest. Bodies beyond max_persons in a frame are read, checked and dropped.
 *
 * Masking: a joint with a NaN or infinite x, y or z (or one beyond the float range) is stored
 * as 0 in all three channels. seq.masked counts the joints lost: 1 for each such joint and
 * 25 for each dropped body. ntu_read_with_counts says which is which.
 */
#ifndef CIN_IO_NTU_H
#define CIN_IO_NTU_H

#include <stdint.h>

#include "error.h"
#include "skel.h"

#define NTU_CHANNELS 3
#define NTU_JOINTS 25
/* Largest max_persons. */
#define NTU_MAX_PERSONS 64
/* Largest body count of one frame; a Kinect v2 tracks at most 6 bodies. */
#define NTU_MAX_BODIES 64
/* Largest file read, in bytes (the dataset's files are under 10 MB). */
#define NTU_MAX_FILE_BYTES (256L << 20)

/* What a file held beyond the sequence itself. */
typedef struct ntu_counts {
    int64_t bodies;          /* body records read, dropped ones included */
    int64_t dropped_bodies;  /* bodies beyond max_persons in their frame */
    int64_t masked_joints;   /* joints of kept bodies with a non-finite x, y or z */
    int64_t empty_frames;    /* frames with no body */
    int max_bodies;          /* most bodies in one frame */
} ntu_counts;

/* Reads the .skeleton file at path into *out: t = the file's frame count (0 allowed),
 * c = NTU_CHANNELS, v = NTU_JOINTS, m = max_persons (1 .. NTU_MAX_PERSONS), data
 * [t][c][v][m] malloc'd (never NULL on success) and owned by *out; free it with
 * skel_seq_free. The frame count is believed only up to what the file can hold (2 bytes a
 * frame), so no allocation is larger than 150 * max_persons bytes per byte of the file.
 * Returns 0, CIN_E_INVAL (NULL path or out, max_persons out of range), CIN_E_IO (cannot open
 * or read), CIN_E_FORMAT (truncated or malformed: err names the path, the line, what was
 * expected there and what was found), CIN_E_UNSUPPORTED (a file over NTU_MAX_FILE_BYTES) or
 * CIN_E_NOMEM. On error *out is zeroed (out not NULL). Thread-safe; no global state. */
int ntu_read(const char *path, int max_persons, skel_seq *out, cin_err *err);

/* ntu_read, and on success the counts in *counts (which may be NULL; zeroed on error). */
int ntu_read_with_counts(const char *path, int max_persons, skel_seq *out, ntu_counts *counts,
                         cin_err *err);

#endif
