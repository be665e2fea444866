/* Python-flavoured JSON lines (see pyjson.h). The rewrite runs only after a strict parse has
 * failed, so well-formed lines cost one parse and no copy. */
#include "pyjson.h"

#include <stdlib.h>
#include <string.h>

static const char *const pyjson_tokens[] = {"-Infinity", "Infinity", "NaN"};
#define PYJSON_NTOKENS (sizeof pyjson_tokens / sizeof pyjson_tokens[0])

/* The length of the token at line[i, len), or 0 if none starts there. */
static size_t pyjson_token_at(const char *line, size_t i, size_t len)
{
    for (size_t t = 0; t < PYJSON_NTOKENS; t++) {
        size_t tl = strlen(pyjson_tokens[t]);
        if (len - i >= tl && memcmp(line + i, pyjson_tokens[t], tl) == 0)
            return tl;
    }
    return 0;
}

/* Copies line to scratch with the tokens outside strings replaced by null. Returns the new
 * length, or 0 if nothing was replaced or there is no memory. A token becomes at most 4/3 of
 * its length ("NaN" -> "null"), so len + len / 3 + 2 bytes always suffice. */
static size_t pyjson_rewrite(const char *line, size_t len, pyjson_buf *b)
{
    size_t need = len + len / 3 + 2, n = 0, changed = 0;
    if (need > b->cap) {
        char *grown = realloc(b->text, need);
        if (!grown)
            return 0;
        b->text = grown;
        b->cap = need;
    }
    int in_string = 0, escaped = 0;
    for (size_t i = 0; i < len; i++) {
        size_t tl = in_string ? 0 : pyjson_token_at(line, i, len);
        if (tl) {
            memcpy(b->text + n, "null", 4);
            n += 4;
            i += tl - 1;
            changed++;
            continue;
        }
        if (in_string && !escaped && line[i] == '"')
            in_string = 0;
        else if (!in_string && line[i] == '"')
            in_string = 1;
        escaped = in_string && !escaped && line[i] == '\\';
        b->text[n++] = line[i];
    }
    return changed ? n : 0;
}

json_t *pyjson_load(const char *line, size_t len, pyjson_buf *scratch, json_error_t *jerr)
{
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, jerr);
    if (root)
        return root;
    size_t fixed = pyjson_rewrite(line, len, scratch);
    if (!fixed)
        return NULL;
    return json_loadb(scratch->text, fixed, JSON_REJECT_DUPLICATES, jerr);
}

const char *pyjson_type(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    default: return "a number";
    }
}

void pyjson_buf_free(pyjson_buf *b)
{
    free(b->text);
    b->text = NULL;
    b->cap = 0;
}
