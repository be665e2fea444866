/* Transformer encoders over a sliding window of tokens (Continual Transformers, Hedegaard et
 * al., ICLR 2023; co.SingleOutputTransformerEncoderLayer and
 * co.RetroactiveTransformerEncoderLayer in continual-inference).
 *
 * The node takes one token [d][1][1] per step and, once `window` tokens have arrived, gives the
 * output token of torch.nn.TransformerEncoderLayer layers run over the last `window` tokens
 * (with an optional class token first): the class token's output, or else the newest token's.
 * Clip mode runs the regular layers over each window of the clip. Stepping keeps each token's
 * keys and values (and queries) per stream, so a token is projected once:
 *   one layer:  the last layer is "single output": only the output token's query is attended;
 *   two layers: the first layer gives every token of the window, recomputed each step
 *               ("regular") or updated by removing the oldest key and adding the newest
 *               ("retroactive", O(window * d) attention per step), then a single-output layer. */
#ifndef CIN_TRANSFORMER_H
#define CIN_TRANSFORMER_H

#include "activation.h"
#include "node.h"

#define TFM_MAX_LAYERS 2

/* One torch.nn.TransformerEncoderLayer; arrays in its own layouts, copied by tfm_create. */
typedef struct tfm_layer_weights {
    int dim_ff;                            /* ff of this layer; 0: tfm_params.dim_ff */
    const float *in_proj_w, *in_proj_b;    /* [3d][d], [3d]: query, key, value rows */
    const float *out_proj_w, *out_proj_b;  /* [d][d], [d] */
    const float *linear1_w, *linear1_b;    /* [ff][d], [ff] */
    const float *linear2_w, *linear2_b;    /* [d][ff], [d] */
    const float *norm1_w, *norm1_b;        /* [d] */
    const float *norm2_w, *norm2_b;        /* [d] */
} tfm_layer_weights;

typedef enum { TFM_FIRST_RETROACTIVE, TFM_FIRST_REGULAR } tfm_first_form;

typedef struct tfm_params {
    int d_model, nhead, dim_ff, window, n_layers;
    int norm_first;                 /* torch's norm_first */
    act_kind activation;            /* ACT_RELU or ACT_GELU */
    float eps;                      /* layer norm epsilon */
    const float *cls_token;         /* [d] or NULL */
    tfm_first_form first;           /* how a two-layer stack steps its first layer */
    tfm_layer_weights layer[TFM_MAX_LAYERS];
} tfm_params;

int tfm_create(const tfm_params *p, cin_node **out, cin_err *err);

/* Adds positional encoding row (t mod window) to the token of frame t, where t counts the
 * stream's frames (clip mode: the clip's) from 0: continual-inference's recycling positional
 * encoding. table [window][d] is copied. */
int tfm_posenc_create(int d, int window, const float *table, cin_node **out, cin_err *err);

/* The sinusoidal table of Vaswani et al.: [p][2i] = sin(p / 10000^(2i/d)), [p][2i+1] = cos. */
void tfm_sinusoid(int d, int window, float *table);

#endif
