"""Continual transformer encoder reference: the regular encoder over a sliding window of frames.

A stream of feature vectors f_tau (tau = 0, 1, ... the absolute frame index) is projected to
tokens x_tau = input_proj(f_tau) + PE[tau mod window], recycling the positions as
continual-inference's RecyclingPositionalEncoding does (it gives step tau the index tau mod its
table size). At step t the window holds tokens t-window+1 .. t, oldest first, behind an optional
class token (sequence position 0, no position). The layers are nn.TransformerEncoderLayer
(batch_first, dropout 0, no mask); the class token's output, or else the last token's, goes
through the head. cin's continual mode must give this for every t >= window-1 and nothing before.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

POSITIONS = ("none", "learned", "sinusoidal")
LAYER_NORM_EPS = 1e-5


def sinusoidal_table(length, d_model, dtype=torch.float64):
    """Vaswani et al.: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(same angle);
    the angles are formed in float64 whatever dtype is asked for."""
    p = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = p / torch.pow(torch.tensor(10000.0, dtype=torch.float64), two_i / d_model)
    pe = torch.zeros(length, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.to(dtype)


class ContinualEncoder(nn.Module):
    """State-dict names: input_proj.*, cls_token [d], pos_embedding [window, d], layers.N.*
    (nn.TransformerEncoderLayer's own), head.*."""

    def __init__(self, input_dim, d_model, nhead, dim_feedforward, num_layers, window,
                 num_classes, pos="none", class_token=False, activation="relu",
                 norm_first=False):
        super().__init__()
        if pos not in POSITIONS:
            raise ValueError("pos must be one of %s, not %r" % (POSITIONS, pos))
        self.window, self.pos = window, pos
        self.input_proj = nn.Linear(input_dim, d_model)
        self.cls_token = nn.Parameter(torch.zeros(d_model)) if class_token else None
        if pos == "learned":
            self.pos_embedding = nn.Parameter(torch.zeros(window, d_model))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=0.0,
                                       activation=activation, layer_norm_eps=LAYER_NORM_EPS,
                                       batch_first=True, norm_first=norm_first)
            for _ in range(num_layers))
        self.head = nn.Linear(d_model, num_classes)

    def positions(self, steps, dtype):
        """[steps, d]: the encoding added to the token of frame tau, PE[tau mod window]."""
        d = self.input_proj.out_features
        if self.pos == "none":
            return torch.zeros(steps, d, dtype=dtype)
        table = (self.pos_embedding if self.pos == "learned"
                 else sinusoidal_table(self.window, d, dtype))
        return table[torch.arange(steps) % self.window].to(dtype)

    def tokens(self, frames):
        """frames [T, input_dim] -> tokens [T, d]; a token depends on its frame alone."""
        return self.input_proj(frames) + self.positions(frames.shape[0], frames.dtype)

    def forward(self, windows):
        """windows [B, window, d] of tokens, oldest first -> logits [B, classes]."""
        x = windows
        if self.cls_token is not None:
            cls = self.cls_token.to(x.dtype).expand(x.shape[0], 1, -1)
            x = torch.cat((cls, x), dim=1)
        for layer in self.layers:
            x = layer(x)
        out = x[:, 0] if self.cls_token is not None else x[:, -1]
        return self.head(out)


def window_logits(model, frames, chunk=32):
    """Logits [T - window + 1, classes] for the windows ending at t = window-1 .. T-1 of a stream
    of frames [T, input_dim]; row r is the output cin's continual mode emits at step
    r + window - 1."""
    w = model.window
    tok = model.tokens(frames)
    windows = tok.unfold(0, w, 1).permute(0, 2, 1)  # [P, window, d]
    return torch.cat([model(windows[i:i + chunk]) for i in range(0, windows.shape[0], chunk)])


def _plain_layer(layer, x):
    """nn.TransformerEncoderLayer written out, to guard against its fused eval path:
    x [B, N, d]; post-norm: x = n1(x + sa(x)); x = n2(x + ff(x)); norm_first: x += sa(n1(x));
    x += ff(n2(x)). sa splits d into heads, softmax(q k^T / sqrt(d_head)) v, out_proj."""
    sa, d = layer.self_attn, layer.self_attn.embed_dim
    h = sa.num_heads

    def attend(y):
        b, n, _ = y.shape
        q, k, v = F.linear(y, sa.in_proj_weight, sa.in_proj_bias).split(d, dim=-1)
        q, k, v = (t.reshape(b, n, h, d // h).transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), dim=-1)
        return sa.out_proj((a @ v).transpose(1, 2).reshape(b, n, d))

    act = F.relu if layer.activation is F.relu else F.gelu

    def ff(y):
        return layer.linear2(act(layer.linear1(y)))

    if layer.norm_first:
        x = x + attend(layer.norm1(x))
        return x + ff(layer.norm2(x))
    x = layer.norm1(x + attend(x))
    return layer.norm2(x + ff(x))


def plain_window_logits(model, frames):
    """window_logits without nn.TransformerEncoderLayer.forward (see _plain_layer)."""
    w = model.window
    x = model.tokens(frames).unfold(0, w, 1).permute(0, 2, 1)
    if model.cls_token is not None:
        x = torch.cat((model.cls_token.to(x.dtype).expand(x.shape[0], 1, -1), x), dim=1)
    for layer in model.layers:
        x = _plain_layer(layer, x)
    return model.head(x[:, 0] if model.cls_token is not None else x[:, -1])
