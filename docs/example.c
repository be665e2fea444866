/* A small program that embeds cin: it loads CoX3D-XS (weights drawn from a seed unless a
 * checkpoint is given), creates two streams over the one model, steps synthetic frames
 * through both, and prints when each starts producing outputs. `make test` builds and runs it.
 *
 *     cc example.c $(pkg-config --cflags --libs cin) -o example && ./example [x3d_xs.safetensors]
 */
#include <cin.h>
#include <stdio.h>
#include <stdlib.h>

static void fill(float *frame, size_t n, int t)
{
    for (size_t i = 0; i < n; i++)
        frame[i] = (float)((i * 31 + (size_t)t * 17) % 255) / 127.5f - 1.0f;
}

int main(int argc, char **argv)
{
    cin_err err;
    cin_model *model;
    cin_model_opts opts = {.arch = "x3d", .size = "xs", .crop = 64,
                           .weights = argc > 1 ? argv[1] : NULL, .seed = 1};
    if (cin_model_load(&opts, &model, &err) < 0) {
        fprintf(stderr, "example: %s (%s)\n", err.msg, cin_strerror(err.code));
        return 1;
    }
    cin_model_info info;
    cin_model_get_info(model, &info);
    printf("x3d-xs: %dx%d input, %d classes, delay %d frames\n", info.in_height, info.in_width,
           info.out_size, info.delay);

    cin_stream *a = NULL, *b = NULL;
    size_t n = (size_t)info.in_channels * info.in_height * info.in_width;
    float *frame = malloc(sizeof(float) * n), *out = malloc(sizeof(float) * info.out_size);
    int ok = frame && out && cin_stream_create(model, &a, &err) == 0 &&
             cin_stream_create(model, &b, &err) == 0;
    int outputs = 0, first = -1;
    for (int t = 0; ok && t < info.delay + 8; t++) {
        fill(frame, n, t);
        int ra = cin_stream_step(a, frame, out);
        fill(frame, n, 1000 + t);          /* the second stream sees other frames */
        int rb = cin_stream_step(b, frame, out);
        ok = ra >= 0 && rb >= 0 && ra == rb;
        outputs += ra;
        if (ra == 1 && first < 0)
            first = t;
    }
    printf("two streams: %d outputs each, the first at frame %d (counting from 0)\n", outputs,
           first);
    ok = ok && outputs == 8 && first == info.delay;

    cin_stream_free(a);
    cin_stream_free(b);
    cin_model_free(model);
    free(frame);
    free(out);
    if (!ok)
        fprintf(stderr, "example: unexpected result\n");
    return ok ? 0 : 1;
}
