/* Transformer encoder models over feature-vector streams: an input projection, recycled
 * positional encoding, one or two encoder layers with continual attention, and a linear head,
 * from checkpoints with torch.nn.TransformerEncoderLayer's names. */
#ifndef CIN_COTRANSFORMER_H
#define CIN_COTRANSFORMER_H

#include "model.h"
#include "weights.h"

/* Builds the graph; frames are [input_dim][1][1], outputs num_classes logits. */
int cotransformer_build(const cin_transformer_opts *o, int num_classes, wsrc *w, cin_node **root,
                        cin_err *err);

#endif
