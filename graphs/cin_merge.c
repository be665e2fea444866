/* cin-merge: folds fine-tuned models into one, in the order given, and writes the merge after
 * each arrival as DIR/merged_<k>.safetensors (k = models merged so far, from 1). See
 * docs/merge.md; the library part is graphs/merge.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "merge.h"

static void usage(FILE *to)
{
    fprintf(to,
            "usage: cin-merge --base BASE.safetensors --out-dir DIR [--method opcm|"
            "task-arithmetic|average]\n"
            "                 [--alpha A] [--lambda L] [--variant fusion-bench|opcm-diag-kept]"
            "\n                 [--project-conv] [--quiet] FT1.safetensors [FT2 ...]\n"
            "  --method        opcm (default), task-arithmetic, average\n"
            "  --alpha         OPCM singular-value share, in (0, 1) (default 0.5)\n"
            "  --lambda        task-arithmetic scale (default 0.3)\n"
            "  --variant       OPCM zeroing: fusion-bench (default) or opcm-diag-kept\n"
            "  --project-conv  OPCM: also project weights of >= 3 dims as [out, rest]\n"
            "writes DIR/merged_<k>.safetensors after the k-th model\n");
}

typedef struct cli {
    merge_opts o;
    const char *base, *out_dir;
    int quiet;
    int first_model; /* argv index of the first fine-tuned model */
} cli;

static int parse_double(const char *flag, const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    if (errno || end == s || *end) {
        fprintf(stderr, "cin-merge: %s expects a number, found '%s'\n", flag, s);
        return -1;
    }
    return 0;
}

/* One option with its value at argv[*i + 1]; advances *i past what it used. */
static int parse_option(cli *c, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    cin_err err = {0};
    if (strcmp(a, "--project-conv") == 0)
        return c->o.project_conv = 1, 0;
    if (strcmp(a, "--quiet") == 0)
        return c->quiet = 1, 0;
    if (!v) {
        fprintf(stderr, "cin-merge: %s needs a value\n", a);
        return -1;
    }
    ++*i;
    if (strcmp(a, "--base") == 0)
        return c->base = v, 0;
    if (strcmp(a, "--out-dir") == 0)
        return c->out_dir = v, 0;
    if (strcmp(a, "--alpha") == 0)
        return parse_double(a, v, &c->o.alpha);
    if (strcmp(a, "--lambda") == 0)
        return parse_double(a, v, &c->o.lambda);
    int rc = 0;
    if (strcmp(a, "--method") == 0)
        rc = merge_method_parse(v, &c->o.method, &err);
    else if (strcmp(a, "--variant") == 0)
        rc = merge_variant_parse(v, &c->o.variant, &err);
    else
        rc = cin_err_set(&err, CIN_E_INVAL, "unknown option %s", a);
    if (rc != 0)
        fprintf(stderr, "cin-merge: %s\n", err.msg);
    return rc ? -1 : 0;
}

static int parse_args(cli *c, int argc, char **argv)
{
    int i = 1;
    c->o = merge_opts_default(MERGE_OPCM);
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return usage(stdout), 1;
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (parse_option(c, argc, argv, &i) != 0)
            return -1;
    }
    c->first_model = i;
    if (!c->base || !c->out_dir || i >= argc) {
        usage(stderr);
        return -1;
    }
    return 0;
}

static int make_dir(const char *dir)
{
    if (mkdir(dir, 0777) == 0 || errno == EEXIST)
        return 0;
    fprintf(stderr, "cin-merge: cannot create %s: %s\n", dir, strerror(errno));
    return -1;
}

int main(int argc, char **argv)
{
    cli c = {0};
    int rc = parse_args(&c, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (make_dir(c.out_dir) != 0)
        return 1;

    merge_state *m;
    cin_err err = {0};
    if (merge_create(c.base, &c.o, &m, &err) != 0) {
        fprintf(stderr, "cin-merge: %s\n", err.msg);
        return 1;
    }
    for (int i = c.first_model; i < argc && rc == 0; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/merged_%d.safetensors", c.out_dir, merge_count(m) + 1);
        rc = merge_add(m, argv[i], &err);
        if (rc == 0)
            rc = merge_write(m, path, &err);
        if (rc == 0 && !c.quiet)
            fprintf(stderr, "cin-merge: %s: %d models -> %s\n", merge_method_name(c.o.method),
                    merge_count(m), path);
    }
    if (rc != 0)
        fprintf(stderr, "cin-merge: %s\n", err.msg);
    merge_free(m);
    return rc ? 1 : 0;
}
