"""Derived (pruned and adapted) ST-GCN models, re-implemented for the goldens of
tests/test_derive.c; the fusion is derive.py's (structured-pruning-adapters' arithmetic).

What is pruned, per block of stgcn.py's StGcn:
- the inner width: the graph convolution's output channels, which its batch norm and the
  temporal convolution's inputs follow. yysijie's gcn.conv writes K * C channels, channel
  k * C + c being partition k of channel c, so one mask of C keeps K rows each;
- the output width: the temporal convolution's outputs, its batch norm, the residual
  convolution's outputs, the next block's inputs and the classifier's. A block whose residual
  is the identity adds its input to its output channel by channel, so the blocks 0-3, 4-6 and
  7-9 (joined by identity residuals) share one output mask each. In continual-skeletons'
  layout the graph convolution has a residual of its own, the identity where the width stays
  (blocks other than 0, 4, 7): those blocks' inner mask is their input's, the group's.
Masks are computed as cin-derive computes them: inner widths first, each from the summed
L1 norms of the filters that write it (the K partitions of gcn.conv, or every g_conv.k and
gcn_residual.0), adapters fused; then each group's output mask from the summed norms of every
filter writing it: the temporal convolutions (inputs sliced to the kept inner channels where
that mask was computed in the first step), the residual convolutions, and in
continual-skeletons' layout the g_conv filters of blocks whose inner width is the group's.
"""
import os

import torch
import torch.nn as nn

from derive import centre_add, keep_count
from safetensors_io import write_safetensors
from seeded import seeded_input
from stgcn import StGcn, clip_logits, continual_geometry, continual_logits, seed_weights

WEIGHT_SEED = 1
INPUT_SEED = 2
SHAPE = (3, 25, 2)


def _blocks(model):
    if model.layout == "stgcn":
        return [("st_gcn_networks.%d." % i, b) for i, b in enumerate(model.st_gcn_networks)]
    return [("layers.%s." % k, b) for k, b in model.layers.items()]


def _norms(w, norm="l1"):
    flat = w.double().reshape(w.shape[0], -1)
    return flat.abs().sum(1) if norm == "l1" else flat.pow(2).sum(1).sqrt()


def _mask(score, ratio):
    order = sorted(range(len(score)), key=lambda i: (-score[i].item(), i))
    mask = torch.zeros(len(score))
    mask[order[:keep_count(len(score), ratio)]] = 1.0
    return mask


def adapted(adapters, layer, w):
    """w with the adapters of `layer` fused: SPLoRA (cols @ rows) and SPPaRA, at the centre."""
    w = w.double()
    if layer + ".adapter.rows" in adapters:
        rows, cols = (adapters[layer + ".adapter." + k].double() for k in ("rows", "cols"))
        w = centre_add(w, cols[0] @ rows[0])
    if layer + ".adapter" in adapters:
        w = centre_add(w, adapters[layer + ".adapter"].double())
    return w


class Plan:
    """The slots of one model: per block the input, inner and output slot ids and whether the
    inner mask is computed at the inner ratio (its own) or is the input's group's."""

    def __init__(self, model):
        self.coskel = model.layout == "coskel"
        self.blocks = _blocks(model)
        self.inner, self.out, self.own_inner = [], [], []
        slot = 0                                   # slot 0: the input's channels
        for i, (_, b) in enumerate(self.blocks):
            c_in, c_out = model.plan[i][0], model.plan[i][1]
            block_in = self.out[-1] if i else 0
            own = not self.coskel or c_in != c_out
            if own:
                slot += 1
            self.inner.append(slot if own else block_in)
            self.own_inner.append(own)
            if i and b.residual_kind == "identity":
                self.out.append(block_in)
            else:
                slot += 1
                self.out.append(slot)
        self.block_in = [self.out[i - 1] if i else 0 for i in range(len(self.blocks))]


def _gcn_writers(model, plan, i, adapters):
    """(weight, rows per channel) of the filters writing block i's inner channels."""
    p, b = plan.blocks[i]
    if not plan.coskel:
        return [adapted(adapters, p + "gcn.conv", b.gcn.conv.weight.data)]
    ws = [adapted(adapters, p + "gcn.g_conv.%d" % k, c.weight.data)
          for k, c in enumerate(b.gcn.g_conv)]
    if b.gcn.gcn_residual is not None:
        ws.append(adapted(adapters, p + "gcn.gcn_residual.0", b.gcn.gcn_residual[0].weight.data))
    return ws


def _fold(score, width):
    """Row k * width + c counts for channel c."""
    return score.reshape(-1, width).sum(0)


def compute_masks(model, adapters, ratio, out_ratio):
    """{slot: 0/1 mask} as cin-derive computes them (see the top of this file)."""
    plan, masks = Plan(model), {}
    widths = [spec[1] for spec in model.plan]
    for i in range(len(plan.blocks)):
        if plan.own_inner[i]:
            score = sum(_fold(_norms(w), widths[i]) for w in _gcn_writers(model, plan, i, adapters))
            masks[plan.inner[i]] = _mask(score, ratio)
    for slot in sorted(set(plan.out)):
        score = torch.zeros(widths[plan.out.index(slot)], dtype=torch.float64)
        for i, (p, b) in enumerate(plan.blocks):
            if plan.out[i] == slot:
                tc = b.tcn[2] if not plan.coskel else b.tcn.t_conv
                w = adapted(adapters, p + ("tcn.2" if not plan.coskel else "tcn.t_conv"),
                            tc.weight.data)
                if plan.own_inner[i]:
                    w = w[:, masks[plan.inner[i]].bool()]
                score += _norms(w)
                if b.residual_kind == "conv":
                    rc = b.residual[0] if not plan.coskel else b.residual.t_conv
                    name = p + ("residual.0" if not plan.coskel else "residual.t_conv")
                    score += _norms(adapted(adapters, name, rc.weight.data))
            if plan.coskel and not plan.own_inner[i] and plan.inner[i] == slot:
                score += sum(_norms(w) for w in _gcn_writers(model, plan, i, adapters))
        masks[slot] = _mask(score, out_ratio)
    return plan, masks


def mask_tensors(model, plan, masks):
    """The masks under cin-derive's names, as --write-masks writes them."""
    out = {}
    for i, (p, b) in enumerate(plan.blocks):
        inner, o = masks[plan.inner[i]], masks[plan.out[i]]
        if plan.coskel:
            for k in range(len(b.gcn.g_conv)):
                out[p + "gcn.g_conv.%d.out_mask" % k] = inner
            if b.gcn.gcn_residual is not None:
                out[p + "gcn.gcn_residual.0.out_mask"] = inner
            out[p + "tcn.t_conv.out_mask"] = o
            if b.residual_kind == "conv":
                out[p + "residual.t_conv.out_mask"] = o
        else:
            out[p + "gcn.conv.out_mask"] = inner.repeat(b.gcn.parts)
            out[p + "tcn.2.out_mask"] = o
            if b.residual_kind == "conv":
                out[p + "residual.0.out_mask"] = o
    return out


def _conv2d(weight, bias, stride=1, padding=0):
    c = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride=stride,
                  padding=padding, bias=bias is not None).double()
    c.weight.data.copy_(weight)
    if bias is not None:
        c.bias.data.copy_(bias)
    return c


def _bn(bn, keep):
    new = nn.BatchNorm2d(len(keep), eps=bn.eps).double().eval()
    for attr in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, attr).data.copy_(getattr(bn, attr).data[keep])
    return new


def _slice_conv(conv, w, keep_out, keep_in):
    bias = conv.bias.data[keep_out] if conv.bias is not None else None
    return _conv2d(w[keep_out][:, keep_in], bias, conv.stride, conv.padding)


def prune(model, plan, masks, adapters):
    """Slices (and fuses) every pruned tensor of the model in place."""
    keep = {s: m.nonzero().flatten() for s, m in masks.items()}
    keep[0] = torch.arange(model.plan[0][0])
    for i, (p, b) in enumerate(plan.blocks):
        ki, kn, ko = keep[plan.block_in[i]], keep[plan.inner[i]], keep[plan.out[i]]
        if plan.coskel:
            g = b.gcn
            for k, c in enumerate(g.g_conv):
                g.g_conv[k] = _slice_conv(c, adapted(adapters, p + "gcn.g_conv.%d" % k,
                                                     c.weight.data), kn, ki)
            if g.gcn_residual is not None:
                c = g.gcn_residual[0]
                g.gcn_residual[0] = _slice_conv(c, adapted(adapters, p + "gcn.gcn_residual.0",
                                                           c.weight.data), kn, ki)
                g.gcn_residual[1] = _bn(g.gcn_residual[1], kn)
            g.bn = _bn(g.bn, kn)
            t = b.tcn
            t.t_conv = _slice_conv(t.t_conv, adapted(adapters, p + "tcn.t_conv",
                                                     t.t_conv.weight.data), ko, kn)
            t.bn = _bn(t.bn, ko)
            if b.residual_kind == "conv":
                r = b.residual
                r.t_conv = _slice_conv(r.t_conv, adapted(adapters, p + "residual.t_conv",
                                                         r.t_conv.weight.data), ko, ki)
                r.bn = _bn(r.bn, ko)
        else:
            parts, c_out = b.gcn.parts, model.plan[i][1]
            rows = torch.cat([kn + k * c_out for k in range(parts)])
            c = b.gcn.conv
            b.gcn.conv = _slice_conv(c, adapted(adapters, p + "gcn.conv", c.weight.data), rows, ki)
            b.tcn[0] = _bn(b.tcn[0], kn)
            c = b.tcn[2]
            b.tcn[2] = _slice_conv(c, adapted(adapters, p + "tcn.2", c.weight.data), ko, kn)
            b.tcn[3] = _bn(b.tcn[3], ko)
            if b.residual_kind == "conv":
                c = b.residual[0]
                b.residual[0] = _slice_conv(c, adapted(adapters, p + "residual.0", c.weight.data),
                                            ko, ki)
                b.residual[1] = _bn(b.residual[1], ko)
    last = keep[plan.out[-1]]
    if plan.coskel:
        w = adapted(adapters, "fc", model.fc.weight.data)[:, last]
        fc = nn.Linear(len(last), w.shape[0]).double()
        fc.weight.data.copy_(w)
        fc.bias.data.copy_(model.fc.bias.data)
        model.fc = fc
    else:
        w = adapted(adapters, "fcn", model.fcn.weight.data)[:, last]
        model.fcn = _conv2d(w, model.fcn.bias.data)


def stgcn_adapters(model, rank=2):
    """yysijie: SPLoRA on every gcn.conv, SPPaRA on block 1's tcn.2 (at tap (4, 0) of its 9x1
    kernel); continual-skeletons: SPLoRA on the classifier fc."""
    g = torch.Generator().manual_seed(13)

    def u(*shape, scale=0.2):
        return (torch.rand(*shape, generator=g) - 0.5) * scale

    out = {}
    if model.layout == "coskel":
        out["fc.adapter.rows"] = u(1, rank, model.fc.in_features)
        out["fc.adapter.cols"] = u(1, model.fc.out_features, rank)
        return out
    for p, b in _blocks(model):
        rows_out, c_in = b.gcn.conv.weight.shape[:2]
        out[p + "gcn.conv.adapter.rows"] = u(1, rank, c_in)
        out[p + "gcn.conv.adapter.cols"] = u(1, rows_out, rank)
    c = model.st_gcn_networks[1].tcn[2].weight.shape[0]
    out["st_gcn_networks.1.tcn.2.adapter"] = u(c, c, scale=0.1)
    return out


def _model(layout, variant):
    model = StGcn(layout, variant, SHAPE[0], 60, SHAPE[2]).eval()
    seed_weights(model, WEIGHT_SEED)
    return model.double()


def _meta(layout, variant, x, ratio, out_ratio):
    return {"model": "stgcn", "layout": layout, "variant": variant,
            "weight_seed": WEIGHT_SEED, "input_seed": INPUT_SEED,
            "input_sum": repr(x.double().sum().item()), "ratio": ratio,
            "out_ratio": out_ratio, "norm": "l1", "compute": "float64"}


def derived_stgcn_golden(outdir, name, layout, variant, clip_frames, frames, ratio=0.5,
                         out_ratio=0.5):
    """The derived model's clip logits over the first clip_frames frames and, when frames >
    clip_frames, its continual logits over `frames` (stgcn.continual_logits)."""
    model = _model(layout, variant)
    adapters = stgcn_adapters(model)
    plan, masks = compute_masks(model, adapters, ratio, out_ratio)
    names = mask_tensors(model, plan, masks)
    prune(model, plan, masks, adapters)
    x = seeded_input((frames,) + SHAPE, INPUT_SEED)
    meta = _meta(layout, variant, x, ratio, out_ratio)
    meta.update({"frames": frames, "clip_frames": clip_frames})
    with torch.no_grad():
        out = [("clip_logits", clip_logits(model, x[:clip_frames].double()).float())]
        if frames > clip_frames:
            steps, _ = continual_logits(model, x.double(), clip_frames)
            geo = continual_geometry(model, clip_frames, frames)
            meta.update({"first_step": geo["first_step"], "stride": geo["stride"]})
            out.append(("step_logits", steps.float()))
    write_safetensors(os.path.join(outdir, name + "_logits.safetensors"), out, meta)
    write_safetensors(os.path.join(outdir, name + "_masks.safetensors"), list(names.items()),
                      {"ratio": ratio, "out_ratio": out_ratio, "norm": "l1"})
    write_safetensors(os.path.join(outdir, name + "_adapters.safetensors"),
                      list(adapters.items()), {"generator": "torch.manual_seed(13)"})


def make_derive_stgcn_goldens(outdir):
    derived_stgcn_golden(outdir, "derive_cost_gcn_star", "stgcn", "stgcn_star", 100, 128)
    derived_stgcn_golden(outdir, "derive_stgcn_coskel", "coskel", "stgcn", 64, 64)
