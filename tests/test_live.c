/* Suite "live": cin-run against live sources on 127.0.0.1 that the tests start themselves: a
 * real RTSP server (GStreamer's, tests/rtsp_server.py) stopped and restarted mid-stream, a TCP
 * server that goes silent, one that hangs up, and a UDP MPEG-TS sender that stops. Every wait
 * is bounded and every child process is killed and reaped on every path. Runs with cwd tests/. */
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libavformat/avformat.h>

#include "util.h"

#define TL_CLIP "media/mecavideo__balle-jbart.mp4"
#define TL_TS_FRAMES 50         /* video frames of the clip remuxed to MPEG-TS */
#define TL_SLACK 1.5            /* seconds allowed past a timeout, on a busy 2-core machine */
#define TL_DATAGRAM 1316        /* 7 TS packets, what MPEG-TS over UDP carries */

static double tl_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void tl_sleep(double secs)
{
    struct timespec t = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    nanosleep(&t, NULL);
}

/* ---- child processes ---- */

/* Starts argv[0] with stdout and stderr to log; the child is its own process group. */
static pid_t tl_spawn(char *const argv[], const char *log)
{
    pid_t pid = tu_fork();
    if (pid != 0)
        return pid;
    setpgid(0, 0);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    execv(argv[0], argv);
    _exit(127);
}

/* 1 once the file at path holds text, 0 if it does not within secs. */
static int tl_wait_text(const char *path, const char *text, double secs)
{
    double end = tl_now() + secs;
    do {
        size_t len;
        char *body = (char *)tu_read_file(path, &len);
        int found = body && strstr(body, text);
        free(body);
        if (found)
            return 1;
        tl_sleep(0.02);
    } while (tl_now() < end);
    return 0;
}

/* Asserts that the file at path holds text; shows the file when it does not. */
#define TL_EXPECT_TEXT(path, text) tl_expect_text(path, text, __LINE__)
static void tl_expect_text(const char *path, const char *text, int line)
{
    int found = tl_wait_text(path, text, 0);
    CU_ASSERT(found);
    if (found)
        return;
    size_t len;
    char *body = (char *)tu_read_file(path, &len);
    fprintf(stderr, "\nline %d: no '%s' in %s:\n%s\n", line, text, path, body ? body : "");
    free(body);
}

static int tl_count_lines(const char *path)
{
    size_t len;
    char *body = (char *)tu_read_file(path, &len);
    int n = 0;
    for (size_t i = 0; body && i < len; i++)
        n += body[i] == '\n';
    free(body);
    return n;
}

/* cin-run --status 0.5 --stats-json stats yaml, its stderr into log. */
static pid_t tl_cin_run(const char *yaml, const char *stats, const char *log)
{
    const char *bin = getenv("CIN_RUN");
    char *argv[] = {(char *)(bin ? bin : "../build/cin-run"), "--status", "0.5",
                    "--stats-json", (char *)stats, (char *)yaml, NULL};
    return tl_spawn(argv, log);
}

static json_int_t tl_stat(const char *stats, const char *key)
{
    json_t *j = json_load_file(stats, 0, NULL);
    json_int_t v = j ? json_integer_value(json_object_get(j, key)) : -1;
    json_decref(j);
    return v;
}

/* ---- an MPEG-TS copy of the real clip ---- */

static unsigned char *tl_ts;
static size_t tl_ts_len;

/* ---- a TCP server thread that serves the TS, then goes silent or hangs up ---- */

typedef struct tl_server {
    int fd, port;
    int conns;              /* connections to serve, one after the other */
    int send;               /* 0: accept and send nothing (a frozen server); 1: send tl_ts */
    int hang_up;            /* after sending: 1 closes the connection, 0 keeps it open silent */
    volatile int quit;
    double last_send;       /* tl_now() after the last byte went out */
    pthread_t thread;
} tl_server;

/* Waits up to 50 ms at a time for fd, until srv->quit; 1 when fd is readable. */
static int tl_poll(tl_server *srv, int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    while (!srv->quit) {
        if (poll(&p, 1, 50) > 0)
            return 1;
    }
    return 0;
}

/* Seconds between TL_DATAGRAM-sized pieces of tl_ts sent in real time (25 fps): a faster
 * sender would leave a backlog that cin-run is still decoding when the sender stops. */
static double tl_gap(void)
{
    return TL_TS_FRAMES / 25.0 * TL_DATAGRAM / (double)tl_ts_len;
}

static void tl_serve_one(tl_server *srv, int c)
{
    size_t off = 0;
    while (srv->send && off < tl_ts_len && !srv->quit) {
        size_t piece = tl_ts_len - off < TL_DATAGRAM ? tl_ts_len - off : TL_DATAGRAM;
        ssize_t n = send(c, tl_ts + off, piece, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
        tl_sleep(tl_gap());
    }
    srv->last_send = tl_now();
    if (!srv->hang_up)
        while (!srv->quit && tl_poll(srv, c) && recv(c, (char[256]){0}, 256, 0) > 0)
            continue;
    close(c);
}

static void *tl_serve(void *arg)
{
    tl_server *srv = arg;
    for (int i = 0; i < srv->conns && tl_poll(srv, srv->fd); i++) {
        int c = accept(srv->fd, NULL, NULL);
        if (c >= 0)
            tl_serve_one(srv, c);
    }
    close(srv->fd);
    return NULL;
}

/* Binds an ephemeral port of 127.0.0.1 without listening: connections are refused. */
static int tl_server_bind(tl_server *srv)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    srv->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (srv->fd < 0 || bind(srv->fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(srv->fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    srv->port = ntohs(a.sin_port);
    return 0;
}

/* Listens on the bound port and starts the thread. */
static int tl_server_listen(tl_server *srv)
{
    if (listen(srv->fd, 4) != 0)
        return -1;
    return pthread_create(&srv->thread, NULL, tl_serve, srv);
}

static int tl_server_start(tl_server *srv)
{
    return tl_server_bind(srv) != 0 ? -1 : tl_server_listen(srv);
}

static void tl_server_stop(tl_server *srv)
{
    srv->quit = 1;
    pthread_join(srv->thread, NULL);
}

/* A pipeline of x3d-xs at 64x64 on uri with the given source keys, results to out. The
 * source blocks rather than drop frames: the tests count every frame the server sent, also
 * on a loaded machine or under the sanitizers. */
static const char *tl_yaml(const char *name, const char *uri, const char *keys, const char *out)
{
    char text[1024];
    snprintf(text, sizeof text,
             "source: {uri: '%s', overload: block, %s}\n"
             "preprocess: {crop: 64, resize: 64}\n"
             "model: {arch: x3d, size: xs, seed: 1}\n"
             "sinks: [{type: jsonl, path: '%s'}]\n", uri, keys, out);
    const char *path = tu_tmp_path(name);
    CU_ASSERT_EQUAL(tu_write_file(path, text, strlen(text)), 0);
    return path;
}

/* ---- tests ---- */

/* A server that accepts the connection and never answers: video_open gives up after
 * open_timeout, and the error names the uri. */
static void test_frozen_rtsp_server_is_detected_within_the_open_timeout(void)
{
    tl_server srv = {.conns = 1};
    CU_ASSERT_EQUAL_FATAL(tl_server_start(&srv), 0);
    char uri[64];
    snprintf(uri, sizeof uri, "rtsp://127.0.0.1:%d/cam", srv.port);
    const char *yaml = tl_yaml("frozen.yaml", uri, "open_timeout: 1.5, reconnect: false",
                               tu_tmp_path("frozen.jsonl"));
    const char *log = tu_tmp_path("frozen.log"), *stats = tu_tmp_path("frozen.json");
    double t0 = tl_now();
    int status = tu_reap(tl_cin_run(yaml, stats, log), 1.5 + 10);
    double took = tl_now() - t0;
    tl_server_stop(&srv);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1);
    char want[160];
    snprintf(want, sizeof want, "%s: cannot open: timed out, no answer within 1.5 s", uri);
    TL_EXPECT_TEXT(log, want);
    /* cin-run's own start (loading the model) is part of took */
    CU_ASSERT(took >= 1.5 && took <= 1.5 + TL_SLACK);
    fprintf(stderr, "\n    frozen RTSP server detected after %.2f s (open_timeout 1.5) ", took);
}

/* A server that sends the stream and then stays connected but silent: every frame it sent
 * comes out, then read_timeout ends the run. */
static void test_silent_tcp_stream_is_detected_within_the_read_timeout(void)
{
    tl_server srv = {.conns = 1, .send = 1};
    CU_ASSERT_EQUAL_FATAL(tl_server_start(&srv), 0);
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", srv.port);
    const char *yaml = tl_yaml("silent.yaml", uri, "read_timeout: 1, reconnect: false",
                               tu_tmp_path("silent.jsonl"));
    const char *log = tu_tmp_path("silent.log"), *stats = tu_tmp_path("silent.json");
    int status = tu_reap(tl_cin_run(yaml, stats, log), 20);
    double after = tl_now() - srv.last_send;
    tl_server_stop(&srv);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1);
    TL_EXPECT_TEXT(log, "timed out: no data for 1 s (read timeout)");
    CU_ASSERT_EQUAL(tl_stat(stats, "frames"), TL_TS_FRAMES);
    CU_ASSERT(after >= 1.0 && after <= 1.0 + TL_SLACK);
    fprintf(stderr, "\n    silent TCP stream detected %.2f s after its last byte ", after);
}

/* A UDP MPEG-TS sender that sends for 2 s and stops. */
typedef struct tl_sender {
    int port;
    double secs, last_send;
    pthread_t thread;
} tl_sender;

static void *tl_send_udp(void *arg)
{
    tl_sender *s = arg;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    double end = tl_now() + s->secs, gap = tl_gap();
    /* the clip over and over in real time, until the time is up */
    for (size_t off = 0; fd >= 0 && tl_now() < end; off = (off + TL_DATAGRAM) % tl_ts_len) {
        size_t n = tl_ts_len - off < TL_DATAGRAM ? tl_ts_len - off : TL_DATAGRAM;
        sendto(fd, tl_ts + off, n, 0, (struct sockaddr *)&a, sizeof a);
        tl_sleep(gap);
    }
    s->last_send = tl_now();
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void test_udp_mpegts_sender_that_stops_is_detected(void)
{
    tl_sender s = {.port = 20000 + getpid() % 20000, .secs = 2.5};
    char uri[64];
    snprintf(uri, sizeof uri, "udp://127.0.0.1:%d", s.port);
    const char *yaml = tl_yaml("udp.yaml", uri, "read_timeout: 1, reconnect: false",
                               tu_tmp_path("udp.jsonl"));
    const char *log = tu_tmp_path("udp.log"), *stats = tu_tmp_path("udp.json");
    pid_t pid = tl_cin_run(yaml, stats, log);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&s.thread, NULL, tl_send_udp, &s), 0);
    int status = tu_reap(pid, 20);
    pthread_join(s.thread, NULL);
    double after = tl_now() - s.last_send;
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1);
    TL_EXPECT_TEXT(log, "timed out: no data for 1 s (read timeout)");
    CU_ASSERT(tl_stat(stats, "frames") > 0);
    CU_ASSERT(after >= 1.0 && after <= 1.0 + TL_SLACK);
    fprintf(stderr, "\n    stopped UDP sender detected %.2f s after its last datagram ", after);
}

/* A server that hangs up after each stream: cin-run reconnects once, resets the state, reads
 * the second stream whole, then gives up after the configured attempts. */
static void test_hang_up_reconnects_resets_state_then_gives_up(void)
{
    tl_server srv = {.conns = 2, .send = 1, .hang_up = 1};
    CU_ASSERT_EQUAL_FATAL(tl_server_start(&srv), 0);
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", srv.port);
    const char *out = tu_tmp_path("hangup.jsonl");
    const char *yaml = tl_yaml("hangup.yaml", uri, "reconnect: {initial: 0.2, max: 0.4, "
                               "attempts: 2}", out);
    const char *log = tu_tmp_path("hangup.log"), *stats = tu_tmp_path("hangup.json");
    int status = tu_reap(tl_cin_run(yaml, stats, log), 30);
    tl_server_stop(&srv);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1);
    CU_ASSERT_EQUAL(tl_stat(stats, "reconnects"), 1);
    CU_ASSERT_EQUAL(tl_stat(stats, "frames"), 2 * TL_TS_FRAMES);
    /* x3d-xs outputs from frame 31 on, counted again from the reset */
    CU_ASSERT_EQUAL(tl_stat(stats, "outputs"), 2 * (TL_TS_FRAMES - 31));
    CU_ASSERT_EQUAL(tl_count_lines(out), 2 * (TL_TS_FRAMES - 31));
    TL_EXPECT_TEXT(log, "warn: source: 0: end of stream; reconnecting");
    TL_EXPECT_TEXT(log, "reconnected after");
    TL_EXPECT_TEXT(log, "(attempt 1); stream state reset");
    TL_EXPECT_TEXT(log, "source.reconnect: gave up after 2 attempts");
    TL_EXPECT_TEXT(log, ", 1 reconnect\n");
    /* frame numbers go on across the reconnection */
    char last[64];
    snprintf(last, sizeof last, "\"frame\": %d,", 2 * TL_TS_FRAMES - 1);
    TL_EXPECT_TEXT(out, last);
}

/* SIGINT while cin-run waits to reconnect ends the wait and the run at once, cleanly. */
static void test_sigint_ends_a_reconnect_wait(void)
{
    tl_server srv = {.conns = 1, .send = 1, .hang_up = 1};
    CU_ASSERT_EQUAL_FATAL(tl_server_start(&srv), 0);
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", srv.port);
    const char *yaml = tl_yaml("wait.yaml", uri, "reconnect: {initial: 60, max: 60}",
                               tu_tmp_path("wait.jsonl"));
    const char *log = tu_tmp_path("wait.log"), *stats = tu_tmp_path("wait.json");
    pid_t pid = tl_cin_run(yaml, stats, log);
    int waiting = tl_wait_text(log, "end of stream; reconnecting", 20);
    double t0 = tl_now();
    kill(pid, SIGINT);
    int status = tu_reap(pid, 10);
    double took = tl_now() - t0;
    tl_server_stop(&srv);
    CU_ASSERT(waiting);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT(took < 1.0);
    CU_ASSERT_EQUAL(tl_stat(stats, "frames"), TL_TS_FRAMES);
    CU_ASSERT_EQUAL(tl_stat(stats, "reconnects"), 0);
}

/* SIGINT while the open blocks on a silent server ends it at once, as a clean stop. */
static void test_sigint_ends_a_blocked_open(void)
{
    tl_server srv = {.conns = 1};
    CU_ASSERT_EQUAL_FATAL(tl_server_start(&srv), 0);
    char uri[64];
    snprintf(uri, sizeof uri, "rtsp://127.0.0.1:%d/cam", srv.port);
    const char *yaml = tl_yaml("blocked.yaml", uri, "open_timeout: 60",
                               tu_tmp_path("blocked.jsonl"));
    const char *log = tu_tmp_path("blocked.log"), *stats = tu_tmp_path("blocked.json");
    pid_t pid = tl_cin_run(yaml, stats, log);
    tl_sleep(1.0);
    double t0 = tl_now();
    kill(pid, SIGINT);
    int status = tu_reap(pid, 10);
    double took = tl_now() - t0;
    tl_server_stop(&srv);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT(took < 1.0);
    TL_EXPECT_TEXT(log, "stopped by signal");
    CU_ASSERT_EQUAL(tl_stat(stats, "frames"), 0);
}

/* A live source that is down when the run starts is waited for with the reconnect policy,
 * and its stream starts once the server comes up. */
static void test_a_source_down_at_start_is_waited_for(void)
{
    tl_server srv = {.conns = 1, .send = 1, .hang_up = 1};
    CU_ASSERT_EQUAL_FATAL(tl_server_bind(&srv), 0);
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", srv.port);
    const char *out = tu_tmp_path("late.jsonl");
    const char *yaml = tl_yaml("late.yaml", uri, "reconnect: {initial: 0.2, max: 0.4}", out);
    const char *log = tu_tmp_path("late.log"), *stats = tu_tmp_path("late.json");
    pid_t pid = tl_cin_run(yaml, stats, log);
    int refused = tl_wait_text(log, "; retrying", 20);
    tl_sleep(0.5);
    CU_ASSERT_EQUAL_FATAL(tl_server_listen(&srv), 0);
    char last[32];
    snprintf(last, sizeof last, "\"frame\": %d,", TL_TS_FRAMES - 1);
    int done = tl_wait_text(out, last, 20); /* a live source's results are written in place */
    kill(pid, SIGINT);
    int status = tu_reap(pid, 10);
    tl_server_stop(&srv);
    CU_ASSERT(refused && done);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    TL_EXPECT_TEXT(log, "opened after");
    CU_ASSERT_EQUAL(tl_stat(stats, "outputs"), TL_TS_FRAMES - 31);
    CU_ASSERT_EQUAL(tl_stat(stats, "reconnects"), 0);
}

/* Two sources, one of them a server that never answers: the other stream is stepped to its
 * end meanwhile, and SIGINT then ends the run cleanly with its results complete. */
static void test_a_frozen_source_does_not_stall_the_others(void)
{
    tl_server srv = {.conns = 1};
    CU_ASSERT_EQUAL_FATAL(tl_server_start(&srv), 0);
    char text[1024], cwd[512];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof cwd));
    const char *out = tu_tmp_path("two.jsonl");
    snprintf(text, sizeof text,
             "sources:\n"
             "  - {uri: 'rtsp://127.0.0.1:%d/cam', id: frozen, open_timeout: 60}\n"
             "  - {uri: '%s/%s', id: file}\n"
             "preprocess: {crop: 64, resize: 64}\n"
             "model: {arch: x3d, size: xs, seed: 1}\n"
             "sinks: [{type: jsonl, path: '%s', flush: 0}]\n", srv.port, cwd, TL_CLIP, out);
    const char *yaml = tu_tmp_path("two.yaml");
    CU_ASSERT_EQUAL(tu_write_file(yaml, text, strlen(text)), 0);
    const char *log = tu_tmp_path("two.log"), *stats = tu_tmp_path("two.json");
    pid_t pid = tl_cin_run(yaml, stats, log);
    /* the clip's last frame, 254, while the other source still waits for its server */
    int done = tl_wait_text(out, "\"frame\": 254,", 30);
    kill(pid, SIGINT);
    int status = tu_reap(pid, 10);
    tl_server_stop(&srv);
    CU_ASSERT(done);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    json_t *j = json_load_file(stats, 0, NULL);
    json_t *streams = json_object_get(j, "streams");
    CU_ASSERT_EQUAL_FATAL(json_array_size(streams), 2);
    json_t *frozen = json_array_get(streams, 0), *file = json_array_get(streams, 1);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(frozen, "frames_in")), 0);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(file, "frames")), 255);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(file, "outputs")), 255 - 31);
    CU_ASSERT_EQUAL(tl_count_lines(out), 255 - 31);
    json_decref(j);
}

typedef struct tl_frames {
    int lines;          /* results of the source */
    int jumps;          /* times the frame number jumps by more than one */
    int largest;        /* the largest jump */
    int between;        /* results whose wall time is in [from, to] */
} tl_frames;

/* The results of source id (NULL: every source) in a JSON-lines file. */
static tl_frames tl_frames_of(const char *path, const char *id, double from, double to)
{
    size_t len;
    char *body = (char *)tu_read_file(path, &len);
    tl_frames f = {0};
    json_int_t prev = -1;
    for (char *line = body ? strtok(body, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        json_t *j = json_loads(line, 0, NULL);
        const char *src = json_string_value(json_object_get(j, "source"));
        if (!j || (id && (!src || strcmp(src, id)))) {
            json_decref(j);
            continue; /* another source, or a line being written as the file is read */
        }
        json_int_t frame = json_integer_value(json_object_get(j, "frame"));
        double wall = json_real_value(json_object_get(j, "wall"));
        json_decref(j);
        f.lines++;
        f.between += wall >= from && wall <= to;
        if (prev >= 0 && frame - prev > 1) {
            f.jumps++;
            f.largest = frame - prev > f.largest ? (int)(frame - prev) : f.largest;
        }
        prev = frame;
    }
    free(body);
    return f;
}

/* Frame numbers of the results in a JSON-lines file: how many times they jump by more than one,
 * and the largest jump. */
static int tl_frame_jumps(const char *path, const char *id, int *largest)
{
    tl_frames f = tl_frames_of(path, id, 0, 0);
    *largest = f.largest;
    return f.jumps;
}

static double tl_wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---- the real RTSP server ---- */

static pid_t tl_rtsp_start(int port, const char *log)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    char *argv[] = {"/usr/bin/python3", "rtsp_server.py", p, TL_CLIP, NULL};
    pid_t pid = tl_spawn(argv, log);
    if (pid > 0 && !tl_wait_text(log, "ready", 15)) {
        tu_reap(pid, 0);
        return -1;
    }
    return pid;
}

/* gst-rtsp-server serves the clip; it is killed mid-stream and started again. cin-run
 * reconnects, resets the state (outputs start again 31 frames later) and keeps going, and
 * its other stream, a file read in real time, goes on meanwhile without a gap. */
static void test_rtsp_server_restart_reconnects_and_keeps_producing(void)
{
    int port = 20000 + (getpid() + 7) % 20000;
    char uri[64];
    snprintf(uri, sizeof uri, "rtsp://127.0.0.1:%d/clip", port);
    const char *out = tu_tmp_path("rtsp.jsonl"), *slog = tu_tmp_path("rtsp-server.log");
    char text[1024], cwd[512];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof cwd));
    snprintf(text, sizeof text,
             "sources:\n"
             "  - {uri: '%s', rtsp_transport: tcp, read_timeout: 2,\n"
             "     reconnect: {initial: 0.2, max: 1}, overload: block}\n"
             "  - {uri: '%s/%s', id: file, realtime: true, overload: block}\n"
             "preprocess: {crop: 64, resize: 64}\n"
             "model: {arch: x3d, size: xs, seed: 1}\n"
             "sinks: [{type: jsonl, path: '%s'}]\n", uri, cwd, TL_CLIP, out);
    const char *yaml = tu_tmp_path("rtsp.yaml");
    CU_ASSERT_EQUAL(tu_write_file(yaml, text, strlen(text)), 0);
    const char *log = tu_tmp_path("rtsp.log"), *stats = tu_tmp_path("rtsp.json");
    pid_t srv = tl_rtsp_start(port, slog);
    CU_ASSERT_FATAL(srv > 0);
    pid_t cin = tl_cin_run(yaml, stats, log);
    int first = tl_wait_text(out, "\"frame\"", 20);
    int early = tl_wait_text(log, "reconnecting", 0);   /* the server is still up */

    tu_reap(srv, 0);                               /* killed mid-clip */
    double killed = tl_wall();
    int down = tl_wait_text(log, "reconnecting", 10);
    tl_sleep(0.5);
    srv = tl_rtsp_start(port, slog);
    double back = tl_now(), back_wall = tl_wall();
    int again = tl_wait_text(log, "stream state reset", 15);
    double took = tl_now() - back;
    /* results from before the kill may still reach the file now (the sink's flush interval);
     * a result of the new connection is the first one after the jump in frame numbers */
    int largest, resumed = 0;
    for (double end = tl_now() + 20; !resumed && tl_now() < end; tl_sleep(0.05))
        resumed = tl_frame_jumps(out, "0", &largest) > 0;

    kill(cin, SIGINT);
    int status = tu_reap(cin, 10);
    if (srv > 0)
        tu_reap(srv, 0);
    CU_ASSERT(first && !early && down && srv > 0 && again);
    CU_ASSERT(resumed);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(tl_stat(stats, "reconnects"), 1);
    TL_EXPECT_TEXT(log, ", 1 reconnect\n");
    TL_EXPECT_TEXT(log, "drops, 1 reconnect\n");    /* a status line */
    /* results follow frame by frame, except once: the reset state needs 31 frames again */
    int jumps = tl_frame_jumps(out, "0", &largest);
    CU_ASSERT(jumps == 1 && largest >= 32);
    if (jumps != 1 || largest < 32)
        fprintf(stderr, "\n    %d jumps in the frame numbers, the largest %d, %d lines ",
                jumps, largest, tl_count_lines(out));
    /* the file's stream went on, frame after frame, while the camera was down */
    tl_frames file = tl_frames_of(out, "file", killed, back_wall);
    CU_ASSERT(file.lines > 0 && file.jumps == 0 && file.between > 0);
    if (file.jumps || !file.between)
        fprintf(stderr, "\n    file stream: %d lines, %d jumps, %d during the outage ",
                file.lines, file.jumps, file.between);
    fprintf(stderr, "\n    reconnected %.2f s after the RTSP server was back; the other stream "
            "gave %d results meanwhile ", took, file.between);
}

/* One cin-run on the real RTSP server, up to its first result. */
typedef struct tl_rtsp {
    pid_t srv, cin;
    int got;                    /* a result arrived within 20 s */
    const char *log, *stats;    /* cin-run's stderr and --stats-json */
} tl_rtsp;

/* Starts the server on its own port (from port_salt) and cin-run on it, the source with
 * `keys`; files are named after `name`. Waits for cin-run's first result. */
static void tl_rtsp_until_result(tl_rtsp *t, const char *name, int port_salt, const char *keys)
{
    int port = 20000 + (getpid() + port_salt) % 20000;
    char uri[64], file[64];
    snprintf(uri, sizeof uri, "rtsp://127.0.0.1:%d/clip", port);
    snprintf(file, sizeof file, "%s.jsonl", name);
    const char *out = tu_tmp_path(file);
    snprintf(file, sizeof file, "%s.yaml", name);
    const char *yaml = tl_yaml(file, uri, keys, out);
    snprintf(file, sizeof file, "%s-server.log", name);
    t->srv = tl_rtsp_start(port, tu_tmp_path(file));
    CU_ASSERT_FATAL(t->srv > 0);
    snprintf(file, sizeof file, "%s.log", name);
    t->log = tu_tmp_path(file);
    snprintf(file, sizeof file, "%s.json", name);
    t->stats = tu_tmp_path(file);
    t->cin = tl_cin_run(yaml, t->stats, t->log);
    t->got = tl_wait_text(out, "\"frame\"", 20);
}

/* The real RTSP server frozen mid-stream (SIGSTOP: its connection stays open, silent) ends
 * the run within read_timeout: the packets libav still holds when the timeout runs out do
 * not start another one (that took twice the timeout). */
static void test_rtsp_server_frozen_mid_stream_is_detected_within_the_read_timeout(void)
{
    tl_rtsp t;
    tl_rtsp_until_result(&t, "rtsp-frozen", 17, "rtsp_transport: tcp, read_timeout: 2, "
                         "reconnect: false");
    kill(t.srv, SIGSTOP);
    double frozen = tl_now();
    int status = tu_reap(t.cin, 20);
    double took = tl_now() - frozen;
    kill(t.srv, SIGCONT);
    tu_reap(t.srv, 0);
    CU_ASSERT(t.got);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1);
    TL_EXPECT_TEXT(t.log, "no data for 2 s (read timeout)");
    /* what the server had sent before it froze is read first, so took may pass 2 s a little */
    CU_ASSERT(took >= 1.5 && took <= 2 + TL_SLACK);
    fprintf(stderr, "\n    RTSP server frozen mid-stream detected after %.2f s (read_timeout 2) ",
            took);
}

/* The MPEG-TS clip served over HTTP by Python's http.server (which takes no Range requests,
 * so an MP4 with its index at the end could not be read): every frame is read, and with
 * `reconnect: false` the source ends at the end of the file (a live http source would read
 * it again). */
static void test_http_source_reads_every_frame(void)
{
    int port = 20000 + (getpid() + 23) % 20000;
    char p[16], uri[128];
    snprintf(p, sizeof p, "%d", port);
    char dir[600];
    snprintf(dir, sizeof dir, "%s", tu_tmp_path("."));
    char *argv[] = {"/usr/bin/python3", "-u", "-m", "http.server", p, "--bind", "127.0.0.1",
                    "--directory", dir, NULL};
    const char *slog = tu_tmp_path("http-server.log");
    pid_t srv = tl_spawn(argv, slog);
    CU_ASSERT_FATAL(srv > 0);
    int up = tl_wait_text(slog, "Serving HTTP", 15);
    snprintf(uri, sizeof uri, "http://127.0.0.1:%d/clip.ts", port);
    const char *yaml = tl_yaml("http.yaml", uri, "read_timeout: 5, reconnect: false",
                               tu_tmp_path("http.jsonl"));
    const char *log = tu_tmp_path("http.log"), *stats = tu_tmp_path("http.json");
    int status = tu_reap(tl_cin_run(yaml, stats, log), 30);
    tu_reap(srv, 0);
    CU_ASSERT(up);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(tl_stat(stats, "frames"), TL_TS_FRAMES);
    CU_ASSERT_EQUAL(tl_stat(stats, "outputs"), TL_TS_FRAMES - 31);
}

/* An SRT listener, made here with libavformat's srt protocol, sends the MPEG-TS clip once in
 * real time and closes: cin-run connects as the caller, reads every frame and ends. */
typedef struct tl_srt {
    int port, ok;
    pthread_t thread;
} tl_srt;

static void *tl_send_srt(void *arg)
{
    tl_srt *s = arg;
    char url[128];
    snprintf(url, sizeof url, "srt://127.0.0.1:%d?mode=listener&listen_timeout=15000000",
             s->port);
    AVIOContext *pb = NULL;
    if (avio_open(&pb, url, AVIO_FLAG_WRITE) < 0)
        return NULL;
    double gap = tl_gap();
    for (size_t off = 0; off < tl_ts_len; off += TL_DATAGRAM) {
        size_t n = tl_ts_len - off < TL_DATAGRAM ? tl_ts_len - off : TL_DATAGRAM;
        avio_write(pb, tl_ts + off, (int)n);
        avio_flush(pb);
        tl_sleep(gap);
    }
    s->ok = pb->error == 0;
    tl_sleep(0.5); /* let the last packets reach the caller before the close */
    avio_closep(&pb);
    return NULL;
}

static void test_srt_caller_reads_every_frame_of_a_listener(void)
{
    tl_srt s = {.port = 20000 + (getpid() + 29) % 20000};
    CU_ASSERT_EQUAL_FATAL(pthread_create(&s.thread, NULL, tl_send_srt, &s), 0);
    char uri[128];
    snprintf(uri, sizeof uri, "srt://127.0.0.1:%d?mode=caller", s.port);
    const char *yaml = tl_yaml("srt.yaml", uri, "open_timeout: 10, read_timeout: 2, "
                               "reconnect: false", tu_tmp_path("srt.jsonl"));
    const char *log = tu_tmp_path("srt.log"), *stats = tu_tmp_path("srt.json");
    int status = tu_reap(tl_cin_run(yaml, stats, log), 30);
    pthread_join(s.thread, NULL);
    CU_ASSERT(s.ok);
    CU_ASSERT(status != -1 && WIFEXITED(status));
    CU_ASSERT_EQUAL(tl_stat(stats, "frames"), TL_TS_FRAMES);
    CU_ASSERT_EQUAL(tl_stat(stats, "outputs"), TL_TS_FRAMES - 31);
}

/* rtsp_transport reaches libav: RTP over UDP from the same server gives results too. */
static void test_rtsp_over_udp_transport_gives_results(void)
{
    tl_rtsp t;
    tl_rtsp_until_result(&t, "rtsp-udp", 13, "rtsp_transport: udp, reconnect: false");
    kill(t.cin, SIGINT);
    int status = tu_reap(t.cin, 10);
    tu_reap(t.srv, 0);
    CU_ASSERT(t.got);
    CU_ASSERT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT(tl_stat(t.stats, "outputs") > 0);
    CU_ASSERT_EQUAL(tl_stat(t.stats, "reconnects"), 0);
}

static int tl_setup(void)
{
    av_log_set_level(AV_LOG_QUIET);
    signal(SIGPIPE, SIG_IGN);
    const char *path = tu_tmp_path("clip.ts");
    if (tu_remux_video(TL_CLIP, path, TL_TS_FRAMES, -1, 0) != 0 ||
        !(tl_ts = tu_read_file(path, &tl_ts_len)))
        return -1;
    return 0;
}

static int tl_teardown(void)
{
    free(tl_ts);
    return 0;
}

int test_live_register(void)
{
    CU_pSuite s = CU_add_suite("live", tl_setup, tl_teardown);
    if (!s)
        return -1;
    struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
#define TL_TEST(f) {#f, f}
        TL_TEST(test_frozen_rtsp_server_is_detected_within_the_open_timeout),
        TL_TEST(test_rtsp_server_frozen_mid_stream_is_detected_within_the_read_timeout),
        TL_TEST(test_http_source_reads_every_frame),
        TL_TEST(test_srt_caller_reads_every_frame_of_a_listener),
        TL_TEST(test_silent_tcp_stream_is_detected_within_the_read_timeout),
        TL_TEST(test_udp_mpegts_sender_that_stops_is_detected),
        TL_TEST(test_hang_up_reconnects_resets_state_then_gives_up),
        TL_TEST(test_sigint_ends_a_reconnect_wait),
        TL_TEST(test_sigint_ends_a_blocked_open),
        TL_TEST(test_a_frozen_source_does_not_stall_the_others),
        TL_TEST(test_a_source_down_at_start_is_waited_for),
        TL_TEST(test_rtsp_server_restart_reconnects_and_keeps_producing),
        TL_TEST(test_rtsp_over_udp_transport_gives_results),
#undef TL_TEST
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    }
    return 0;
}
