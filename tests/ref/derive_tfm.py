"""A derived (pruned and adapted) continual transformer encoder, re-implemented for the goldens
of tests/test_derive.c; the fusion is derive.py's.

Each layer's feed-forward width is pruned: linear1 keeps the rows of its largest filters by
L1 norm (adapter fused), linear2 the same columns. The attention projections take adapters
unpruned, under structured-pruning-adapters' names: SPLoRAMultiheadAttention adapts q_proj,
k_proj and v_proj as Linear layers of their own (rows [1, r, d], cols [1, d, r]) and its
in_proj_weight is their adapted weights stacked (splora.py, `in_proj_weight`); out_proj is a
Linear (here a full [d, d] parameter adapter, added like SPPaRA's).
"""
import os

import torch
import torch.nn as nn

from derive import keep_count
from safetensors_io import write_safetensors
from seeded import seeded_input, seeded_state_dict
from transformer import ContinualEncoder, plain_window_logits

WEIGHT_SEED = 1
INPUT_SEED = 2
CASE = {"input_dim": 16, "d_model": 32, "nhead": 4, "dim_feedforward": 64, "layers": 2,
        "window": 8, "num_classes": 5, "pos": "learned", "steps": 24}


def tfm_adapters(rank=2):
    g = torch.Generator().manual_seed(14)
    d, ff = CASE["d_model"], CASE["dim_feedforward"]

    def u(*shape):
        return (torch.rand(*shape, generator=g) - 0.5) * 0.2

    return {"layers.0.self_attn.q_proj.adapter.rows": u(1, rank, d),
            "layers.0.self_attn.q_proj.adapter.cols": u(1, d, rank),
            "layers.0.self_attn.v_proj.adapter.rows": u(1, rank, d),
            "layers.0.self_attn.v_proj.adapter.cols": u(1, d, rank),
            "layers.1.self_attn.k_proj.adapter.rows": u(1, rank, d),
            "layers.1.self_attn.k_proj.adapter.cols": u(1, d, rank),
            "layers.1.self_attn.out_proj.adapter": u(d, d),
            "layers.0.linear1.adapter.rows": u(1, rank, d),
            "layers.0.linear1.adapter.cols": u(1, ff, rank),
            "layers.1.linear2.adapter.rows": u(1, rank, ff),
            "layers.1.linear2.adapter.cols": u(1, d, rank)}


def _fused(adapters, layer, w):
    w = w.double().clone()
    if layer + ".adapter.rows" in adapters:
        rows, cols = (adapters[layer + ".adapter." + k].double() for k in ("rows", "cols"))
        w += cols[0] @ rows[0]
    if layer + ".adapter" in adapters:
        w += adapters[layer + ".adapter"].double()
    return w


def _linear(w, b):
    lin = nn.Linear(w.shape[1], w.shape[0]).double()
    lin.weight.data.copy_(w)
    lin.bias.data.copy_(b)
    return lin


def derive(model, adapters, ratio):
    """Fuses the adapters and prunes each layer's feed-forward width in place; the masks."""
    masks = {}
    for l, layer in enumerate(model.layers):
        p = "layers.%d." % l
        sa = layer.self_attn
        qkv = [_fused(adapters, p + "self_attn." + n, w)
               for n, w in zip(("q_proj", "k_proj", "v_proj"), sa.in_proj_weight.chunk(3))]
        sa.in_proj_weight.data.copy_(torch.cat(qkv))
        sa.out_proj.weight.data.copy_(_fused(adapters, p + "self_attn.out_proj",
                                             sa.out_proj.weight))
        w1 = _fused(adapters, p + "linear1", layer.linear1.weight)
        w2 = _fused(adapters, p + "linear2", layer.linear2.weight)
        score = w1.abs().sum(1)
        order = sorted(range(len(score)), key=lambda i: (-score[i].item(), i))
        mask = torch.zeros(len(score))
        mask[order[:keep_count(len(score), ratio)]] = 1.0
        keep = mask.nonzero().flatten()
        layer.linear1 = _linear(w1[keep], layer.linear1.bias.data[keep])
        layer.linear2 = _linear(w2[:, keep], layer.linear2.bias.data)
        masks[p + "linear1.out_mask"] = mask
    return masks


def make_derive_tfm_goldens(outdir, ratio=0.5):
    c = CASE
    model = ContinualEncoder(c["input_dim"], c["d_model"], c["nhead"], c["dim_feedforward"],
                             c["layers"], c["window"], c["num_classes"], pos=c["pos"]).eval()
    seeded_state_dict(model, WEIGHT_SEED)
    model = model.double()
    adapters = tfm_adapters()
    masks = derive(model, adapters, ratio)
    x = seeded_input((c["steps"], c["input_dim"]), INPUT_SEED)
    with torch.no_grad():
        logits = plain_window_logits(model, x.double())
    meta = dict(c, weight_seed=WEIGHT_SEED, input_seed=INPUT_SEED,
                input_sum=repr(x.double().sum().item()), ratio=ratio, norm="l1",
                first_step=c["window"] - 1, compute="float64",
                first_layer="regular encoder over the window (the truth for both forms)")
    write_safetensors(os.path.join(outdir, "derive_tfm_logits.safetensors"),
                      [("logits", logits.float())], {k: str(v) for k, v in meta.items()})
    write_safetensors(os.path.join(outdir, "derive_tfm_masks.safetensors"),
                      list(masks.items()), {"ratio": ratio, "norm": "l1"})
    write_safetensors(os.path.join(outdir, "derive_tfm_adapters.safetensors"),
                      list(adapters.items()), {"generator": "torch.manual_seed(14)"})
