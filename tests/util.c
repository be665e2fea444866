/* Helpers shared by the test suites. */
#include "util.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "seeded.h"

double tu_rel_err(const float *a, const float *b, size_t n)
{
    double max_b = 1.0, max_d = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= max_d))
            max_d = d; /* NaN propagates as a failure */
        if (fabs(b[i]) > max_b)
            max_b = fabs(b[i]);
    }
    return max_d / max_b;
}

/* One directory per test run, removed when the runner exits. */
static char tmp_dir[64];

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

static void remove_tmp_dir(void)
{
    if (nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS))
        perror(tmp_dir);
}

const char *tu_tmp_path(const char *name)
{
    static char paths[64][256];
    static int n;
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/cin-tests-XXXXXX");
        if (!mkdtemp(tmp_dir))
            abort();
        atexit(remove_tmp_dir);
    }
    char *p = paths[n++ % 64];
    snprintf(p, 256, "%s/%s", tmp_dir, name);
    return p;
}

unsigned char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)size + 1)) &&
        fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        buf[size] = '\0'; /* so text files can be read as strings */
    *len = buf ? (size_t)size : 0;
    return buf;
}

int tu_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

float *tu_skeleton_input(int frames, uint64_t seed, double *sum)
{
    enum { C = 3, V = 25, M = 2 };
    size_t n = (size_t)frames * C * V * M;
    float *tcvm = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * n);
    if (!tcvm || !x) {
        free(tcvm);
        free(x);
        return NULL;
    }
    cin_seeded_fill(tcvm, n, seed, "input", -1.0, 1.0);
    *sum = 0.0;
    for (size_t i = 0; i < n; i++)
        *sum += tcvm[i];
    for (int t = 0; t < frames; t++)
        for (int c = 0; c < C; c++)
            for (int v = 0; v < V; v++)
                for (int m = 0; m < M; m++)
                    x[(((size_t)t * C + c) * M + m) * V + v] =
                        tcvm[(((size_t)t * C + c) * V + v) * M + m];
    free(tcvm);
    return x;
}
