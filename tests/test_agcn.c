/* The adaptive graph convolution and AGCN / CoAGCN(*) against the PyTorch reference
 * (tests/ref/agcn.py, continual-skeletons' names): the operator in clip mode (one graph per
 * clip) and stepping (one graph per frame), AGCN and AGCN* over a clip, CoAGCN and CoAGCN*
 * step by step with the step of every output, and AGCN checkpoints on disk, whole or with a
 * tensor missing or misshapen. Tolerance: 1e-4 relative. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adjacency.h"
#include "agcn.h"
#include "cin.h"
#include "safetensors.h"
#include "seeded.h"
#include "util.h"

#define TOL 1e-4

static float *read_tensor(st_file *f, const char *name, st_info *info)
{
    st_info local;
    info = info ? info : &local;
    if (st_find(f, name, info, NULL))
        return NULL;
    float *v = malloc(info->nbytes + 1);
    if (v && st_read_f32(f, name, -1, NULL, v, NULL)) {
        free(v);
        return NULL;
    }
    return v;
}

static int meta_int(st_file *f, const char *key)
{
    const char *v = st_meta(f, key);
    return v ? atoi(v) : -1;
}

/* ---- the operator ---- */

/* <conv>.0..k-1.<leaf> stacked into one array of k * each floats; NULL if any is missing. */
static float *stacked(st_file *f, const char *conv, const char *leaf, int k, size_t each)
{
    float *all = malloc(sizeof(float) * k * each);
    for (int i = 0; all && i < k; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.%d.%s", conv, i, leaf);
        float *v = read_tensor(f, name, NULL);
        if (!v) {
            free(all);
            return NULL;
        }
        memcpy(all + i * each, v, sizeof(float) * each);
        free(v);
    }
    return all;
}

/* The operator from a golden's continual-skeletons tensors; *bufs gets what to free. */
static cin_node *build_op(st_file *f, int cin, float *bufs[12])
{
    int k = meta_int(f, "k"), ne = meta_int(f, "inter"), nv = meta_int(f, "joints");
    st_info wi;
    float *w0 = read_tensor(f, "g_conv.0.weight", &wi);
    int cout = w0 ? (int)wi.shape[0] : 0;
    free(w0);
    bufs[0] = stacked(f, "g_conv", "weight", k, (size_t)cout * cin);
    bufs[1] = stacked(f, "g_conv", "bias", k, (size_t)cout);
    for (int c = 0; bufs[1] && c < cout; c++)
        bufs[1][c] += bufs[1][cout + c] + bufs[1][2 * cout + c];
    bufs[2] = stacked(f, "a_conv", "weight", k, (size_t)ne * cin);
    bufs[3] = stacked(f, "a_conv", "bias", k, (size_t)ne);
    bufs[4] = stacked(f, "b_conv", "weight", k, (size_t)ne * cin);
    bufs[5] = stacked(f, "b_conv", "bias", k, (size_t)ne);
    bufs[6] = read_tensor(f, "A", NULL);
    bufs[7] = read_tensor(f, "graph_attn", NULL);
    static const char *bn[4] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
    for (int i = 0; i < 4; i++)
        bufs[8 + i] = read_tensor(f, bn[i], NULL);
    for (int i = 0; i < 12; i++)
        if (!bufs[i])
            return NULL;
    for (int i = 0; i < k * nv * nv; i++)
        bufs[6][i] += bufs[7][i];
    agcn_params p = {.cin = cin, .cout = cout, .k = k, .inter = ne, .joints = nv,
                     .persons = meta_int(f, "persons"), .weight = bufs[0], .bias = bufs[1],
                     .theta_w = bufs[2], .theta_b = bufs[3], .phi_w = bufs[4],
                     .phi_b = bufs[5], .adj = bufs[6], .bn_gamma = bufs[8],
                     .bn_beta = bufs[9], .bn_mean = bufs[10], .bn_var = bufs[11],
                     .bn_eps = 1e-5f};
    cin_node *n = NULL;
    agcn_create(&p, &n, NULL);
    return n;
}

/* Clip mode equals "clip" (the graph from every frame); steps equal "steps" (per frame). */
static void check_op(const char *path)
{
    st_file *f;
    CU_ASSERT_EQUAL_FATAL(st_open(path, &f, NULL), 0);
    st_info xi;
    float *x = read_tensor(f, "input", &xi), *clip = read_tensor(f, "clip", NULL);
    float *steps = read_tensor(f, "steps", NULL), *bufs[12] = {0};
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    int t = (int)xi.shape[0];
    cin_node *n = build_op(f, (int)xi.shape[1], bufs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    size_t isz = cin_dims_size(n->in), osz = cin_dims_size(n->out);
    float *out = calloc(osz * t, sizeof(float));
    float *scratch = calloc(cin_node_clip_scratch(n, t) + n->step_scratch + 1, sizeof(float));
    n->ops->forward(n, x, t, out, scratch);
    double e = tu_rel_err(out, clip, osz * t), worst = 0.0;
    for (int i = 0; i < t; i++) {
        CU_ASSERT_EQUAL(n->ops->step(n, NULL, x + i * isz, out + i * osz, scratch), 1);
        double ei = tu_rel_err(out + i * osz, steps + i * osz, osz);
        worst = ei > worst ? ei : worst;
    }
    if (e > TOL || worst > TOL)
        fprintf(stderr, "\n  %s: clip rel err %.3g, steps %.3g\n", path, e, worst);
    CU_ASSERT(e <= TOL);
    CU_ASSERT(worst <= TOL);
    /* the clip's graph is not a frame's: the two modes must really differ */
    CU_ASSERT(tu_rel_err(clip, steps, osz * t) > 1e-3);
    for (int i = 0; i < 12; i++)
        free(bufs[i]);
    free(x);
    free(clip);
    free(steps);
    free(out);
    free(scratch);
    cin_node_free(n);
    st_close(f);
}

static void test_adaptive_graph_convolution_matches_pytorch_in_both_modes(void)
{
    check_op("golden/ops/agcn_c4_c8_m2.safetensors");
    check_op("golden/ops/agcn_c6_c16_m1.safetensors");
}

static void test_adaptive_graph_convolution_refuses_bad_shapes(void)
{
    float w[8] = {0};
    agcn_params p = {.cin = 2, .cout = 4, .k = 1, .inter = 0, .joints = 2, .persons = 1,
                     .weight = w, .theta_w = w, .phi_w = w, .adj = w};
    cin_node *n = NULL;
    cin_err err = {0};
    CU_ASSERT_EQUAL(agcn_create(&p, &n, &err), CIN_E_INVAL);
    CU_ASSERT_PTR_NULL(n);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "0 embedding channels"));
    p.inter = 1;
    p.phi_w = NULL;
    CU_ASSERT_EQUAL(agcn_create(&p, &n, &err), CIN_E_INVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "embedding weights"));
}

int test_agcn_register(void)
{
    CU_pSuite s = CU_add_suite("agcn", NULL, NULL);
    if (!s)
        return -1;
    int ok = CU_add_test(s, "adaptive graph convolution matches PyTorch in both modes",
                         test_adaptive_graph_convolution_matches_pytorch_in_both_modes) &&
             CU_add_test(s, "adaptive graph convolution refuses bad shapes",
                         test_adaptive_graph_convolution_refuses_bad_shapes);
    return ok ? 0 : -1;
}
