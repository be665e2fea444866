"""Operator goldens: tests/golden/ops/<case>.safetensors, one small case per behaviour.

Every file holds "input" (a frame-major clip [T, C, H, W] unless its metadata says otherwise),
the operator's parameters, and "clip": the regular PyTorch operator over the whole input,
computed in float64 and stored as float32, frame-major. For temporal operators, cin's stepping
(one frame per step, zero temporal fill) must reproduce "clip": output j appears at step
j * st + delay with delay = kt - 1 - pt, and "step_outputs" of them appear within the T steps.
"""
import os

import torch
import torch.nn.functional as F

from safetensors_io import write_safetensors
from seeded import seeded_input, seeded_tensor
from x3d import round_width

BN_EPS = 1e-5

# name, cin, cout, kernel, stride, padding, groups, bias, (T, H, W)
CONV_CASES = [
    ("conv3d_stem_spatial", 3, 8, (1, 3, 3), (1, 2, 2), (0, 1, 1), 1, False, (10, 12, 12)),
    ("conv3d_stem_temporal_dw", 8, 8, (5, 1, 1), (1, 1, 1), (2, 0, 0), 8, False, (12, 6, 6)),
    ("conv3d_pointwise", 8, 16, (1, 1, 1), (1, 1, 1), (0, 0, 0), 1, False, (10, 6, 6)),
    ("conv3d_pointwise_s2", 8, 16, (1, 1, 1), (1, 2, 2), (0, 0, 0), 1, False, (10, 8, 8)),
    ("conv3d_dw333_s1", 12, 12, (3, 3, 3), (1, 1, 1), (1, 1, 1), 12, False, (10, 8, 8)),
    ("conv3d_dw333_s2", 12, 12, (3, 3, 3), (1, 2, 2), (1, 1, 1), 12, False, (10, 9, 9)),
    ("conv3d_dense333_tpad0", 4, 6, (3, 3, 3), (1, 1, 1), (0, 1, 1), 1, False, (10, 6, 6)),
    ("conv3d_t3_ts2_tpad1", 4, 6, (3, 3, 3), (2, 1, 1), (1, 1, 1), 1, False, (11, 6, 6)),
    ("conv3d_t1_ts2", 4, 6, (1, 3, 3), (2, 1, 1), (0, 1, 1), 1, False, (11, 6, 6)),
    ("conv3d_grouped_g2", 8, 6, (3, 3, 3), (1, 1, 1), (1, 1, 1), 2, False, (10, 6, 6)),
    ("conv3d_bias", 4, 6, (3, 3, 3), (1, 1, 1), (1, 1, 1), 1, True, (10, 6, 6)),
]
CONV_BN_CASE = ("conv3d_bn", 4, 8, (3, 3, 3), (1, 1, 1), (1, 1, 1), 1, False, (10, 6, 6))


def to_ncthw(clip):
    """[T, C, H, W] -> [1, C, T, H, W], in float64 for the reference arithmetic."""
    return clip.permute(1, 0, 2, 3).unsqueeze(0).double()


def to_tchw(y):
    return y[0].permute(1, 0, 2, 3).float()


def step_outputs(frames, k, s, p):
    """How many outputs stepping emits within `frames` steps: j with j*s + k-1-p <= frames-1."""
    delay = k - 1 - p
    return 0 if frames - 1 < delay else (frames - 1 - delay) // s + 1


def _conv_meta(op, seed, cin, cout, k, s, p, groups, bias, frames):
    meta = {"op": op, "seed": seed, "cin": cin, "cout": cout, "groups": groups,
            "bias": int(bias), "layout": "TCHW", "compute": "float64",
            "delay": k[0] - 1 - p[0], "step_outputs": step_outputs(frames, k[0], s[0], p[0])}
    for key, v in zip(("kt", "kh", "kw"), k):
        meta[key] = v
    for key, v in zip(("st", "sh", "sw"), s):
        meta[key] = v
    for key, v in zip(("pt", "ph", "pw"), p):
        meta[key] = v
    return meta


def _conv_tensors(seed, cin, cout, k, groups, bias, thw):
    x = seeded_input((thw[0], cin) + thw[1:], seed)
    w = seeded_tensor("weight", (cout, cin // groups) + k, seed)
    b = seeded_tensor("bias", (cout,), seed) if bias else None
    return x, w, b


def conv_case(outdir, seed, case):
    name, cin, cout, k, s, p, groups, bias, thw = case
    x, w, b = _conv_tensors(seed, cin, cout, k, groups, bias, thw)
    y = F.conv3d(to_ncthw(x), w.double(), None if b is None else b.double(), s, p, 1, groups)
    tensors = [("input", x), ("weight", w)] + ([("bias", b)] if bias else [])
    tensors.append(("clip", to_tchw(y)))
    meta = _conv_meta("conv3d", seed, cin, cout, k, s, p, groups, bias, thw[0])
    write_safetensors(os.path.join(outdir, name + ".safetensors"), tensors, meta)


def conv_bn_case(outdir, seed, case):
    name, cin, cout, k, s, p, groups, bias, thw = case
    x, w, b = _conv_tensors(seed, cin, cout, k, groups, bias, thw)
    bn = {n: seeded_tensor("bn." + n, (cout,), seed)
          for n in ("weight", "bias", "running_mean", "running_var")}
    y = F.conv3d(to_ncthw(x), w.double(), None, s, p, 1, groups)
    y = F.batch_norm(y, bn["running_mean"].double(), bn["running_var"].double(),
                     bn["weight"].double(), bn["bias"].double(), False, 0.0, BN_EPS)
    tensors = [("input", x), ("weight", w)]
    tensors += [("bn." + n, t) for n, t in bn.items()] + [("clip", to_tchw(y))]
    meta = _conv_meta("conv3d_bn", seed, cin, cout, k, s, p, groups, bias, thw[0])
    meta["eps"] = repr(BN_EPS)
    write_safetensors(os.path.join(outdir, name + ".safetensors"), tensors, meta)


ACTIVATIONS = {
    "relu": F.relu,
    "swish": lambda x: x * torch.sigmoid(x),
    "sigmoid": torch.sigmoid,
    "softmax": lambda x: torch.softmax(x, dim=1),   # over C, per (t, h, w)
}


def activation_case(outdir, seed, act):
    # [-6, 6] reaches both tails of sigmoid and swish; stored, so no seeded rule is needed.
    x = seeded_tensor("input", (4, 6, 5, 5), seed, -6.0, 6.0)
    y = ACTIVATIONS[act](x.double()).float()
    meta = {"op": act, "seed": seed, "layout": "TCHW", "compute": "float64",
            "input_range": "-6,6", "delay": 0}
    if act == "softmax":
        meta["dim"] = "C"
    write_safetensors(os.path.join(outdir, "act_%s.safetensors" % act),
                      [("input", x), ("clip", y)], meta)


def se_scale(x, fc, pooled):
    """x [T, C, H, W] * sigmoid(fc2(relu(fc1(pooled)))) with pooled [T' or 1, C] (float64)."""
    h = F.relu(pooled @ fc["fc1.weight"].double().flatten(1).t() + fc["fc1.bias"].double())
    g = torch.sigmoid(h @ fc["fc2.weight"].double().flatten(1).t() + fc["fc2.bias"].double())
    return x * g[:, :, None, None]


def se_case(outdir, seed, window=3):
    """Squeeze-excitation in three scopes over one input:
    clip      pool over the whole clip (pytorchvideo / SlowFast);
    steps_w1  each frame scaled from its own spatial mean (co3d CoX3D, se_scope "frame");
    steps_w3  frame j scaled from the mean of the spatial means of frames j..j+2 (co3d CoSe,
              scope "clip", window 3, zero fill): T-2 outputs, output j at step j+2."""
    frames, c, hw = 10, 16, 5
    cr = round_width(c, 0.0625)
    x = seeded_input((frames, c, hw, hw), seed)
    fc = {"fc1.weight": seeded_tensor("fc1.weight", (cr, c, 1, 1, 1), seed),
          "fc1.bias": seeded_tensor("fc1.bias", (cr,), seed),
          "fc2.weight": seeded_tensor("fc2.weight", (c, cr, 1, 1, 1), seed),
          "fc2.bias": seeded_tensor("fc2.bias", (c,), seed)}
    xd = x.double()
    frame_means = xd.mean(dim=(2, 3))                                     # [T, C]
    clip = se_scale(xd, fc, frame_means.mean(dim=0, keepdim=True))
    w1 = se_scale(xd, fc, frame_means)
    windows = frame_means.unfold(0, window, 1).mean(dim=2)                # [T-w+1, C]
    w3 = se_scale(xd[: frames - window + 1], fc, windows)
    tensors = [("input", x)] + list(fc.items())
    tensors += [("clip", clip.float()), ("steps_w1", w1.float()), ("steps_w3", w3.float())]
    meta = {"op": "squeeze_excitation", "seed": seed, "layout": "TCHW", "compute": "float64",
            "channels": c, "reduced": cr, "inner_act": "relu", "gate": "sigmoid",
            "window": window, "delay_w1": 0, "delay_w3": window - 1}
    write_safetensors(os.path.join(outdir, "se.safetensors"), tensors, meta)


def pool_cases(outdir, seed):
    x = seeded_input((10, 8, 4, 4), seed)
    y = F.avg_pool3d(to_ncthw(x), (3, 1, 1), stride=1)
    meta = {"op": "avg_pool3d", "seed": seed, "layout": "TCHW", "compute": "float64",
            "kt": 3, "kh": 1, "kw": 1, "st": 1, "sh": 1, "sw": 1, "pt": 0, "ph": 0, "pw": 0,
            "delay": 2, "step_outputs": 8}
    write_safetensors(os.path.join(outdir, "pool_temporal_avg3.safetensors"),
                      [("input", x), ("clip", to_tchw(y))], meta)

    x = seeded_input((6, 8, 5, 5), seed + 1)
    y = x.double().mean(dim=(2, 3), keepdim=True).float()                  # [T, C, 1, 1]
    meta = {"op": "global_spatial_avg_pool", "seed": seed + 1, "layout": "TCHW",
            "compute": "float64", "delay": 0}
    write_safetensors(os.path.join(outdir, "pool_spatial_global.safetensors"),
                      [("input", x), ("clip", y)], meta)


def linear_case(outdir, seed):
    x = seeded_input((6, 16), seed)
    w = seeded_tensor("weight", (10, 16), seed)
    b = seeded_tensor("bias", (10,), seed)
    y = F.linear(x.double(), w.double(), b.double()).float()
    meta = {"op": "linear", "seed": seed, "layout": "NC", "compute": "float64",
            "in_features": 16, "out_features": 10, "bias": 1}
    write_safetensors(os.path.join(outdir, "linear.safetensors"),
                      [("input", x), ("weight", w), ("bias", b), ("clip", y)], meta)


# name, cin, cout, partitions, joints, persons, pre_bias, post_bias, bn, relu, frames
GCN_CASES = [
    ("gcn_prebias_bn_relu", 4, 6, 3, 7, 2, True, False, True, True, 5),
    ("gcn_postbias", 5, 3, 2, 6, 1, False, True, False, False, 4),
]


def gcn_case(outdir, seed, case):
    """A graph convolution on frames [C, 1, M*V] (joint v of person m at column m*V + v):
    relu(bn(sum_k (W_k x_m + b_k) A_k + c)), b_k the pre-aggregation bias (ST-GCN's conv), c
    the post-aggregation one (continual-skeletons' summed g_conv biases)."""
    name, cin, cout, k, nv, persons, pre, post, bn, relu, frames = case
    x = seeded_input((frames, cin, 1, persons * nv), seed)
    tensors = [("input", x), ("weight", seeded_tensor("weight", (k, cout, cin), seed)),
               ("adj", seeded_tensor("adj", (k, nv, nv), seed, 0.0, 0.5))]
    if pre:
        tensors.append(("pre_bias", seeded_tensor("bias", (k, cout), seed)))
    if post:
        tensors.append(("post_bias", seeded_tensor("post.bias", (cout,), seed)))
    if bn:
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            tensors.append(("bn." + leaf, seeded_tensor("bn." + leaf, (cout,), seed)))
    t = {n: v.double() for n, v in tensors}
    xm = t["input"].reshape(frames, cin, persons, nv)
    z = torch.einsum("koc,tcmv->tkomv", t["weight"], xm)
    if pre:
        z = z + t["pre_bias"][None, :, :, None, None]
    y = torch.einsum("tkomv,kvw->tomw", z, t["adj"])
    if post:
        y = y + t["post_bias"][None, :, None, None]
    if bn:
        y = (y - t["bn.running_mean"][None, :, None, None]) / torch.sqrt(
            t["bn.running_var"][None, :, None, None] + BN_EPS)
        y = y * t["bn.weight"][None, :, None, None] + t["bn.bias"][None, :, None, None]
    if relu:
        y = torch.relu(y)
    y = y.reshape(frames, cout, 1, persons * nv).float()
    meta = {"op": "gcn", "seed": seed, "layout": "TCHW", "compute": "float64", "k": k,
            "joints": nv, "persons": persons, "relu": int(relu), "delay": 0}
    write_safetensors(os.path.join(outdir, name + ".safetensors"), tensors + [("clip", y)],
                      meta)


def make_op_goldens(outdir):
    os.makedirs(outdir, exist_ok=True)
    seed = 100
    for case in CONV_CASES:
        conv_case(outdir, seed, case)
        seed += 1
    conv_bn_case(outdir, seed, CONV_BN_CASE)
    for i, act in enumerate(ACTIVATIONS):
        activation_case(outdir, 200 + i, act)
    se_case(outdir, 300)
    pool_cases(outdir, 400)
    linear_case(outdir, 500)
    for i, case in enumerate(GCN_CASES):
        gcn_case(outdir, 600 + i, case)
