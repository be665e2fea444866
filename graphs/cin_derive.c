/* cin-derive: fuses a task's structured pruning masks and adapters into a smaller X3D, ST-GCN
 * or transformer checkpoint that cin-run and cin-bench load like the source. See
 * docs/derive.md; the library part is graphs/derive*.c. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derive.h"

static void usage(FILE *to)
{
    fprintf(to,
            "usage: cin-derive --source SRC.safetensors --out OUT.safetensors\n"
            "                  [--masks MASKS.safetensors | --ratio R [--stage-ratio S]\n"
            "                  [--norm l1|l2]]\n"
            "                  [--adapters TASK.safetensors] [--write-masks M.safetensors]\n"
            "  --masks        0/1 masks <layer>.out_mask (docs/derive.md), e.g. X3D's\n"
            "                 <block>.branch2.conv_a.out_mask, ST-GCN's <block>.gcn.conv.out_mask\n"
            "  --ratio        fraction of each block's inner filters to prune, [0, 1)\n"
            "  --stage-ratio  also prune this fraction of each stage's (X3D) or block's\n"
            "                 (ST-GCN) output channels\n"
            "  --norm         rank filters by l1 (default) or l2 norm\n"
            "  --adapters     SPLoRA <layer>.adapter.rows/.cols, SPPaRA <layer>.adapter\n"
            "  --write-masks  write the masks used, to fine-tune elsewhere\n");
}

static int parse_value(derive_opts *o, const char *a, const char *v)
{
    char *end;
    if (strcmp(a, "--source") == 0)
        return o->source = v, 0;
    if (strcmp(a, "--out") == 0)
        return o->out = v, 0;
    if (strcmp(a, "--masks") == 0)
        return o->masks = v, 0;
    if (strcmp(a, "--adapters") == 0)
        return o->adapters = v, 0;
    if (strcmp(a, "--write-masks") == 0)
        return o->write_masks = v, 0;
    if (strcmp(a, "--norm") == 0 && (strcmp(v, "l1") == 0 || strcmp(v, "l2") == 0))
        return o->norm = v[1] == '1' ? DERIVE_L1 : DERIVE_L2, 0;
    if (strcmp(a, "--norm") == 0)
        return fprintf(stderr, "cin-derive: --norm '%s', expected l1 or l2\n", v), -1;
    if (strcmp(a, "--ratio") == 0 || strcmp(a, "--stage-ratio") == 0) {
        double *dst = a[2] == 'r' ? &o->ratio : &o->stage_ratio;
        errno = 0;
        *dst = strtod(v, &end);
        if (errno || end == v || *end || !(*dst >= 0.0 && *dst < 1.0))
            return fprintf(stderr, "cin-derive: %s expects a fraction in [0, 1), found '%s'\n",
                           a, v), -1;
        return 0;
    }
    return fprintf(stderr, "cin-derive: unknown option %s\n", a), -1;
}

/* 0, 1 for --help, -1 on a bad command line. */
static int parse_args(derive_opts *o, int argc, char **argv)
{
    int ratio = 0, stage = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return usage(stdout), 1;
        if (i + 1 >= argc)
            return fprintf(stderr, "cin-derive: %s needs a value\n", argv[i]), -1;
        ratio |= strcmp(argv[i], "--ratio") == 0;
        stage |= strcmp(argv[i], "--stage-ratio") == 0;
        if (parse_value(o, argv[i], argv[i + 1]) != 0)
            return -1;
        i++;
    }
    if (!o->source || !o->out || (!o->masks && !ratio) || (o->masks && (ratio || stage))) {
        fprintf(stderr, "cin-derive: give --source, --out and one of --masks or --ratio\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    derive_opts o = {.norm = DERIVE_L1};
    signal(SIGXFSZ, SIG_IGN); /* a file-size limit fails the write (EFBIG), as a full disk */
    int rc = parse_args(&o, argc, argv);
    if (rc)
        return rc > 0 ? 0 : 2;
    derive_stats s;
    cin_err err = {0};
    if (derive_model(&o, &s, &err) != 0) {
        fprintf(stderr, "cin-derive: %s\n", err.msg);
        return 1;
    }
    char outs[64] = "";
    if (s.out_before)
        snprintf(outs, sizeof outs, ", output channels %lld -> %lld", (long long)s.out_before,
                 (long long)s.out_after);
    fprintf(stderr, "cin-derive: %s -> %s: %d %s, inner channels %lld -> %lld%s, "
            "parameters %lld -> %lld (%.1f %%), %d adapted layers\n", o.source, o.out,
            s.blocks, s.unit, (long long)s.inner_before, (long long)s.inner_after, outs,
            (long long)s.params_before, (long long)s.params_after,
            100.0 * (double)s.params_after / (double)(s.params_before ? s.params_before : 1),
            s.adapted);
    return 0;
}
