/* Sequential model merging: fine-tuned models of one architecture arrive one at a time and are
 * folded into a running merge with OPCM (orthogonal projection, Tang et al. 2025, as in
 * fusion_bench method/opcm/opcm_general.py), continual task arithmetic or a running average.
 * Only the base (memory-mapped), the running merge and the newcomer are held, so memory does
 * not grow with the number of models. `cin-merge` (graphs/cin_merge.c) drives it.
 *
 *     merge_opts o = merge_opts_default(MERGE_OPCM);
 *     merge_state *m;
 *     cin_err err;
 *     if (merge_create("base.safetensors", &o, &m, &err) != 0)
 *         return fprintf(stderr, "%s\n", err.msg), err.code;
 *     for (int k = 0; k < n; k++) {
 *         if (merge_add(m, paths[k], &err) != 0 || merge_write(m, out[k], &err) != 0)
 *             break;
 *     }
 *     merge_free(m);
 *
 * Every call returns 0 or a negative CIN_E_* and fills err with a message naming the file and
 * the tensor. A merge_state is not thread-safe; distinct states are independent.
 */
#ifndef CIN_GRAPHS_MERGE_H
#define CIN_GRAPHS_MERGE_H

#include "error.h"

typedef enum merge_method {
    MERGE_OPCM,            /* orthogonal projection, adaptive rescaling */
    MERGE_TASK_ARITHMETIC, /* merged = base + lambda * sum of task vectors */
    MERGE_AVERAGE,         /* running mean of the fine-tuned weights */
} merge_method;

typedef enum merge_variant {
    MERGE_FUSION_BENCH,   /* projected diagonal and leading r x r block zeroed */
    MERGE_OPCM_DIAG_KEPT, /* tanganke/opcm: its diag().fill_(0) leaves the diagonal */
} merge_variant;

typedef struct merge_opts {
    merge_method method;
    merge_variant variant; /* OPCM only */
    double alpha;          /* OPCM: singular-value share kept out of the newcomer, (0, 1) */
    double lambda;         /* task arithmetic: scale of every task vector */
    int project_conv;      /* OPCM: also project tensors of >= 3 dimensions, seen as
                            * [shape[0], rest]; fusion_bench projects 2-D (Linear) only */
    const char *const *sum_only; /* OPCM: glob patterns (fnmatch) of tensors to sum, not
                                  * project, e.g. an nn.Embedding's weight; may be NULL. The
                                  * strings must outlive the merge_state. */
    int n_sum_only;
    const char *const *buffers; /* glob patterns of buffers, which fusion_bench does not merge
                                 * (it merges named_parameters()): they keep the first model's
                                 * values (the base's in task arithmetic), and OPCM counts them
                                 * in its norms but does not rescale them. Default: PyTorch's
                                 * BatchNorm statistics, "*running_mean" and "*running_var". */
    int n_buffers;
} merge_opts;

typedef struct merge_state merge_state;

/* The reference defaults: alpha 0.5, lambda 0.3, the fusion_bench variant, every 2-D tensor
 * projected and nothing else, BatchNorm running statistics as buffers. */
merge_opts merge_opts_default(merge_method method);

/* Parses "opcm", "task-arithmetic" or "average" (and the variant names "fusion-bench",
 * "opcm-diag-kept"); CIN_E_INVAL names the word and the accepted ones. */
int merge_method_parse(const char *s, merge_method *out, cin_err *err);
int merge_variant_parse(const char *s, merge_variant *out, cin_err *err);
const char *merge_method_name(merge_method m);

/* Opens the base model (every tensor must be F32 and finite) and allocates the running merge,
 * one float per base weight. The base file stays mapped until merge_free. */
int merge_create(const char *base_path, const merge_opts *opts, merge_state **out,
                 cin_err *err);

/* Folds the fine-tuned model at path into the merge. The file is checked first: the same
 * tensor names and shapes as the base, all F32 and finite (CIN_E_NOTFOUND, CIN_E_SHAPE,
 * CIN_E_FORMAT name the file and the tensor); on such an error the merge is unchanged. An
 * error after the check (CIN_E_NOMEM, an SVD that does not converge, a merge that overflows
 * float32) leaves the merge invalid: later merge_add and merge_write calls fail with
 * CIN_E_INVAL. */
int merge_add(merge_state *m, const char *path, cin_err *err);

/* Number of models merged so far. */
int merge_count(const merge_state *m);

/* OPCM: the mean single-task vector norm so far and lambda_t, the merged task vector's norm
 * before its last rescaling over that mean (1 after the first model). CIN_E_INVAL for the
 * other methods or before the first model. */
int merge_opcm_stats(const merge_state *m, double *mean_norm, double *lambda, cin_err *err);

/* Writes the current merge to path (atomically, safetensors F32, the base's tensor order) with
 * metadata: cin.merge.method and cin.merge.models, the options that shape the next merge
 * (cin.merge.alpha, .variant, .project_conv, .sum_only, .lambda, .buffers, as the method uses
 * them) and OPCM's running state (cin.merge.norm_sum, .lambda_t), so that merge_resume can go
 * on from it. CIN_E_INVAL before the first merge_add or after one that failed half-way. */
int merge_write(const merge_state *m, const char *path, cin_err *err);

/* Takes up a merge written by merge_write, on a state just made by merge_create over the same
 * base with the same options: later models fold in exactly as if the earlier ones had been
 * added in this state, and merge_count goes on from the file's count. The file must carry
 * the same settings (CIN_E_INVAL names the key, the file's value and this state's), its state
 * (CIN_E_FORMAT) and the base's tensors (as merge_add checks them). On error the state is as
 * merge_create left it. */
int merge_resume(merge_state *m, const char *path, cin_err *err);

void merge_free(merge_state *m);

#endif
