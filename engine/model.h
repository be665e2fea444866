/* The engine's side of cin_model and cin_stream: a built graph with its geometry, and the
 * per-stream state and work buffers sized from it. Model families (graphs/) build the graph
 * and hand it over with cin_model_wrap(). */
#ifndef CIN_MODEL_H
#define CIN_MODEL_H

#include "cin.h"
#include "node.h"

typedef struct cin_logger {
    cin_log_fn fn;
    void *user;
    int level;
} cin_logger;

/* Sends one formatted line to the logger, if it takes this level. Never used per frame. */
void cin_log(const cin_logger *lg, int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

struct cin_model {
    cin_node *root;           /* frames [c][h][w] in, out_size-vectors out */
    cin_model_info info;
    cin_logger log;
    char layout[32];
};

/* Takes ownership of root (also on failure) and fills the model's info from the graph.
 * clip_frames is the regular model's clip length. */
int cin_model_wrap(cin_node *root, int clip_frames, const char *layout, const cin_logger *log,
                   cin_model **out, cin_err *err);

#endif
