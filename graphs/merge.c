/* Sequential merging of fine-tuned models into one (see merge.h). The running merge is one
 * float array per base tensor; the base and each newcomer are read tensor by tensor from their
 * mappings, so the memory held is the base, the merge and the newcomer, whatever the count.
 * The OPCM projection takes the SVD from LAPACK (dgesdd in OpenBLAS), in double.
 */
#include "merge.h"

#include <cblas.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

/* LAPACK's divide-and-conquer SVD (Fortran calling convention, as OpenBLAS exports it). */
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda,
             double *s, double *u, const int *ldu, double *vt, const int *ldvt, double *work,
             const int *lwork, int *iwork, int *info, size_t jobz_len);

/* The projection workspace, allocated once by merge_create for the largest projected tensor
 * (so repeated arrivals do not fragment the heap): doubles, LAPACK's work array, iwork. */
typedef struct opcm_ws {
    double *mem, *work;
    int *iwork;
    size_t cap, icap;
    int lwork;
} opcm_ws;

typedef struct merge_tensor {
    const char *name; /* owned by the base st_file */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    int buffer; /* matches merge_opts.buffers: not merged */
    float *merged;
} merge_tensor;

struct merge_state {
    merge_opts o;
    st_file *base;
    int n;
    merge_tensor *t;
    float *base_buf; /* one base tensor at a time, max numel floats */
    float *task_buf; /* one newcomer tensor at a time */
    int count;
    int broken;         /* a merge_add failed half-way: the merge is no longer valid */
    double norm_sum;    /* OPCM: sum of the single-task vector norms seen so far */
    double prev_lambda; /* OPCM: norm of the merged task vector before its last rescaling,
                         * over the mean single-task norm (fusion_bench previous_lambda_t) */
    opcm_ws ws;
};

static const char *const default_buffers[] = {"*running_mean", "*running_var"};

merge_opts merge_opts_default(merge_method method)
{
    merge_opts o = {method, MERGE_FUSION_BENCH, 0.5, 0.3, 0, NULL, 0, default_buffers, 2};
    return o;
}

/* 1 when name matches one of the n glob patterns. */
static int merge_glob(const char *name, const char *const *patterns, int n)
{
    for (int i = 0; i < n; i++) {
        if (fnmatch(patterns[i], name, 0) == 0)
            return 1;
    }
    return 0;
}

static const char *const method_names[] = {"opcm", "task-arithmetic", "average"};
static const char *const variant_names[] = {"fusion-bench", "opcm-diag-kept"};

const char *merge_method_name(merge_method m)
{
    return (unsigned)m < 3 ? method_names[m] : "?";
}

int merge_method_parse(const char *s, merge_method *out, cin_err *err)
{
    for (int i = 0; i < 3; i++) {
        if (strcmp(s, method_names[i]) == 0)
            return *out = (merge_method)i, 0;
    }
    return cin_err_set(err, CIN_E_INVAL,
                       "unknown merge method '%s' (expected opcm, task-arithmetic, average)", s);
}

int merge_variant_parse(const char *s, merge_variant *out, cin_err *err)
{
    for (int i = 0; i < 2; i++) {
        if (strcmp(s, variant_names[i]) == 0)
            return *out = (merge_variant)i, 0;
    }
    return cin_err_set(err, CIN_E_INVAL,
                       "unknown OPCM variant '%s' (expected fusion-bench, opcm-diag-kept)", s);
}

int merge_count(const merge_state *m)
{
    return m->count;
}

/* ---- checking a model against the base ---- */

static void shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t at = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (at < len)
        snprintf(buf + at, len - at, "]");
}

static int same_shape(const st_info *a, const merge_tensor *t)
{
    if (a->ndim != t->ndim)
        return 0;
    for (int d = 0; d < t->ndim; d++) {
        if (a->shape[d] != t->shape[d])
            return 0;
    }
    return 1;
}

/* Every base tensor is in f with the base's shape and F32; f holds nothing else. */
static int merge_check(const merge_state *m, const st_file *f, cin_err *err)
{
    const char *path = st_path(f), *bpath = st_path(m->base);
    char want[160], got[160];
    st_info info;

    for (int i = 0; i < m->n; i++) {
        const merge_tensor *t = &m->t[i];
        if (st_find(f, t->name, &info, NULL) != 0)
            return cin_err_set(err, CIN_E_NOTFOUND, "%s: tensor '%s' of the base %s is missing",
                               path, t->name, bpath);
        if (strcmp(info.dtype, "F32") != 0)
            return cin_err_set(err, CIN_E_FORMAT, "%s: tensor '%s' is %s, expected F32", path,
                               t->name, info.dtype);
        if (!same_shape(&info, t)) {
            shape_str(want, sizeof want, t->ndim, t->shape);
            shape_str(got, sizeof got, info.ndim, info.shape);
            return cin_err_set(err, CIN_E_SHAPE, "%s: tensor '%s' has shape %s, the base %s",
                               path, t->name, got, want);
        }
    }
    for (int i = 0; i < st_count(f); i++) {
        st_info_at(f, i, &info);
        if (st_find(m->base, info.name, NULL, NULL) != 0)
            return cin_err_set(err, CIN_E_NOTFOUND, "%s: tensor '%s' is not in the base %s",
                               path, info.name, bpath);
    }
    return 0;
}

/* The first non-finite value of f's tensors, named; buf holds max numel floats. A NaN or an
 * infinity would reach LAPACK, whose SVD does not return on one. */
static int merge_check_finite(const merge_state *m, const st_file *f, float *buf, cin_err *err)
{
    for (int i = 0; i < m->n; i++) {
        const merge_tensor *t = &m->t[i];
        int rc = st_read_f32(f, t->name, t->ndim, t->shape, buf, err);
        if (rc != 0)
            return rc;
        for (size_t j = 0; j < t->numel; j++) {
            if (!isfinite(buf[j]))
                return cin_err_set(err, CIN_E_FORMAT, "%s: tensor '%s': element %zu is %g, "
                                   "expected a finite number", st_path(f), t->name, j,
                                   (double)buf[j]);
        }
    }
    return 0;
}

/* The merge after an arrival must still be finite: float32 sums of huge weights overflow. */
static int merge_check_result(const merge_state *m, const char *path, cin_err *err)
{
    for (int i = 0; i < m->n; i++) {
        const merge_tensor *t = &m->t[i];
        for (size_t j = 0; j < t->numel; j++) {
            if (!isfinite(t->merged[j]))
                return cin_err_set(err, CIN_E_INVAL, "%s: merging it overflowed float32 in "
                                   "tensor '%s' (element %zu)", path, t->name, j);
        }
    }
    return 0;
}

/* ---- creation ---- */

static int opcm_ws_init(merge_state *m, cin_err *err);

static int merge_take_base(merge_state *m, cin_err *err)
{
    size_t max = 1;
    st_info info;

    for (int i = 0; i < m->n; i++) {
        merge_tensor *t = &m->t[i];
        st_info_at(m->base, i, &info);
        if (strcmp(info.dtype, "F32") != 0)
            return cin_err_set(err, CIN_E_FORMAT, "%s: tensor '%s' is %s, expected F32",
                               st_path(m->base), info.name, info.dtype);
        t->name = info.name;
        t->ndim = info.ndim;
        memcpy(t->shape, info.shape, sizeof t->shape);
        t->numel = info.nbytes / sizeof(float);
        t->buffer = merge_glob(t->name, m->o.buffers, m->o.n_buffers);
        t->merged = malloc((t->numel ? t->numel : 1) * sizeof(float));
        if (!t->merged)
            return cin_err_set(err, CIN_E_NOMEM, "%s: no memory for tensor '%s'",
                               st_path(m->base), t->name);
        if (t->numel > max)
            max = t->numel;
    }
    m->base_buf = malloc(max * sizeof(float));
    m->task_buf = malloc(max * sizeof(float));
    if (!m->base_buf || !m->task_buf)
        return cin_err_set(err, CIN_E_NOMEM, "no memory for merge buffers (%zu floats)", max);
    return 0;
}

int merge_create(const char *base_path, const merge_opts *opts, merge_state **out,
                 cin_err *err)
{
    *out = NULL;
    if (opts->method == MERGE_OPCM && !(opts->alpha > 0.0 && opts->alpha < 1.0))
        return cin_err_set(err, CIN_E_INVAL, "OPCM alpha %g is outside (0, 1)", opts->alpha);

    merge_state *m = calloc(1, sizeof *m);
    if (!m)
        return cin_err_set(err, CIN_E_NOMEM, "no memory for a merge");
    m->o = *opts;
    m->prev_lambda = 1.0;
    int rc = st_open(base_path, &m->base, err);
    if (rc == 0) {
        m->n = st_count(m->base);
        m->t = calloc(m->n ? (size_t)m->n : 1, sizeof *m->t);
        rc = m->t ? merge_take_base(m, err)
                  : cin_err_set(err, CIN_E_NOMEM, "%s: no memory for the tensor list",
                                base_path);
    }
    if (rc == 0)
        rc = merge_check_finite(m, m->base, m->base_buf, err);
    if (rc == 0 && opts->method == MERGE_OPCM)
        rc = opcm_ws_init(m, err);
    if (rc != 0) {
        merge_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void merge_free(merge_state *m)
{
    if (!m)
        return;
    for (int i = 0; m->t && i < m->n; i++)
        free(m->t[i].merged);
    free(m->t);
    free(m->base_buf);
    free(m->task_buf);
    free(m->ws.mem);
    free(m->ws.work);
    free(m->ws.iwork);
    st_close(m->base);
    free(m);
}

/* ---- reading one tensor pair ---- */

/* base_buf <- base tensor i; task_buf <- the newcomer's (already checked by merge_check). */
static int merge_read(merge_state *m, const st_file *f, int i, cin_err *err)
{
    const merge_tensor *t = &m->t[i];
    int rc = st_read_f32(m->base, t->name, t->ndim, t->shape, m->base_buf, err);
    if (rc == 0)
        rc = st_read_f32(f, t->name, t->ndim, t->shape, m->task_buf, err);
    return rc;
}

/* ||f - base|| over every tensor (fusion_bench utils.get_task_vector_norm). */
static int merge_task_norm(merge_state *m, const st_file *f, double *norm, cin_err *err)
{
    double sq = 0.0;
    for (int i = 0; i < m->n; i++) {
        int rc = merge_read(m, f, i, err);
        if (rc != 0)
            return rc;
        for (size_t j = 0; j < m->t[i].numel; j++) {
            double d = (double)m->task_buf[j] - m->base_buf[j];
            sq += d * d;
        }
    }
    *norm = sqrt(sq);
    return 0;
}

/* ---- the OPCM projection ---- */

/* The leading r singular values' share of the sum first exceeds alpha at index r (0-based),
 * and the block [:r, :r] is removed: fusion_bench opcm_general.OPCM.merge_linear_weights
 * takes argmax of (cumsum(s) / sum(s) > alpha), which is 0 when no entry exceeds alpha and
 * also when sum(s) is 0 (the comparison with NaN is false). */
static int opcm_split_rank(const double *s, int k, double alpha)
{
    double sum = 0.0, c = 0.0;
    for (int i = 0; i < k; i++)
        sum += s[i];
    if (!(sum > 0.0))
        return 0;
    for (int i = 0; i < k; i++) {
        c += s[i];
        if (c / sum > alpha)
            return i;
    }
    return 0;
}

/* One projection's matrices carved from mem: a (m n), tv (m n), ua: U of prev (m k), w (m k),
 * vat: V^T of prev (k n), p (k k), s (k). */
typedef struct opcm_mats {
    double *a, *tv, *ua, *w, *vat, *p, *s;
} opcm_mats;

static size_t opcm_doubles(size_t m, size_t n, size_t k)
{
    return 2 * m * n + 2 * m * k + k * n + k * k + k;
}

static opcm_mats opcm_carve(const opcm_ws *ws, size_t m, size_t n, size_t k)
{
    opcm_mats x;
    x.a = ws->mem;
    x.tv = x.a + m * n;
    x.ua = x.tv + m * n;
    x.w = x.ua + m * k;
    x.vat = x.w + m * k;
    x.p = x.vat + k * n;
    x.s = x.p + k * k;
    return x;
}

/* LAPACK's optimal work size for the SVD of an [m, n] row-major matrix, or -1. */
static int opcm_lwork(int m, int n)
{
    int k = m < n ? m : n, lwork = -1, info = 0, iw = 0;
    double q = 0.0, dummy = 0.0;
    dgesdd_("S", &n, &m, &dummy, &n, &dummy, &dummy, &n, &dummy, &k, &q, &lwork, &iw, &info,
            1);
    return info == 0 ? (int)q : -1;
}

/* SVD of prev [m, n] row-major, already in x.a. LAPACK is column-major, so it sees prev^T
 * [n, m] and returns prev^T = U' S V'^T: U' (n x k) read row-major is V^T of prev, V'^T
 * (k x m) read row-major is U of prev (m x k). */
static int opcm_svd(opcm_ws *ws, const opcm_mats *x, int m, int n, const char *name,
                    cin_err *err)
{
    int k = m < n ? m : n, info = 0;
    dgesdd_("S", &n, &m, x->a, &n, x->s, x->vat, &n, x->ua, &k, ws->work, &ws->lwork,
            ws->iwork, &info, 1);
    if (info != 0)
        return cin_err_set(err, CIN_E_INVAL, "tensor '%s': the SVD did not converge (info %d)",
                           name, info);
    return 0;
}

/* Keeps in p only what the reference zeroes: the block [:r, :r] and, unless the variant keeps
 * it, the whole diagonal (fusion_bench's projected_task_tv.diagonal().fill_(0)). */
static void opcm_mask(double *p, int k, int r, merge_variant variant)
{
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < k; j++) {
            int zeroed = (i < r && j < r) || (i == j && variant == MERGE_FUSION_BENCH);
            if (!zeroed)
                p[(size_t)i * k + j] = 0.0;
        }
    }
}

/* task <- U P' V^T with P = U^T task V over the full SVD of prev and P' = P with the blocks
 * above zeroed. Only the leading k = min(m, n) columns of U and V meet a zeroed entry, so this
 * equals task - U_k mask(P_k) V_k^T, which needs the thin SVD only. */
static int opcm_project(opcm_ws *ws, const float *prev, float *task, int m, int n,
                        const merge_opts *o, const char *name, cin_err *err)
{
    int k = m < n ? m : n;
    size_t mn = (size_t)m * n;
    opcm_mats x = opcm_carve(ws, (size_t)m, (size_t)n, (size_t)k);
    for (size_t i = 0; i < mn; i++) {
        x.a[i] = prev[i];
        x.tv[i] = task[i];
    }
    int rc = opcm_svd(ws, &x, m, n, name, err);
    if (rc != 0)
        return rc;
    int r = opcm_split_rank(x.s, k, o->alpha);

    /* w = tv V (m x k); p = U^T w (k x k); masked; w = U p; a = w V^T (m x n). */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, n, 1.0, x.tv, n, x.vat, n, 0.0,
                x.w, k);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, k, m, 1.0, x.ua, k, x.w, k, 0.0,
                x.p, k);
    opcm_mask(x.p, k, r, o->variant);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, k, 1.0, x.ua, k, x.p, k, 0.0,
                x.w, k);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0, x.w, k, x.vat, n, 0.0,
                x.a, n);
    for (size_t i = 0; i < mn; i++)
        task[i] = (float)(x.tv[i] - x.a[i]);
    return 0;
}

/* 2-D tensors are Linear weights and projected, unless named in sum_only; with project_conv,
 * tensors of 3 or more dimensions too, as [shape[0], numel / shape[0]] (their row-major
 * layout already is). */
static int opcm_projected(const merge_tensor *t, const merge_opts *o, int *rows, int *cols)
{
    if (t->numel == 0 || t->ndim < 2 || (t->ndim > 2 && !o->project_conv))
        return 0;
    if (t->buffer || merge_glob(t->name, o->sum_only, o->n_sum_only))
        return 0;
    if (t->shape[0] > INT32_MAX || (int64_t)(t->numel / t->shape[0]) > INT32_MAX)
        return 0;
    *rows = (int)t->shape[0];
    *cols = (int)(t->numel / (size_t)t->shape[0]);
    return 1;
}

/* Sizes the workspace for the largest projected tensor and allocates it. */
static int opcm_ws_init(merge_state *m, cin_err *err)
{
    opcm_ws *ws = &m->ws;
    ws->cap = ws->icap = 1;
    ws->lwork = 1;
    for (int i = 0; i < m->n; i++) {
        int rows, cols;
        if (!opcm_projected(&m->t[i], &m->o, &rows, &cols))
            continue;
        size_t k = (size_t)(rows < cols ? rows : cols);
        size_t need = opcm_doubles((size_t)rows, (size_t)cols, k);
        int lwork = opcm_lwork(rows, cols);
        if (lwork < 0)
            return cin_err_set(err, CIN_E_INVAL, "tensor '%s': dgesdd workspace query failed",
                               m->t[i].name);
        ws->cap = need > ws->cap ? need : ws->cap;
        ws->icap = 8 * k > ws->icap ? 8 * k : ws->icap;
        ws->lwork = lwork > ws->lwork ? lwork : ws->lwork;
    }
    ws->mem = malloc(ws->cap * sizeof(double));
    ws->work = malloc((size_t)ws->lwork * sizeof(double));
    ws->iwork = malloc(ws->icap * sizeof(int));
    if (!ws->mem || !ws->work || !ws->iwork)
        return cin_err_set(err, CIN_E_NOMEM, "%s: no memory for the projection workspace "
                           "(%zu doubles)", st_path(m->base), ws->cap + (size_t)ws->lwork);
    return 0;
}

/* ---- one arrival per method ---- */

static int opcm_first(merge_state *m, const st_file *f, cin_err *err)
{
    double norm = 0.0;
    int rc = merge_task_norm(m, f, &norm, err);
    for (int i = 0; rc == 0 && i < m->n; i++)
        rc = st_read_f32(f, m->t[i].name, -1, NULL, m->t[i].merged, err);
    m->norm_sum = norm;
    m->prev_lambda = 1.0;
    return rc;
}

/* merged tv of tensor i <- prev_lambda * (merged - base) + projected (task - base); adds its
 * squared norm to *sq. A buffer keeps the first model's value and still counts in the norm
 * (fusion_bench merges named_parameters() but measures the state_dict). */
static int opcm_fold(merge_state *m, const st_file *f, int i, double *sq, cin_err *err)
{
    merge_tensor *t = &m->t[i];
    float *b = m->base_buf, *x = m->task_buf, *y = t->merged;
    int rows, cols, rc = merge_read(m, f, i, err);
    if (rc != 0)
        return rc;
    if (t->buffer) {
        for (size_t j = 0; j < t->numel; j++)
            *sq += ((double)y[j] - b[j]) * ((double)y[j] - b[j]);
        return 0;
    }
    for (size_t j = 0; j < t->numel; j++) {
        y[j] -= b[j];
        x[j] -= b[j];
    }
    if (opcm_projected(t, &m->o, &rows, &cols)) {
        rc = opcm_project(&m->ws, y, x, rows, cols, &m->o, t->name, err);
        if (rc != 0)
            return rc;
    }
    for (size_t j = 0; j < t->numel; j++) {
        y[j] = (float)(m->prev_lambda * y[j]) + x[j];
        *sq += (double)y[j] * y[j];
    }
    return 0;
}

/* fusion_bench opcm_general.OPCM.run: after the layer-wise merge, the merged task vector is
 * rescaled to the mean single-task norm and lambda_t = its norm before that / the mean. */
static int opcm_next(merge_state *m, const st_file *f, cin_err *err)
{
    double norm = 0.0, sq = 0.0;
    int rc = merge_task_norm(m, f, &norm, err);
    if (rc != 0)
        return rc;
    double mean = (m->norm_sum + norm) / (m->count + 1);

    for (int i = 0; i < m->n; i++) {
        if ((rc = opcm_fold(m, f, i, &sq, err)) != 0)
            return rc;
    }
    double merged_norm = sqrt(sq);
    if (!(merged_norm > 0.0))
        return cin_err_set(err, CIN_E_INVAL, "%s: the merged task vector is zero: every model "
                           "so far equals the base", st_path(f));
    for (int i = 0; i < m->n; i++) {
        merge_tensor *t = &m->t[i];
        if (t->buffer)
            continue;
        if ((rc = st_read_f32(m->base, t->name, -1, NULL, m->base_buf, err)) != 0)
            return rc;
        for (size_t j = 0; j < t->numel; j++)
            t->merged[j] = m->base_buf[j] + (float)(t->merged[j] * (mean / merged_norm));
    }
    m->norm_sum += norm;
    m->prev_lambda = merged_norm / mean;
    return 0;
}

/* fusion_bench opcm/task_arithmetic.py: merged starts at the base, += lambda (task - base);
 * buffers stay the base's. */
static int task_arithmetic_add(merge_state *m, const st_file *f, cin_err *err)
{
    float lambda = (float)m->o.lambda;
    for (int i = 0; i < m->n; i++) {
        merge_tensor *t = &m->t[i];
        int rc = merge_read(m, f, i, err);
        if (rc != 0)
            return rc;
        if (t->buffer) {
            if (m->count == 0)
                memcpy(t->merged, m->base_buf, t->numel * sizeof(float));
            continue;
        }
        for (size_t j = 0; j < t->numel; j++) {
            float prev = m->count ? t->merged[j] : m->base_buf[j];
            t->merged[j] = prev + lambda * (m->task_buf[j] - m->base_buf[j]);
        }
    }
    return 0;
}

/* fusion_bench opcm/weight_average.py: merged <- (merged * k + task) / (k + 1); buffers stay
 * the first model's. */
static int average_add(merge_state *m, const st_file *f, cin_err *err)
{
    float k = (float)m->count;
    for (int i = 0; i < m->n; i++) {
        merge_tensor *t = &m->t[i];
        if (t->buffer && m->count > 0)
            continue;
        int rc = st_read_f32(f, t->name, t->ndim, t->shape, m->task_buf, err);
        if (rc != 0)
            return rc;
        for (size_t j = 0; j < t->numel; j++) {
            float prev = m->count ? t->merged[j] : 0.0f;
            t->merged[j] = (prev * k + m->task_buf[j]) / (k + 1.0f);
        }
    }
    return 0;
}

int merge_add(merge_state *m, const char *path, cin_err *err)
{
    if (m->broken)
        return cin_err_set(err, CIN_E_INVAL, "%s: an earlier model failed half-way through "
                           "the merge, which is no longer valid", path);
    st_file *f;
    int rc = st_open(path, &f, err);
    if (rc != 0)
        return rc;
    rc = merge_check(m, f, err);
    rc = rc ? rc : merge_check_finite(m, f, m->task_buf, err);
    if (rc == 0) {
        if (m->o.method == MERGE_OPCM)
            rc = m->count ? opcm_next(m, f, err) : opcm_first(m, f, err);
        else if (m->o.method == MERGE_TASK_ARITHMETIC)
            rc = task_arithmetic_add(m, f, err);
        else
            rc = average_add(m, f, err);
        rc = rc ? rc : merge_check_result(m, path, err);
        if (rc != 0)
            m->broken = 1;
        else
            m->count++;
    }
    st_close(f);
    return rc;
}

int merge_opcm_stats(const merge_state *m, double *mean_norm, double *lambda, cin_err *err)
{
    if (m->o.method != MERGE_OPCM || m->count == 0)
        return cin_err_set(err, CIN_E_INVAL, "OPCM statistics need an OPCM merge of at least "
                           "one model (method %s, %d models)", merge_method_name(m->o.method),
                           m->count);
    *mean_norm = m->norm_sum / m->count;
    *lambda = m->prev_lambda;
    return 0;
}

/* ---- metadata: the settings that shape a merge, and its state ---- */

enum { MERGE_META_MAX = 12, MERGE_META_LEN = 2048 };

/* Key-value pairs for st_write's meta list; values live in val. */
typedef struct merge_meta {
    const char *kv[2 * MERGE_META_MAX + 1];
    char val[MERGE_META_MAX][MERGE_META_LEN];
    int n, truncated;
} merge_meta;

/* Registers key and returns its value's buffer, MERGE_META_LEN bytes. */
static char *meta_slot(merge_meta *mm, const char *key)
{
    char *v = mm->val[mm->n];
    mm->kv[2 * mm->n] = key;
    mm->kv[2 * mm->n + 1] = v;
    mm->n++;
    mm->kv[2 * mm->n] = NULL;
    return v;
}

static void meta_add(merge_meta *mm, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void meta_add(merge_meta *mm, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(meta_slot(mm, key), MERGE_META_LEN, fmt, ap);
    va_end(ap);
    mm->truncated |= len < 0 || len >= MERGE_META_LEN;
}

/* The shortest of %.15g, %.16g, %.17g that reads back as v: 0.8, not 0.80000000000000004. */
static void meta_add_double(merge_meta *mm, const char *key, double v)
{
    char buf[32];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    meta_add(mm, key, "%s", buf);
}

/* Glob patterns, one per line. */
static void meta_add_globs(merge_meta *mm, const char *key, const char *const *p, int n)
{
    char *v = meta_slot(mm, key);
    size_t at = 0;
    v[0] = '\0';
    for (int i = 0; i < n && at < MERGE_META_LEN; i++)
        at += (size_t)snprintf(v + at, MERGE_META_LEN - at, i ? "\n%s" : "%s", p[i]);
    mm->truncated |= at >= MERGE_META_LEN;
}

/* Every option that changes the result of the next merge_add: a resumed merge must have the
 * same. Numbers are written so that they read back exactly. */
static void merge_settings(const merge_opts *o, merge_meta *mm)
{
    meta_add(mm, "cin.merge.method", "%s", merge_method_name(o->method));
    if (o->method == MERGE_OPCM) {
        meta_add_double(mm, "cin.merge.alpha", o->alpha);
        meta_add(mm, "cin.merge.variant", "%s", variant_names[o->variant]);
        meta_add(mm, "cin.merge.project_conv", "%d", o->project_conv ? 1 : 0);
        meta_add_globs(mm, "cin.merge.sum_only", o->sum_only, o->n_sum_only);
    }
    if (o->method == MERGE_TASK_ARITHMETIC)
        meta_add_double(mm, "cin.merge.lambda", o->lambda);
    meta_add_globs(mm, "cin.merge.buffers", o->buffers, o->n_buffers);
}

int merge_write(const merge_state *m, const char *path, cin_err *err)
{
    if (m->count == 0 || m->broken)
        return cin_err_set(err, CIN_E_INVAL, "%s: %s", path,
                           m->broken ? "a model failed half-way through the merge, which is "
                                       "no longer valid"
                                     : "no model has been merged yet");
    merge_meta *mm = calloc(1, sizeof *mm);
    st_out *outs = calloc(m->n ? (size_t)m->n : 1, sizeof *outs);
    int rc = mm && outs ? 0 : cin_err_set(err, CIN_E_NOMEM, "%s: no memory for the tensor "
                                          "list", path);
    for (int i = 0; rc == 0 && i < m->n; i++) {
        outs[i].name = m->t[i].name;
        outs[i].ndim = m->t[i].ndim;
        memcpy(outs[i].shape, m->t[i].shape, sizeof outs[i].shape);
        outs[i].data = m->t[i].merged;
    }
    if (rc == 0) {
        merge_settings(&m->o, mm);
        meta_add(mm, "cin.merge.models", "%d", m->count);
        if (m->o.method == MERGE_OPCM) {
            meta_add_double(mm, "cin.merge.norm_sum", m->norm_sum);
            meta_add_double(mm, "cin.merge.lambda_t", m->prev_lambda);
        }
        rc = mm->truncated ? cin_err_set(err, CIN_E_INVAL, "%s: the --sum-only and --buffer "
                                         "patterns exceed %d bytes of metadata", path,
                                         MERGE_META_LEN - 1)
                           : st_write(path, outs, m->n, mm->kv, err);
    }
    free(outs);
    free(mm);
    return rc;
}

/* ---- resuming from a written merge ---- */

/* Names the setting that differs; glob lists, one pattern a line, read as "a, b". */
static int resume_mismatch(const st_file *f, const char *key, const char *got,
                           const char *want, cin_err *err)
{
    char shown[2][256];
    const char *from[2] = {got, want};
    for (int k = 0; k < 2; k++) {
        size_t n = 0;
        for (const char *p = from[k]; *p && n + 3 < sizeof shown[k]; p++) {
            if (*p == '\n')
                shown[k][n++] = ',', shown[k][n++] = ' ';
            else
                shown[k][n++] = *p;
        }
        shown[k][n] = '\0';
    }
    return cin_err_set(err, CIN_E_INVAL, "%s: metadata '%s' is '%s' but this merge has '%s'; "
                       "resume with the options the merge was made with", st_path(f), key,
                       shown[0], shown[1]);
}

static int resume_check_settings(const merge_state *m, const st_file *f, cin_err *err)
{
    merge_meta *mm = calloc(1, sizeof *mm);
    if (!mm)
        return cin_err_set(err, CIN_E_NOMEM, "no memory");
    merge_settings(&m->o, mm);
    int rc = 0;
    for (int i = 0; rc == 0 && i < mm->n; i++) {
        const char *key = mm->kv[2 * i], *want = mm->kv[2 * i + 1], *got = st_meta(f, key);
        if (!got)
            rc = cin_err_set(err, CIN_E_FORMAT, "%s: no metadata '%s': not a merge written by "
                             "cin-merge with method %s", st_path(f), key,
                             merge_method_name(m->o.method));
        else if (strcmp(got, want) != 0)
            rc = resume_mismatch(f, key, got, want, err);
    }
    free(mm);
    return rc;
}

/* A number of the merge's metadata, finite and > 0. */
static int resume_number(const st_file *f, const char *key, double *out, cin_err *err)
{
    const char *s = st_meta(f, key);
    char *end = NULL;
    double v = s ? strtod(s, &end) : 0.0;
    if (!s || end == s || *end || !(v > 0.0) || !isfinite(v))
        return cin_err_set(err, CIN_E_FORMAT, "%s: metadata '%s' is %s%s%s, expected a "
                           "positive number", st_path(f), key, s ? "'" : "missing", s ? s : "",
                           s ? "'" : "");
    *out = v;
    return 0;
}

static int resume_state(const merge_state *m, const st_file *f, double state[3], cin_err *err)
{
    int rc = resume_number(f, "cin.merge.models", &state[0], err);
    if (rc == 0 && (state[0] != floor(state[0]) || state[0] >= INT32_MAX))
        rc = cin_err_set(err, CIN_E_FORMAT, "%s: metadata 'cin.merge.models' is '%s', "
                         "expected a whole count", st_path(f), st_meta(f, "cin.merge.models"));
    state[1] = 0.0;
    state[2] = 1.0;
    if (rc == 0 && m->o.method == MERGE_OPCM)
        rc = resume_number(f, "cin.merge.norm_sum", &state[1], err);
    if (rc == 0 && m->o.method == MERGE_OPCM)
        rc = resume_number(f, "cin.merge.lambda_t", &state[2], err);
    return rc;
}

int merge_resume(merge_state *m, const char *path, cin_err *err)
{
    if (m->count || m->broken)
        return cin_err_set(err, CIN_E_INVAL, "%s: a merge resumes before its first model",
                           path);
    st_file *f;
    double state[3];
    int rc = st_open(path, &f, err);
    if (rc != 0)
        return rc;
    rc = resume_check_settings(m, f, err);
    rc = rc ? rc : merge_check(m, f, err);
    rc = rc ? rc : merge_check_finite(m, f, m->task_buf, err);
    rc = rc ? rc : resume_state(m, f, state, err);
    for (int i = 0; rc == 0 && i < m->n; i++)
        rc = st_read_f32(f, m->t[i].name, m->t[i].ndim, m->t[i].shape, m->t[i].merged, err);
    if (rc == 0) {
        m->count = (int)state[0];
        m->norm_sum = state[1];
        m->prev_lambda = state[2];
    }
    st_close(f);
    return rc;
}
