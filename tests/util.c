/* Helpers shared by the test suites. */
#include "util.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libavformat/avformat.h>

#include "adjacency.h"
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

/* "64x3x1" into o's shape; the element count. */
static size_t tu_parse_shape(const char *text, st_out *o)
{
    size_t numel = 1;
    for (const char *c = text; *c; c = *c ? c + 1 : c) {
        char *end;
        o->shape[o->ndim] = strtoll(c, &end, 10);
        numel *= (size_t)o->shape[o->ndim++];
        c = end;
    }
    return numel;
}

static int tu_is_adjacency(const char *name)
{
    size_t len = strlen(name);
    return strcmp(name, "A") == 0 || (len > 5 && strcmp(name + len - 5, "gcn.A") == 0);
}

int tu_skel_tensors(const char *names, uint64_t seed, st_out t[TU_SKEL_MAX])
{
    char name[128], shape[32];
    float graph[3 * 25 * 25];
    FILE *f = fopen(names, "r");
    int n = 0;
    adj_build("ntu-rgb+d", ADJ_SPATIAL, graph, NULL);
    while (f && n < TU_SKEL_MAX && fscanf(f, "%127s %31s", name, shape) == 2) {
        st_out *o = &t[n++];
        *o = (st_out){.name = strdup(name)};
        size_t numel = tu_parse_shape(shape, o);
        float *v = malloc(sizeof(float) * numel);
        double lo, hi;
        cin_seeded_range(o->name, o->ndim, o->shape, &lo, &hi);
        if (v && tu_is_adjacency(o->name))
            memcpy(v, graph, sizeof(float) * numel);
        else if (v)
            cin_seeded_fill(v, numel, seed, o->name, lo, hi);
        o->data = v;
    }
    if (!f)
        return -1;
    fclose(f);
    return n;
}

void tu_skel_free(st_out *t, int n)
{
    for (int i = 0; i < n; i++) {
        free((char *)t[i].name);
        free((float *)t[i].data);
    }
}

static double tu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Children not reaped yet; a signal handler reads it, so it is plain sig_atomic_t slots. */
#define TU_MAX_CHILDREN 64
static volatile sig_atomic_t tu_children[TU_MAX_CHILDREN];

int tu_fork(void)
{
    pid_t pid = fork();
    for (int i = 0; pid > 0 && i < TU_MAX_CHILDREN; i++) {
        if (tu_children[i] == 0) {
            tu_children[i] = pid;
            break;
        }
    }
    return pid;
}

static void tu_forget(int pid)
{
    for (int i = 0; i < TU_MAX_CHILDREN; i++)
        if (tu_children[i] == pid)
            tu_children[i] = 0;
}

void tu_kill_children(void)
{
    for (int i = 0; i < TU_MAX_CHILDREN; i++) {
        if (tu_children[i] > 0) {
            kill(-(pid_t)tu_children[i], SIGKILL);
            kill((pid_t)tu_children[i], SIGKILL);
        }
    }
}

int tu_reap(int pid, double secs)
{
    int status = 0;
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (double end = tu_now() + secs; tu_now() < end; nanosleep(&tick, NULL)) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            tu_forget(pid);
            return status;
        }
    }
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    tu_forget(pid);
    return -1;
}

/* One packet of the video stream, rescaled to the output and moved `shift` (output ticks). */
static int tu_copy_packet(AVFormatContext *oc, AVPacket *pkt, AVRational from, int64_t shift)
{
    AVRational to = oc->streams[0]->time_base;
    av_packet_rescale_ts(pkt, from, to);
    if (pkt->pts != AV_NOPTS_VALUE)
        pkt->pts += shift;
    if (pkt->dts != AV_NOPTS_VALUE)
        pkt->dts += shift;
    pkt->stream_index = 0;
    return av_interleaved_write_frame(oc, pkt);
}

int tu_remux_video(const char *in, const char *out, int max_packets, int gap_after,
                   double gap_secs)
{
    AVFormatContext *ic = NULL, *oc = NULL;
    AVPacket *pkt = av_packet_alloc();
    int r = pkt ? avformat_open_input(&ic, in, NULL, NULL) : -1;
    r = r < 0 ? r : avformat_find_stream_info(ic, NULL);
    int s = r < 0 ? -1 : av_find_best_stream(ic, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    r = s < 0 ? -1 : avformat_alloc_output_context2(&oc, NULL, NULL, out);
    AVStream *os = r < 0 ? NULL : avformat_new_stream(oc, NULL);
    r = os ? avcodec_parameters_copy(os->codecpar, ic->streams[s]->codecpar) : -1;
    if (r >= 0)
        os->time_base = ic->streams[s]->time_base;
    r = r < 0 ? r : avio_open(&oc->pb, out, AVIO_FLAG_WRITE);
    r = r < 0 ? r : avformat_write_header(oc, NULL);
    int64_t gap = r < 0 ? 0 : av_rescale_q((int64_t)(gap_secs * 1e6), AV_TIME_BASE_Q,
                                           os->time_base);
    for (int n = 0; r >= 0 && (max_packets <= 0 || n < max_packets) &&
                    av_read_frame(ic, pkt) >= 0;) {
        if (pkt->stream_index == s) {
            r = tu_copy_packet(oc, pkt, ic->streams[s]->time_base,
                               gap_after >= 0 && n >= gap_after ? gap : 0);
            n++;
        }
        av_packet_unref(pkt);
    }
    r = r < 0 ? r : av_write_trailer(oc);
    if (oc)
        avio_closep(&oc->pb);
    avformat_free_context(oc);
    avformat_close_input(&ic);
    av_packet_free(&pkt);
    return r < 0 ? -1 : 0;
}
