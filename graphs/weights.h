/* Where a model's weights come from: a safetensors checkpoint, or the seeded generator (for
 * tests and for a model to run before a real checkpoint is converted). Builders ask for each
 * tensor by its checkpoint name and expected shape; every miss names the file and the tensor. */
#ifndef CIN_WEIGHTS_H
#define CIN_WEIGHTS_H

#include <stdint.h>

#include "error.h"

typedef struct wsrc wsrc;

int wsrc_open_file(const char *path, wsrc **out, cin_err *err);
wsrc *wsrc_seeded(uint64_t seed);   /* NULL only when out of memory */
void wsrc_close(wsrc *w);

/* 1 if the checkpoint holds `name` (always 1 for seeded weights). */
int wsrc_has(const wsrc *w, const char *name);

/* The shape of `name` in the checkpoint; CIN_E_NOTFOUND if absent or seeded. */
int wsrc_shape(const wsrc *w, const char *name, int *ndim, int64_t shape[8], cin_err *err);

/* Reads `name`, which must have exactly the given shape and finite values, into a new array
 * owned by the caller (free()). The name is remembered for wsrc_unused(). */
int wsrc_get(wsrc *w, const char *name, int ndim, const int64_t *shape, float **out,
             cin_err *err);

/* The first tensor of the checkpoint that no wsrc_get() asked for and that `belongs` says is
 * part of the model's namespace (a checkpoint of another size or variant), or NULL. *count
 * gets how many there are. Seeded weights have none. */
const char *wsrc_unused(const wsrc *w, int (*belongs)(const char *name), int *count);

/* The checkpoint's __metadata__ value for key, or NULL (always NULL for seeded weights). */
const char *wsrc_meta(const wsrc *w, const char *key);

/* "file.safetensors" or "seed N": for messages. */
const char *wsrc_name(const wsrc *w);

#endif
