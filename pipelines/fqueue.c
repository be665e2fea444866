/* The frame queue: a ring of item indices over cap + 2 items, and a stack of the free ones. */
#include "fqueue.h"

#include <stdlib.h>

struct fqueue {
    int cap;
    fq_item *items;     /* cap + 2 */
    float *frames;      /* one block for every item's frame */
    int *ring;          /* cap indices into items, oldest at head */
    int head, count;
    int *spare;         /* free item indices */
    int n_spare;
    int filling;        /* the producer's item */
};

int fq_create(int cap, size_t frame_floats, fqueue **out, cin_err *err)
{
    fqueue *q = calloc(1, sizeof *q);
    int n = cap + 2;
    *out = NULL;
    if (q) {
        q->cap = cap;
        q->items = calloc((size_t)n, sizeof *q->items);
        q->frames = malloc(sizeof(float) * frame_floats * (size_t)n);
        q->ring = malloc(sizeof(int) * (size_t)cap);
        q->spare = malloc(sizeof(int) * (size_t)n);
    }
    if (!q || !q->items || !q->frames || !q->ring || !q->spare) {
        fq_free(q);
        return cin_err_set(err, CIN_E_NOMEM, "pipeline: out of memory for a queue of %d "
                           "frames", cap);
    }
    for (int i = 0; i < n; i++) {
        q->items[i].frame = q->frames + frame_floats * (size_t)i;
        q->spare[i] = n - 1 - i;
    }
    q->n_spare = n - 1;
    q->filling = q->spare[q->n_spare];
    *out = q;
    return 0;
}

void fq_free(fqueue *q)
{
    if (!q)
        return;
    free(q->items);
    free(q->frames);
    free(q->ring);
    free(q->spare);
    free(q);
}

fq_item *fq_filling(fqueue *q)
{
    return &q->items[q->filling];
}

int fq_count(const fqueue *q)
{
    return q->count;
}

int fq_full(const fqueue *q)
{
    return q->count == q->cap;
}

int fq_push(fqueue *q)
{
    int dropped = fq_full(q);
    if (dropped) {
        q->spare[q->n_spare++] = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }
    q->ring[(q->head + q->count++) % q->cap] = q->filling;
    q->filling = q->spare[--q->n_spare];
    return dropped;
}

fq_item *fq_pop(fqueue *q)
{
    if (q->count == 0)
        return NULL;
    int i = q->ring[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    return &q->items[i];
}

void fq_release(fqueue *q, fq_item *it)
{
    q->spare[q->n_spare++] = (int)(it - q->items);
}
