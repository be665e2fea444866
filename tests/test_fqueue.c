/* Suite "fqueue": the bounded frame queue between a reader and the workers, and the latency
 * histograms of the pipeline's figures. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdlib.h>

#include "fqueue.h"
#include "lathist.h"

/* Fills the producer's item with value v and queues it; the drop flag fq_push gave. */
static int push_value(fqueue *q, float v)
{
    fq_item *it = fq_filling(q);
    it->frame[0] = it->frame[1] = v;
    it->index = (int64_t)v;
    return fq_push(q);
}

static void test_frames_come_out_in_order(void)
{
    fqueue *q;
    cin_err err;
    CU_ASSERT_EQUAL_FATAL(fq_create(3, 2, &q, &err), 0);
    for (int v = 0; v < 3; v++)
        CU_ASSERT_EQUAL(push_value(q, (float)v), 0);
    CU_ASSERT(fq_full(q));
    for (int v = 0; v < 3; v++) {
        fq_item *it = fq_pop(q);
        CU_ASSERT_PTR_NOT_NULL_FATAL(it);
        CU_ASSERT_EQUAL(it->index, v);
        CU_ASSERT_EQUAL(it->frame[1], (float)v);
        fq_release(q, it);
    }
    CU_ASSERT_PTR_NULL(fq_pop(q));
    fq_free(q);
}

/* keep-newest: a full queue drops its oldest frame, so the newest cap frames remain. */
static void test_full_queue_drops_the_oldest_frame(void)
{
    fqueue *q;
    cin_err err;
    CU_ASSERT_EQUAL_FATAL(fq_create(2, 2, &q, &err), 0);
    int drops = 0;
    for (int v = 0; v < 7; v++)
        drops += push_value(q, (float)v);
    CU_ASSERT_EQUAL(drops, 5);
    CU_ASSERT_EQUAL(fq_count(q), 2);
    fq_item *a = fq_pop(q);
    CU_ASSERT_EQUAL(a->index, 5);
    fq_release(q, a);
    a = fq_pop(q);
    CU_ASSERT_EQUAL(a->index, 6);
    fq_release(q, a);
    fq_free(q);
}

/* A frame held by the consumer is never handed to the producer, however many frames the
 * producer pushes (and drops) meanwhile: buffers go round, none is shared. */
static void test_held_frame_is_never_overwritten(void)
{
    fqueue *q;
    cin_err err;
    CU_ASSERT_EQUAL_FATAL(fq_create(2, 2, &q, &err), 0);
    push_value(q, 1);
    fq_item *held = fq_pop(q);
    for (int v = 10; v < 50; v++) {
        CU_ASSERT(fq_filling(q)->frame != held->frame);
        push_value(q, (float)v);
    }
    CU_ASSERT_EQUAL(held->frame[0], 1.0f);
    CU_ASSERT_EQUAL(held->index, 1);
    fq_release(q, held);
    fq_item *a = fq_pop(q), *b = fq_pop(q);
    CU_ASSERT(a->index == 48 && b->index == 49 && a->frame != b->frame);
    fq_free(q);
}

static void test_histogram_quantiles_are_within_one_percent(void)
{
    lathist *h = malloc(sizeof *h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    lh_reset(h);
    CU_ASSERT_EQUAL(lh_quantile(h, 0.5), 0.0);
    /* 1..1000 ms: the exact p50 (rank 499) is 500, p99 (rank 989) is 990 */
    for (int i = 1000; i >= 1; i--)
        lh_add(h, (double)i);
    CU_ASSERT_DOUBLE_EQUAL(lh_quantile(h, 0.5), 500.0, 5.0);
    CU_ASSERT_DOUBLE_EQUAL(lh_quantile(h, 0.99), 990.0, 9.9);
    CU_ASSERT_DOUBLE_EQUAL(lh_quantile(h, 1.0), 1000.0, 0.0);     /* the exact maximum */
    CU_ASSERT_DOUBLE_EQUAL(lh_quantile(h, 0.0), 1.0, 0.0);        /* the exact minimum */
    free(h);
}

static void test_histogram_takes_extremes_and_merges(void)
{
    lathist *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a && b);
    lh_reset(a);
    lh_reset(b);
    lh_add(a, 0.0);         /* below the first bucket */
    lh_add(a, 1e9);         /* beyond the last */
    lh_add(b, 2.0);
    lh_add(b, 2.0);
    lh_merge(a, b);
    CU_ASSERT_EQUAL(a->count, 4);
    CU_ASSERT_DOUBLE_EQUAL(lh_quantile(a, 0.0), 0.0, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(lh_quantile(a, 0.5), 2.0, 0.02);
    CU_ASSERT_DOUBLE_EQUAL(lh_quantile(a, 1.0), 1e9, 0.0);
    free(a);
    free(b);
}

int test_fqueue_register(void)
{
    CU_pSuite s = CU_add_suite("fqueue", NULL, NULL);
    if (!s)
        return -1;
    struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        {"frames_come_out_in_order", test_frames_come_out_in_order},
        {"full_queue_drops_the_oldest_frame", test_full_queue_drops_the_oldest_frame},
        {"held_frame_is_never_overwritten", test_held_frame_is_never_overwritten},
        {"histogram_quantiles_are_within_one_percent",
         test_histogram_quantiles_are_within_one_percent},
        {"histogram_takes_extremes_and_merges", test_histogram_takes_extremes_and_merges},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
