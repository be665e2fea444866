/* Containers of the dataflow graph: sequences, parallel branches with their reduction, and
 * the delay lines the graph inserts where branches of different delays meet. They compose the
 * temporal geometry of their children (see node.h) and lay out the children's state blocks
 * one after another inside their own. */
#include "node.h"

#include <stdlib.h>
#include <string.h>

typedef struct seq {
    cin_node base;
    int n;
    cin_node **child;
    size_t *state_off;  /* byte offset of each child's state block */
    size_t buf;         /* floats of one intermediate frame buffer */
} seq;

typedef struct parallel {
    cin_node base;
    int n;
    cin_reduce reduce;
    cin_node **branch;
    size_t *state_off;
} parallel;

/* A delay line of d frames; a centre crop is one with d more steps of warm-up. */
typedef struct delay_line {
    cin_node base;
    int d;
    int warm;       /* steps without output: d, or 2 d for a crop */
} delay_line;

typedef struct delay_state {
    int64_t t;
} delay_state;

/* ---- generic node helpers ---- */

int cin_node_clip_frames(const cin_node *n, int t_in)
{
    if (n->ops->clip_frames)
        return n->ops->clip_frames(n, t_in);
    int span = t_in + 2 * n->pad - n->rf;
    return span < 0 ? 0 : span / n->stride + 1;
}

size_t cin_node_clip_scratch(const cin_node *n, int t_in)
{
    return n->ops->clip_scratch ? n->ops->clip_scratch(n, t_in) : 0;
}

int64_t cin_node_macs_step(const cin_node *n)
{
    return n->ops->macs_step ? n->ops->macs_step(n) : 0;
}

int64_t cin_node_macs_clip(const cin_node *n, int t_in)
{
    return n->ops->macs_clip ? n->ops->macs_clip(n, t_in) : 0;
}

void cin_node_free(cin_node *n)
{
    if (n)
        n->ops->destroy(n);
}

static void free_nodes(cin_node **nodes, int n)
{
    for (int i = 0; i < n; i++)
        cin_node_free(nodes[i]);
}

/* ---- sequence ---- */

static int seq_step(const cin_node *n, void *state, const float *in, float *out, float *scratch)
{
    const seq *q = (const seq *)n;
    float *buf[2] = {scratch, scratch + q->buf};
    float *rest = scratch + 2 * q->buf;
    const float *cur = in;
    for (int i = 0; i < q->n; i++) {
        const cin_node *c = q->child[i];
        float *dst = i == q->n - 1 ? out : buf[i & 1];
        if (!c->ops->step(c, (char *)state + q->state_off[i], cur, dst, rest))
            return 0;
        cur = dst;
    }
    return 1;
}

/* Floats of the largest intermediate clip between two children. */
static size_t seq_clip_buf(const seq *q, int t_in)
{
    size_t most = 0;
    int t = t_in;
    for (int i = 0; i < q->n - 1; i++) {
        t = cin_node_clip_frames(q->child[i], t);
        size_t sz = (size_t)t * cin_dims_size(q->child[i]->out);
        most = sz > most ? sz : most;
    }
    return most;
}

static size_t seq_clip_scratch(const cin_node *n, int t_in)
{
    const seq *q = (const seq *)n;
    size_t most = 0;
    int t = t_in;
    for (int i = 0; i < q->n; i++) {
        size_t s = cin_node_clip_scratch(q->child[i], t);
        most = s > most ? s : most;
        t = cin_node_clip_frames(q->child[i], t);
    }
    return 2 * seq_clip_buf(q, t_in) + most;
}

static int seq_clip_frames(const cin_node *n, int t_in)
{
    const seq *q = (const seq *)n;
    int t = t_in;
    for (int i = 0; i < q->n && t > 0; i++)
        t = cin_node_clip_frames(q->child[i], t);
    return t;
}

static void seq_forward(const cin_node *n, const float *in, int t_in, float *out, float *scratch)
{
    const seq *q = (const seq *)n;
    size_t buf = seq_clip_buf(q, t_in);
    float *bufs[2] = {scratch, scratch + buf};
    float *rest = scratch + 2 * buf;
    const float *cur = in;
    int t = t_in;
    for (int i = 0; i < q->n; i++) {
        float *dst = i == q->n - 1 ? out : bufs[i & 1];
        q->child[i]->ops->forward(q->child[i], cur, t, dst, rest);
        t = cin_node_clip_frames(q->child[i], t);
        cur = dst;
    }
}

/* A child after a cumulative stride s runs once every s input steps. */
static int64_t seq_macs_step(const cin_node *n)
{
    const seq *q = (const seq *)n;
    int64_t total = 0;
    int s = 1;
    for (int i = 0; i < q->n; i++) {
        total += cin_node_macs_step(q->child[i]) / s;
        s *= q->child[i]->stride;
    }
    return total;
}

static int64_t seq_macs_clip(const cin_node *n, int t_in)
{
    const seq *q = (const seq *)n;
    int64_t total = 0;
    int t = t_in;
    for (int i = 0; i < q->n; i++) {
        total += cin_node_macs_clip(q->child[i], t);
        t = cin_node_clip_frames(q->child[i], t);
    }
    return total;
}

static size_t seq_param_bytes(const cin_node *n)
{
    const seq *q = (const seq *)n;
    size_t total = 0;
    for (int i = 0; i < q->n; i++)
        total += cin_node_param_bytes(q->child[i]);
    return total;
}

static void seq_destroy(cin_node *n)
{
    seq *q = (seq *)n;
    free_nodes(q->child, q->n);
    free(q->child);
    free(q->state_off);
    free(q);
}

static const cin_node_ops seq_ops = {
    .kind = "sequence",
    .step = seq_step,
    .forward = seq_forward,
    .clip_scratch = seq_clip_scratch,
    .clip_frames = seq_clip_frames,
    .macs_step = seq_macs_step,
    .macs_clip = seq_macs_clip,
    .param_bytes = seq_param_bytes,
    .destroy = seq_destroy,
};

static int seq_check_links(cin_node **children, int n, cin_err *err)
{
    for (int i = 1; i < n; i++) {
        cin_dims a = children[i - 1]->out, b = children[i]->in;
        if (a.c != b.c || a.h != b.h || a.w != b.w)
            return cin_err_set(err, CIN_E_SHAPE,
                               "sequence: %s gives [%d, %d, %d] frames but %s takes [%d, %d, %d]",
                               children[i - 1]->ops->kind, a.c, a.h, a.w,
                               children[i]->ops->kind, b.c, b.h, b.w);
    }
    return 0;
}

/* Front to back: the receptive field grows by (k - 1) times the stride so far, and each
 * child's delay counts in the steps that reach it. */
static void seq_geometry(seq *q)
{
    cin_node *b = &q->base;
    int rf = 1, delay = 0, stride = 1;
    size_t state = 0, scratch = 0, buf = 0;
    for (int i = 0; i < q->n; i++) {
        const cin_node *c = q->child[i];
        rf += (c->rf - 1) * stride;
        delay += cin_node_delay(c) * stride;
        stride *= c->stride;
        q->state_off[i] = state;
        state += c->state_bytes;
        scratch = c->step_scratch > scratch ? c->step_scratch : scratch;
        if (i < q->n - 1 && cin_dims_size(c->out) > buf)
            buf = cin_dims_size(c->out);
    }
    b->rf = rf;
    b->pad = rf - 1 - delay;
    b->stride = stride;
    b->state_bytes = state;
    q->buf = cin_align(buf * sizeof(float)) / sizeof(float);
    b->step_scratch = 2 * q->buf + scratch;
}

int cin_seq_create(cin_node **children, int n, cin_node **out, cin_err *err)
{
    *out = NULL;
    if (n < 1) {
        free_nodes(children, n);
        return cin_err_set(err, CIN_E_INVAL, "sequence: no children");
    }
    int rc = seq_check_links(children, n, err);
    seq *q = rc ? NULL : calloc(1, sizeof *q);
    if (q) {
        q->child = malloc(sizeof *q->child * n);
        q->state_off = malloc(sizeof *q->state_off * n);
    }
    if (rc || !q || !q->child || !q->state_off) {
        if (q) {
            free(q->child);
            free(q->state_off);
            free(q);
        }
        free_nodes(children, n);
        return rc ? rc : cin_err_set(err, CIN_E_NOMEM, "sequence: out of memory");
    }
    memcpy(q->child, children, sizeof *children * n);
    q->n = n;
    q->base.ops = &seq_ops;
    q->base.in = children[0]->in;
    q->base.out = children[n - 1]->out;
    seq_geometry(q);
    *out = &q->base;
    return 0;
}

/* ---- delay line ---- */

static float *delay_ring(void *state)
{
    return (float *)((char *)state + cin_align(sizeof(delay_state)));
}

static int delay_step(const cin_node *n, void *state, const float *in, float *out, float *scratch)
{
    (void)scratch;
    const delay_line *dl = (const delay_line *)n;
    size_t sz = cin_dims_size(n->in);
    if (dl->d == 0) {
        memcpy(out, in, sz * sizeof(float));
        return 1;
    }
    delay_state *s = state;
    float *slot = delay_ring(state) + (size_t)(s->t % dl->d) * sz;
    int ready = s->t >= dl->warm;
    if (ready)
        memcpy(out, slot, sz * sizeof(float));
    memcpy(slot, in, sz * sizeof(float));
    s->t++;
    return ready;
}

/* Clips: the identity for a delay; a crop drops d frames at each end. */
static void delay_forward(const cin_node *n, const float *in, int t_in, float *out,
                          float *scratch)
{
    (void)scratch;
    const delay_line *dl = (const delay_line *)n;
    int skip = dl->warm - dl->d, t_out = cin_node_clip_frames(n, t_in);
    size_t sz = cin_dims_size(n->in);
    memcpy(out, in + (size_t)skip * sz, (size_t)t_out * sz * sizeof(float));
}

static int delay_frames(const cin_node *n, int t_in)
{
    const delay_line *dl = (const delay_line *)n;
    int t_out = t_in - 2 * (dl->warm - dl->d);
    return t_out > 0 ? t_out : 0;
}

static void delay_destroy(cin_node *n)
{
    free(n);
}

static const cin_node_ops delay_ops = {
    .kind = "delay",
    .step = delay_step,
    .forward = delay_forward,
    .clip_frames = delay_frames,
    .destroy = delay_destroy,
};

static int delay_new(cin_dims dims, int d, int warm, cin_node **out, cin_err *err)
{
    *out = NULL;
    if (d < 0)
        return cin_err_set(err, CIN_E_INVAL, "delay: negative delay %d", d);
    delay_line *dl = calloc(1, sizeof *dl);
    if (!dl)
        return cin_err_set(err, CIN_E_NOMEM, "delay: out of memory");
    dl->d = d;
    dl->warm = warm;
    dl->base.ops = &delay_ops;
    dl->base.in = dl->base.out = dims;
    dl->base.rf = warm + 1;
    dl->base.pad = 0;
    dl->base.stride = 1;
    if (d > 0)
        dl->base.state_bytes = cin_align(sizeof(delay_state)) +
                               cin_align((size_t)d * cin_dims_size(dims) * sizeof(float));
    *out = &dl->base;
    return 0;
}

int cin_delay_create(cin_dims dims, int d, cin_node **out, cin_err *err)
{
    return delay_new(dims, d, d, out, err);
}

int cin_crop_create(cin_dims dims, int s, cin_node **out, cin_err *err)
{
    return delay_new(dims, s, 2 * s, out, err);
}

/* ---- parallel branches ---- */

static void reduce_into(cin_reduce r, float *acc, const float *x, size_t n)
{
    if (r == CIN_REDUCE_SUM)
        for (size_t i = 0; i < n; i++)
            acc[i] += x[i];
    else
        for (size_t i = 0; i < n; i++)
            acc[i] *= x[i];
}

/* For concatenation, branch i writes its channels straight into the output frame. */
static size_t concat_offset(const parallel *p, int i)
{
    size_t off = 0;
    for (int j = 0; j < i; j++)
        off += cin_dims_size(p->branch[j]->out);
    return off;
}

static int par_step(const cin_node *n, void *state, const float *in, float *out, float *scratch)
{
    const parallel *p = (const parallel *)n;
    size_t sz = cin_dims_size(n->out);
    float *buf = scratch;
    float *rest = scratch + cin_align(sz * sizeof(float)) / sizeof(float);
    int ready = 1;
    for (int i = 0; i < p->n; i++) {
        const cin_node *b = p->branch[i];
        void *st = (char *)state + p->state_off[i];
        float *dst = p->reduce == CIN_REDUCE_CONCAT ? out + concat_offset(p, i)
                     : i == 0                       ? out
                                                    : buf;
        ready &= b->ops->step(b, st, in, dst, rest);
        if (ready && i > 0 && p->reduce != CIN_REDUCE_CONCAT)
            reduce_into(p->reduce, out, buf, sz);
    }
    return ready;
}

static void par_forward(const cin_node *n, const float *in, int t_in, float *out, float *scratch)
{
    const parallel *p = (const parallel *)n;
    int t = cin_node_clip_frames(n, t_in);
    size_t sz = cin_dims_size(n->out) * (size_t)t;
    float *buf = scratch;
    float *rest = scratch + sz;
    for (int i = 0; i < p->n; i++) {
        const cin_node *b = p->branch[i];
        if (p->reduce == CIN_REDUCE_CONCAT) {
            size_t bsz = cin_dims_size(b->out), off = concat_offset(p, i);
            b->ops->forward(b, in, t_in, buf, rest);
            for (int f = 0; f < t; f++)
                memcpy(out + f * cin_dims_size(n->out) + off, buf + f * bsz, bsz * sizeof(float));
            continue;
        }
        b->ops->forward(b, in, t_in, i == 0 ? out : buf, rest);
        if (i > 0)
            reduce_into(p->reduce, out, buf, sz);
    }
}

static int par_clip_frames(const cin_node *n, int t_in)
{
    const parallel *p = (const parallel *)n;
    int t = cin_node_clip_frames(p->branch[0], t_in);
    for (int i = 1; i < p->n; i++)
        if (cin_node_clip_frames(p->branch[i], t_in) != t)
            return 0; /* branches disagree on clip length: the clip cannot be combined */
    return t;
}

static size_t par_clip_scratch(const cin_node *n, int t_in)
{
    const parallel *p = (const parallel *)n;
    size_t most = 0;
    for (int i = 0; i < p->n; i++) {
        size_t s = cin_node_clip_scratch(p->branch[i], t_in);
        most = s > most ? s : most;
    }
    return cin_dims_size(n->out) * (size_t)cin_node_clip_frames(n, t_in) + most;
}

static int64_t par_macs_step(const cin_node *n)
{
    const parallel *p = (const parallel *)n;
    int64_t total = 0;
    for (int i = 0; i < p->n; i++)
        total += cin_node_macs_step(p->branch[i]);
    return total;
}

static int64_t par_macs_clip(const cin_node *n, int t_in)
{
    const parallel *p = (const parallel *)n;
    int64_t total = 0;
    for (int i = 0; i < p->n; i++)
        total += cin_node_macs_clip(p->branch[i], t_in);
    return total;
}

static size_t par_param_bytes(const cin_node *n)
{
    const parallel *p = (const parallel *)n;
    size_t total = 0;
    for (int i = 0; i < p->n; i++)
        total += cin_node_param_bytes(p->branch[i]);
    return total;
}

static void par_destroy(cin_node *n)
{
    parallel *p = (parallel *)n;
    free_nodes(p->branch, p->n);
    free(p->branch);
    free(p->state_off);
    free(p);
}

static const cin_node_ops par_ops = {
    .kind = "parallel",
    .step = par_step,
    .forward = par_forward,
    .clip_scratch = par_clip_scratch,
    .clip_frames = par_clip_frames,
    .macs_step = par_macs_step,
    .macs_clip = par_macs_clip,
    .param_bytes = par_param_bytes,
    .destroy = par_destroy,
};

/* Output frame of the reduction, or an error naming the branch that does not fit. */
static int par_out_dims(cin_node **b, int n, cin_reduce r, cin_dims *out, cin_err *err)
{
    *out = b[0]->out;
    for (int i = 1; i < n; i++) {
        cin_dims d = b[i]->out;
        int same_hw = d.h == out->h && d.w == out->w;
        if (r == CIN_REDUCE_CONCAT && same_hw) {
            out->c += d.c;
            continue;
        }
        if (r != CIN_REDUCE_CONCAT && same_hw && d.c == out->c)
            continue;
        return cin_err_set(err, CIN_E_SHAPE,
                           "parallel: branch %d gives [%d, %d, %d] frames, branch 0 [%d, %d, %d]",
                           i, d.c, d.h, d.w, b[0]->out.c, b[0]->out.h, b[0]->out.w);
    }
    return 0;
}

/* Replaces NULL branches by identities and delays every branch to the slowest one. */
static int par_align(cin_node **b, int n, cin_dims in, cin_err *err)
{
    int most = 0, stride = 0;
    for (int i = 0; i < n; i++) {
        if (!b[i])
            continue;
        most = cin_node_delay(b[i]) > most ? cin_node_delay(b[i]) : most;
        if (stride && b[i]->stride != stride)
            return cin_err_set(err, CIN_E_UNSUPPORTED,
                               "parallel: branch strides differ (%d and %d)", stride, b[i]->stride);
        stride = b[i]->stride;
    }
    stride = stride ? stride : 1;
    for (int i = 0; i < n; i++) {
        int rc = 0;
        if (!b[i]) {
            rc = cin_delay_create(in, most, &b[i], err);
        } else if (cin_node_delay(b[i]) < most) {
            int gap = most - cin_node_delay(b[i]);
            if (gap % stride)
                return cin_err_set(err, CIN_E_UNSUPPORTED,
                                   "parallel: delay gap %d is not a multiple of stride %d", gap,
                                   stride);
            cin_node *pair[2] = {b[i], NULL};
            rc = cin_delay_create(b[i]->out, gap / stride, &pair[1], err);
            b[i] = NULL;
            rc = rc ? (cin_node_free(pair[0]), rc) : cin_seq_create(pair, 2, &b[i], err);
        }
        if (rc)
            return rc;
    }
    return 0;
}

static void par_geometry(parallel *p)
{
    cin_node *base = &p->base;
    size_t state = 0, scratch = 0;
    int rf = 1;
    for (int i = 0; i < p->n; i++) {
        const cin_node *b = p->branch[i];
        p->state_off[i] = state;
        state += b->state_bytes;
        scratch = b->step_scratch > scratch ? b->step_scratch : scratch;
        rf = b->rf > rf ? b->rf : rf;
    }
    base->rf = rf;
    base->pad = rf - 1 - cin_node_delay(p->branch[0]);
    base->stride = p->branch[0]->stride;
    base->state_bytes = state;
    base->step_scratch = cin_align(cin_dims_size(base->out) * sizeof(float)) / sizeof(float) +
                         scratch;
}

int cin_parallel_create(cin_node **branches, int n, cin_reduce reduce, cin_node **out,
                        cin_err *err)
{
    *out = NULL;
    cin_dims in = {0, 0, 0};
    for (int i = 0; i < n; i++)
        if (branches[i])
            in = branches[i]->in;
    int rc = n < 1 || in.c == 0 ? cin_err_set(err, CIN_E_INVAL, "parallel: no branches")
                                : par_align(branches, n, in, err);
    cin_dims od;
    rc = rc ? rc : par_out_dims(branches, n, reduce, &od, err);
    parallel *p = rc ? NULL : calloc(1, sizeof *p);
    if (p) {
        p->branch = malloc(sizeof *p->branch * n);
        p->state_off = malloc(sizeof *p->state_off * n);
    }
    if (rc || !p || !p->branch || !p->state_off) {
        if (p) {
            free(p->branch);
            free(p->state_off);
            free(p);
        }
        free_nodes(branches, n);
        return rc ? rc : cin_err_set(err, CIN_E_NOMEM, "parallel: out of memory");
    }
    memcpy(p->branch, branches, sizeof *branches * n);
    p->n = n;
    p->reduce = reduce;
    p->base.ops = &par_ops;
    p->base.in = in;
    p->base.out = od;
    par_geometry(p);
    *out = &p->base;
    return 0;
}

/* ---- builder list ---- */

void cin_node_list_push(cin_node_list *l, cin_node *node)
{
    if (!node) {
        l->failed = 1;
        return;
    }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        cin_node **items = realloc(l->items, sizeof *items * cap);
        if (!items) {
            cin_node_free(node);
            l->failed = 1;
            return;
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = node;
}

int cin_node_list_seq(cin_node_list *l, cin_node **out, cin_err *err)
{
    int rc;
    if (l->failed) {
        free_nodes(l->items, l->n);
        /* keep the message of the operator that failed to build */
        rc = err && err->code ? err->code : cin_err_set(err, CIN_E_NOMEM, "graph: out of memory");
        *out = NULL;
    } else {
        rc = cin_seq_create(l->items, l->n, out, err);
    }
    free(l->items);
    memset(l, 0, sizeof *l);
    return rc;
}

size_t cin_node_param_bytes(const cin_node *n)
{
    return n->ops->param_bytes ? n->ops->param_bytes(n) : n->param_bytes;
}
