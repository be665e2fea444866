"""Structured pruning adapters, re-implemented for the goldens of tests/test_derive.c.

Follows LukasHedegaard/structured-pruning-adapters (84cee43), sp_adapters/:
- SPLoRA (splora.py, lora.py): LowRankMatrix holds rows [1, r, in/groups] and cols
  [1, out, r]; the adapter is cols @ rows, added to the weight (Linear) or to the kernel's
  centre tap (ConvNd: index kernel_size[0] // 2 in every spatial dimension; the library only
  accepts cubic odd kernels, so that is the centre).
- SPPaRA (sppara.py, ConvNd only): a parameter adapter [out, in/groups] added at the centre tap.
  The library has no SPPaRA Linear; cin accepts [out, in] added to a Linear's weight alike.
- named_parameters(..., in_features_mask, out_features_mask): rows[:, :, m_in],
  cols[:, m_out, :], bias[m_out], weight[m_out][:, m_in].
So the fused weight of a task is (W0 + adapter at the centre)[m_out][:, m_in], which equals
W0[m_out, m_in] + B[m_out] A[:, m_in]. That library's masked named_parameters needs torch >= 2.0,
hence these few lines of our own.

Masks: keep the `keep` output filters with the largest L1 or L2 norm (ties: the lower index),
keep = max(1, round(out * (1 - ratio))). For X3D only the bottleneck inner width is pruned:
conv_a's outputs, conv_b (depthwise) and its norm, the squeeze-excitation's channels (its
reduced width stays) and conv_c's inputs follow one mask per block.
"""
import os

import torch
import torch.nn as nn

from safetensors_io import write_safetensors
from seeded import seeded_input, seeded_state_dict
from x3d import X3D

WEIGHT_SEED = 1
INPUT_SEED = 2


def centre_add(w0, delta):
    """w0 [out, in, k...] plus delta [out, in] at the centre tap (a Linear: no taps)."""
    w = w0.clone()
    idx = (slice(None), slice(None)) + tuple(k // 2 for k in w0.shape[2:])
    w[idx] = w[idx] + delta
    return w


def fuse_splora(w0, rows, cols, m_out, m_in):
    return centre_add(w0, cols[0] @ rows[0])[m_out][:, m_in]


def fuse_sppara(w0, p, m_out, m_in):
    return centre_add(w0, p)[m_out][:, m_in]


def keep_count(out, ratio):
    return max(1, int(round(out * (1.0 - ratio))))


def norm_mask(w, ratio, norm):
    """0/1 float mask [out] of the filters with the largest L1 or L2 norm."""
    flat = w.double().reshape(w.shape[0], -1)
    score = flat.abs().sum(1) if norm == "l1" else flat.pow(2).sum(1).sqrt()
    order = sorted(range(w.shape[0]), key=lambda i: (-score[i].item(), i))
    mask = torch.zeros(w.shape[0])
    mask[order[:keep_count(w.shape[0], ratio)]] = 1.0
    return mask


def fuse_goldens(path):
    g = torch.Generator().manual_seed(11)

    def u(*shape):
        return torch.rand(*shape, generator=g) * 2 - 1

    lin, conv = u(6, 5), u(6, 4, 3, 3, 3)
    lin_out = torch.tensor([1., 0, 1, 1, 0, 1])
    lin_in = torch.tensor([0., 1, 1, 0, 1])
    conv_out = torch.tensor([0., 1, 1, 0, 1, 1])
    conv_in = torch.tensor([1., 0, 1, 1])
    t = {"linear.weight": lin, "linear.m_out": lin_out, "linear.m_in": lin_in,
         "linear.adapter.rows": u(1, 2, 5), "linear.adapter.cols": u(1, 6, 2),
         "linear.para": u(6, 5),
         "conv.weight": conv, "conv.m_out": conv_out, "conv.m_in": conv_in,
         "conv.adapter.rows": u(1, 3, 4), "conv.adapter.cols": u(1, 6, 3),
         "conv.para": u(6, 4)}
    for k in ("linear", "conv"):
        mo, mi = t[k + ".m_out"].bool(), t[k + ".m_in"].bool()
        w0 = t[k + ".weight"].double()
        rows, cols = t[k + ".adapter.rows"].double(), t[k + ".adapter.cols"].double()
        t[k + ".splora_fused"] = fuse_splora(w0, rows, cols, mo, mi)
        t[k + ".sppara_fused"] = fuse_sppara(w0, t[k + ".para"].double(), mo, mi)
        for norm in ("l1", "l2"):
            t["%s.mask_%s" % (k, norm)] = norm_mask(t[k + ".weight"], 0.5, norm)
    write_safetensors(path, [(k, v.float()) for k, v in t.items()],
                      {"generator": "torch.manual_seed(11), uniform [-1, 1)",
                       "mask_ratio": "0.5", "compute": "float64"})


def _bottlenecks(model):
    for stage in model.blocks[1:5]:
        for i, block in enumerate(stage.res_blocks):
            yield block.branch2


def _pv_prefix(model):
    names = {}
    for name, module in model.named_modules():
        names[id(module)] = name
    return names


def _bn_slice(bn, keep):
    new = nn.BatchNorm3d(len(keep), eps=bn.eps).double().eval()
    for attr in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, attr).data.copy_(getattr(bn, attr).data[keep])
    return new


def _conv(weight, groups=1, stride=1, padding=0, bias=None):
    out, in_g = weight.shape[:2]
    c = nn.Conv3d(in_g * groups, out, tuple(weight.shape[2:]), stride=stride, padding=padding,
                  groups=groups, bias=bias is not None).double()
    c.weight.data.copy_(weight)
    if bias is not None:
        c.bias.data.copy_(bias)
    return c


def prune_bottleneck(b, keep, adapters, prefix):
    """Slices one bottleneck's inner width to the kept indices, fusing its adapters."""
    keep = keep.nonzero().flatten()
    wa = b.conv_a.weight.data
    if prefix + "conv_a.adapter.rows" in adapters:
        rows, cols = (adapters[prefix + "conv_a.adapter." + k].double() for k in ("rows", "cols"))
        wa = centre_add(wa, cols[0] @ rows[0])
    wc = b.conv_c.weight.data
    if prefix + "conv_c.adapter" in adapters:
        wc = centre_add(wc, adapters[prefix + "conv_c.adapter"].double())
    b.conv_a = _conv(wa[keep])
    b.norm_a = _bn_slice(b.norm_a, keep)
    cb = b.conv_b
    b.conv_b = _conv(cb.weight.data[keep], len(keep), cb.stride, cb.padding)
    b.norm_b[0] = _bn_slice(b.norm_b[0], keep)
    if isinstance(b.norm_b[1], nn.Module) and hasattr(b.norm_b[1], "block"):
        se = b.norm_b[1].block
        se[0] = _conv(se[0].weight.data[:, keep], bias=se[0].bias.data)
        se[2] = _conv(se[2].weight.data[keep], bias=se[2].bias.data[keep])
    b.conv_c = _conv(wc[:, keep])


def x3d_adapters(model, rank=2):
    """SPLoRA on every conv_a, SPPaRA on stage 1's conv_c (kept small: it is a full matrix),
    as the library names them."""
    g = torch.Generator().manual_seed(12)
    out, names = {}, _pv_prefix(model)
    for b in _bottlenecks(model):
        p = names[id(b)] + "."
        inner, dim_in = b.conv_a.weight.shape[:2]
        dim_out = b.conv_c.weight.shape[0]
        out[p + "conv_a.adapter.rows"] = (torch.rand(1, rank, dim_in, generator=g) - 0.5) * 0.2
        out[p + "conv_a.adapter.cols"] = (torch.rand(1, inner, rank, generator=g) - 0.5) * 0.2
        if p.startswith("blocks.1."):
            out[p + "conv_c.adapter"] = (torch.rand(dim_out, inner, generator=g) - 0.5) * 0.1
    return out


def derived_x3d_golden(outdir, crop=96, frames=40, window=4, keep_positions=9, ratio=0.5):
    """X3D-XS, seeded weights, inner widths pruned by the L1 norm of the adapted conv_a, with
    SPLoRA on conv_a and SPPaRA on stage 1's conv_c; stepping outputs as continual_golden's."""
    model = X3D("xs", crop=crop, pool_window=window, se_scope="frame").eval()
    seeded_state_dict(model, WEIGHT_SEED)
    model = model.double()
    adapters = x3d_adapters(model)
    names, masks = _pv_prefix(model), {}
    for b in _bottlenecks(model):
        p = names[id(b)] + "."
        wa = centre_add(b.conv_a.weight.data, (adapters[p + "conv_a.adapter.cols"][0] @
                                               adapters[p + "conv_a.adapter.rows"][0]).double())
        masks[p + "conv_a.out_mask"] = norm_mask(wa, ratio, "l1")
        prune_bottleneck(b, masks[p + "conv_a.out_mask"].bool(), adapters, p)
    x = seeded_input((frames, 3, crop, crop), INPUT_SEED)
    with torch.no_grad():
        logits = model(x.double().permute(1, 0, 2, 3).unsqueeze(0))
    delay = model.delay()
    meta = {"model": "x3d", "size": "xs", "crop": crop, "frames": frames,
            "pool_window": window, "weight_seed": WEIGHT_SEED, "input_seed": INPUT_SEED,
            "input_sum": repr(x.double().sum().item()), "delay": delay,
            "positions": keep_positions, "ratio": ratio, "norm": "l1", "compute": "float64"}
    write_safetensors(os.path.join(outdir, "derive_x3d_xs_steps.safetensors"),
                      [("step_logits", logits[:keep_positions].float())], meta)
    write_safetensors(os.path.join(outdir, "derive_x3d_xs_masks.safetensors"),
                      list(masks.items()), {"ratio": ratio, "norm": "l1"})
    write_safetensors(os.path.join(outdir, "derive_x3d_xs_adapters.safetensors"),
                      list(adapters.items()), {"generator": "torch.manual_seed(12)"})



def stage_masks(model, ratio, norm):
    """One output mask per stage, tied by its residuals: the filters of all its conv_c and its
    projection shortcut ranked by their summed L1 or L2 norms. Called after prune_bottleneck,
    so conv_c is ranked on the inner channels it keeps, with its adapter fused."""
    masks = []
    for stage in model.blocks[1:5]:
        ws = [b.branch2.conv_c.weight.data for b in stage.res_blocks]
        ws.append(stage.res_blocks[0].branch1_conv.weight.data)
        flat = [w.double().reshape(w.shape[0], -1) for w in ws]
        score = sum(f.abs().sum(1) if norm == "l1" else f.pow(2).sum(1).sqrt() for f in flat)
        order = sorted(range(len(score)), key=lambda i: (-score[i].item(), i))
        mask = torch.zeros(len(score))
        mask[order[:keep_count(len(score), ratio)]] = 1.0
        masks.append(mask)
    return masks


def prune_stage_outputs(model, masks):
    """Slices every stage's output channels (conv_c, norm_c, the shortcut) and the inputs that
    read them (the next conv_a and shortcut, the head's pre_conv)."""
    prev = None
    for stage, mask in zip(model.blocks[1:5], masks):
        keep = mask.nonzero().flatten()
        for i, block in enumerate(stage.res_blocks):
            b = block.branch2
            b.conv_c = _conv(b.conv_c.weight.data[keep])
            b.norm_c = _bn_slice(b.norm_c, keep)
            cin = prev if i == 0 else keep
            if cin is not None:
                b.conv_a = _conv(b.conv_a.weight.data[:, cin])
            if block.branch1_conv is not None:
                w = block.branch1_conv.weight.data[keep]
                w = w[:, prev] if prev is not None else w
                block.branch1_conv = _conv(w, stride=block.branch1_conv.stride)
            if block.branch1_norm is not None:
                block.branch1_norm = _bn_slice(block.branch1_norm, keep)
        prev = keep
    pool = model.blocks[5].pool
    pool.pre_conv = _conv(pool.pre_conv.weight.data[:, prev])


def stage_mask_names(model, masks):
    names, out = _pv_prefix(model), {}
    for stage, mask in zip(model.blocks[1:5], masks):
        for i, block in enumerate(stage.res_blocks):
            out[names[id(block)] + ".branch2.conv_c.out_mask"] = mask
        out[names[id(stage.res_blocks[0])] + ".branch1_conv.out_mask"] = mask
    return out


def derived_stage_golden(outdir, crop=96, frames=40, window=4, keep_positions=9, ratio=0.5):
    """As derived_x3d_golden, and every stage's output width pruned 50 % too (L1)."""
    model = X3D("xs", crop=crop, pool_window=window, se_scope="frame").eval()
    seeded_state_dict(model, WEIGHT_SEED)
    model = model.double()
    adapters = x3d_adapters(model)
    names, masks = _pv_prefix(model), {}
    for b in _bottlenecks(model):
        p = names[id(b)] + "."
        wa = centre_add(b.conv_a.weight.data, (adapters[p + "conv_a.adapter.cols"][0] @
                                               adapters[p + "conv_a.adapter.rows"][0]).double())
        masks[p + "conv_a.out_mask"] = norm_mask(wa, ratio, "l1")
        prune_bottleneck(b, masks[p + "conv_a.out_mask"].bool(), adapters, p)
    outs = stage_masks(model, ratio, "l1")
    masks.update(stage_mask_names(model, outs))
    prune_stage_outputs(model, outs)
    x = seeded_input((frames, 3, crop, crop), INPUT_SEED)
    with torch.no_grad():
        logits = model(x.double().permute(1, 0, 2, 3).unsqueeze(0))
    meta = {"model": "x3d", "size": "xs", "crop": crop, "frames": frames,
            "pool_window": window, "weight_seed": WEIGHT_SEED, "input_seed": INPUT_SEED,
            "input_sum": repr(x.double().sum().item()), "delay": model.delay(),
            "positions": keep_positions, "ratio": ratio, "norm": "l1", "compute": "float64"}
    write_safetensors(os.path.join(outdir, "derive_x3d_xs_stage_steps.safetensors"),
                      [("step_logits", logits[:keep_positions].float())], meta)
    write_safetensors(os.path.join(outdir, "derive_x3d_xs_stage_masks.safetensors"),
                      list(masks.items()), {"ratio": ratio, "norm": "l1"})


def make_derive_goldens(outdir):
    from derive_stgcn import make_derive_stgcn_goldens
    from derive_tfm import make_derive_tfm_goldens
    os.makedirs(outdir, exist_ok=True)
    fuse_goldens(os.path.join(outdir, "derive_fuse.safetensors"))
    derived_x3d_golden(outdir)
    derived_stage_golden(outdir)
    make_derive_stgcn_goldens(outdir)
    make_derive_tfm_goldens(outdir)
