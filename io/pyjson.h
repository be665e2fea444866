/* JSON lines as Python's json.dumps writes them: its NaN, Infinity and -Infinity tokens are not
 * JSON, and are read here as null, which the line sources mask to 0 and count. Shared by the
 * feature-vector (feat.h) and skeleton-row (skelrows.h) sources.
 *
 *     pyjson_buf scratch = {0};
 *     json_error_t jerr;
 *     json_t *root = pyjson_load(line, len, &scratch, &jerr);   // NULL: jerr says why
 *     ...
 *     json_decref(root);
 *     pyjson_buf_free(&scratch);
 *
 * Not thread-safe for one scratch buffer; different buffers are independent.
 */
#ifndef CIN_PYJSON_H
#define CIN_PYJSON_H

#include <jansson.h>
#include <stddef.h>

/* Room for a rewritten line; grows to the longest line rewritten. Zero-initialise it. */
typedef struct pyjson_buf {
    char *text;
    size_t cap;
} pyjson_buf;

/* Parses line[0, len) (duplicate keys rejected); if that fails and the line holds NaN,
 * Infinity or -Infinity outside strings, parses it again with those tokens as null. Returns the
 * tree (the caller owns it: json_decref) or NULL with the first parse's error in *jerr, or the
 * second's when there was one. */
json_t *pyjson_load(const char *line, size_t len, pyjson_buf *scratch, json_error_t *jerr);

/* "an object", "an array", "a string", "a boolean", "null" or "a number", for messages. */
const char *pyjson_type(const json_t *v);

/* Frees the scratch text; the buffer can be used again. */
void pyjson_buf_free(pyjson_buf *b);

#endif
