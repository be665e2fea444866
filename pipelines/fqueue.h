/* A bounded queue of decoded frames between a source's reader thread and the workers that
 * step the model. Frames are never copied: the queue owns cap + 2 frame buffers, one filled
 * by the producer, up to cap queued, one stepped by the consumer, and hands them round.
 * Not locked itself: the pipeline calls it under its own mutex.
 *
 *     fq_item *it = fq_filling(q);            // producer: decode into it->frame
 *     ... under the lock: if full, wait or fq_push drops the oldest ...
 *     fq_push(q);                             // queued; fq_filling(q) is a fresh buffer
 *     fq_item *s = fq_pop(q);                 // consumer: the oldest frame, held until
 *     fq_release(q, s);                       // it is done with
 */
#ifndef CIN_FQUEUE_H
#define CIN_FQUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct fq_item {
    float *frame;       /* frame_floats floats */
    int64_t index;      /* the source's frame index */
    double pts;         /* seconds */
    double ready_ms;    /* monotonic time the frame was decoded, or due (source.realtime) */
    int reset;          /* first frame after a reconnection: the streams start again */
} fq_item;

typedef struct fqueue fqueue;

/* A queue of at most cap frames of frame_floats floats, all allocated here. */
int fq_create(int cap, size_t frame_floats, fqueue **out, cin_err *err);
void fq_free(fqueue *q);

/* The buffer the producer fills next; it belongs to the producer until fq_push. */
fq_item *fq_filling(fqueue *q);

int fq_count(const fqueue *q);
int fq_full(const fqueue *q);

/* Queues the filled item. A full queue first drops its oldest frame: returns 1 then, else 0. */
int fq_push(fqueue *q);

/* The oldest queued frame, now the consumer's until fq_release; NULL when empty. One item
 * at a time may be held. */
fq_item *fq_pop(fqueue *q);
void fq_release(fqueue *q, fq_item *it);

#endif
