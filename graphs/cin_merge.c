/* cin-merge: folds fine-tuned models into one, in the order given, and writes the merge after
 * each arrival as DIR/merged_<k>.safetensors (k = models merged so far, from 1, or on from the
 * count of a merge it resumes). See docs/merge.md; the library part is graphs/merge.c. */
#include <errno.h>
#include <signal.h>
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
            "\n                 [--project-conv] [--sum-only GLOB ...] [--buffer GLOB ...] "
            "[--no-default-buffers]\n                 [--resume MERGED.safetensors] [--quiet] "
            "FT1.safetensors [FT2 ...]\n"
            "  --method        opcm (default), task-arithmetic, average\n"
            "  --alpha         OPCM singular-value share, in (0, 1) (default 0.5)\n"
            "  --lambda        task-arithmetic scale (default 0.3)\n"
            "  --variant       OPCM zeroing: fusion-bench (default) or opcm-diag-kept\n"
            "  --project-conv  OPCM: also project weights of >= 3 dims as [out, rest]\n"
            "  --sum-only      OPCM: sum, not project, the tensors matching GLOB (repeatable)\n"
            "  --buffer        tensors matching GLOB are buffers, not merged (repeatable;\n"
            "                  *running_mean and *running_var are, unless --no-default-buffers)\n"
            "  --resume        go on from a merge cin-merge wrote (same base and options)\n"
            "writes DIR/merged_<k>.safetensors after the k-th model\n");
}

typedef struct cli {
    merge_opts o;
    const char *base, *out_dir, *resume;
    int quiet;
    int first_model;       /* argv index of the first fine-tuned model */
    const char **sum_only; /* argc entries, n_sum_only used */
    const char **buffers;  /* the default patterns (n_default), then those of --buffer */
    int n_buffers, n_default, no_default_buffers;
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
    if (strcmp(a, "--no-default-buffers") == 0)
        return c->no_default_buffers = 1, 0;
    if (!v) {
        fprintf(stderr, "cin-merge: %s needs a value\n", a);
        return -1;
    }
    ++*i;
    if (strcmp(a, "--base") == 0)
        return c->base = v, 0;
    if (strcmp(a, "--out-dir") == 0)
        return c->out_dir = v, 0;
    if (strcmp(a, "--resume") == 0)
        return c->resume = v, 0;
    if (strcmp(a, "--alpha") == 0)
        return parse_double(a, v, &c->o.alpha);
    if (strcmp(a, "--lambda") == 0)
        return parse_double(a, v, &c->o.lambda);
    if (strcmp(a, "--sum-only") == 0)
        return c->sum_only[c->o.n_sum_only++] = v, 0;
    if (strcmp(a, "--buffer") == 0)
        return c->buffers[c->n_buffers++] = v, 0;
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
    c->o.sum_only = c->sum_only;
    for (c->n_default = 0; c->n_default < c->o.n_buffers; c->n_default++)
        c->buffers[c->n_default] = c->o.buffers[c->n_default];
    c->n_buffers = c->n_default;
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
    int skip = c->no_default_buffers ? c->n_default : 0;
    c->o.buffers = c->buffers + skip;
    c->o.n_buffers = c->n_buffers - skip;
    if (!c->base || !c->out_dir || i >= argc) {
        fprintf(stderr, "cin-merge: give --base, --out-dir and at least one fine-tuned model\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

/* mkdir -p: creates dir and any missing parents. */
static int make_dir(const char *dir)
{
    char path[4096];
    size_t len = strlen(dir);
    if (len >= sizeof path) {
        fprintf(stderr, "cin-merge: --out-dir is longer than %zu bytes\n", sizeof path - 1);
        return -1;
    }
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "cin-merge: cannot create %s: %s\n", path, strerror(errno));
            return -1;
        }
        path[i] = c;
    }
    return 0;
}

/* The process's peak resident memory so far, KiB (VmHWM, which counts this program's own
 * memory only, unlike getrusage's, which keeps that of a large parent across fork and exec);
 * -1 where /proc does not tell. */
static long peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

/* The one-line summary after each model; OPCM adds its norm statistics. */
static void report(const merge_state *m, const char *path)
{
    double mean, lambda;
    int k = merge_count(m);
    long kib = peak_rss_kib();
    fprintf(stderr, "cin-merge: %d model%s -> %s", k, k == 1 ? "" : "s", path);
    if (merge_opcm_stats(m, &mean, &lambda, NULL) == 0)
        fprintf(stderr, " (mean task-vector norm %.6g, lambda_t %.6g)", mean, lambda);
    if (kib > 0)
        fprintf(stderr, ", peak memory %.1f MB", kib / 1024.0);
    fputc('\n', stderr);
}

/* Merges argv[first_model ..] in order, writing the merge after each; the exit status. */
static int merge_run(const cli *c, int argc, char **argv)
{
    int rc = 0;
    merge_state *m;
    cin_err err = {0};
    if (merge_create(c->base, &c->o, &m, &err) != 0) {
        fprintf(stderr, "cin-merge: %s\n", err.msg);
        return 1;
    }
    if (c->resume)
        rc = merge_resume(m, c->resume, &err);
    for (int i = c->first_model; i < argc && rc == 0; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/merged_%d.safetensors", c->out_dir, merge_count(m) + 1);
        rc = merge_add(m, argv[i], &err);
        if (rc == 0)
            rc = merge_write(m, path, &err);
        if (rc == 0 && !c->quiet)
            report(m, path);
    }
    if (rc != 0)
        fprintf(stderr, "cin-merge: %s\n", err.msg);
    merge_free(m);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    cli c = {.sum_only = calloc((size_t)argc + 1, sizeof(char *)),
             .buffers = calloc((size_t)argc + 8, sizeof(char *))};
    if (!c.sum_only || !c.buffers)
        return fprintf(stderr, "cin-merge: out of memory\n"), 1;
    signal(SIGXFSZ, SIG_IGN); /* a file-size limit fails the write (EFBIG), as a full disk */
    int rc = parse_args(&c, argc, argv);
    if (rc == 0)
        rc = make_dir(c.out_dir) == 0 ? merge_run(&c, argc, argv) : 1;
    else
        rc = rc > 0 ? 0 : 2;
    free(c.sum_only);
    free(c.buffers);
    return rc;
}

