/* One model output as the result sinks write it (jsonl.h, csvsink.h): where it came from,
 * when, and its best classes. */
#ifndef CIN_IO_RESULT_H
#define CIN_IO_RESULT_H

#include <stdint.h>

typedef struct sink_result {
    const char *source;         /* the source's id (source.id) */
    int64_t frame;              /* the frame's index in its source */
    double pts;                 /* the source's presentation time of the frame, seconds */
    double wall;                /* wall-clock time of the result, seconds since the Unix epoch */
    double latency_ms;          /* the model step that gave it */
    int k;                      /* classes listed, best first: */
    const int *idx;             /* [k] class indices */
    const float *score;         /* [k] their scores */
    const char *const *labels;  /* class names indexed by class, or NULL */
} sink_result;

#endif
