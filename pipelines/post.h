/* Post-processing of a model's class scores: softmax, top-k and the class labels that name
 * them. Runs once per output frame between the model step and the sinks; nothing here
 * allocates except post_labels_load.
 *
 *     post_labels *labels;
 *     if (post_labels_load("kinetics400.txt", 400, &labels, &err) != 0)
 *         return err.code;
 *     post_softmax(logits, 400);
 *     int idx[5];
 *     float val[5];
 *     post_topk(logits, 400, 5, idx, val);
 *     printf("%s %.3f\n", post_label(labels, idx[0]), val[0]);
 *     post_labels_free(labels);
 */
#ifndef CIN_POST_H
#define CIN_POST_H

#include "error.h"

typedef struct post_labels post_labels;

/* Reads a text file with one label per line (UTF-8; a final newline and CRLF endings are
 * allowed; blank lines are not). When num_classes > 0 the number of labels must equal it;
 * pass 0 to accept any count. Returns 0, CIN_E_IO (unreadable), CIN_E_FORMAT (blank line,
 * NUL byte, invalid UTF-8, no labels) or CIN_E_CONFIG (count != num_classes); *out is NULL on
 * error. The labels are read-only afterwards and may be shared between threads. */
int post_labels_load(const char *path, int num_classes, post_labels **out, cin_err *err);

/* Number of labels; 0 for NULL. */
int post_labels_count(const post_labels *l);

/* Label of class i, or NULL when l is NULL or i is out of range. Lives as long as l. */
const char *post_label(const post_labels *l, int i);

/* All labels as an array indexed by class (what io/jsonl.h takes), or NULL for NULL. */
const char *const *post_labels_array(const post_labels *l);

void post_labels_free(post_labels *l);

/* In place: x[i] = exp(x[i] - max) / sum_j exp(x[j] - max), so large logits do not
 * overflow. n <= 0 does nothing. */
void post_softmax(float *x, int n);

/* The k largest of x[0..n) into idx[0..k) and val[0..k), in descending order; equal values
 * keep the lower index first and NaN ranks below every number. When k > n the slots past n get
 * idx -1 and val -INFINITY. O(n * k). */
void post_topk(const float *x, int n, int k, int *idx, float *val);

#endif
