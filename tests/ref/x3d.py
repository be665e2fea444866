"""X3D reference in PyTorch with pytorchvideo's state_dict names, and the map to SlowFast names.

The module rebuilds what pytorchvideo's create_x3d builds (pytorchvideo/models/x3d.py, commit
f3142bb) with identical parameter names and shapes, so a hub checkpoint (X3D_{XS,S,M,L}.pyth,
{"model_state": ...}) loads into it, and so does seeded_state_dict. Two options go beyond
pytorchvideo, for cin's continual mode:
  se_scope   "clip": squeeze-excitation pools the whole clip (pytorchvideo, SlowFast);
             "frame": each frame is scaled by its own spatial mean (co3d's CoX3D stepping);
             an int w: frame j is scaled from the mean of frames j..j+w-1, frames past the end
             counting as zeros (co3d's CoSe with scope "clip" and window w: a delay of w-1).
  pool_window the temporal extent of the head's average pool (pytorchvideo: the clip length);
             with a clip longer than the window the head slides and yields several positions.
forward returns the logits per head position before any softmax and before the average over
positions that pytorchvideo's head ends with (create_x3d's default head_activation is None, so
its output is the plain mean of these logits; with one position it is that position's logits).
"""
import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

# name: (clip frames, crop, depth factor), from pytorchvideo's hub builders and the X3D paper.
SIZES = {
    "xs": (4, 160, 2.2),
    "s": (13, 160, 2.2),
    "m": (16, 224, 2.2),
    "l": (16, 312, 5.0),
}
WIDTH_FACTOR = 2.0
BOTTLENECK_FACTOR = 2.25
STEM_DIM = 12
STAGE_DEPTHS = (1, 2, 5, 3)
HEAD_DIM = 2048
SE_RATIO = 0.0625
SPATIAL_STRIDE = 32
BN_EPS = 1e-5


def round_width(width, multiplier, min_width=8, divisor=8):
    """Channels after scaling by multiplier, to the nearest multiple of divisor, never below
    min_width nor more than 10% under the exact product (X3D's rule)."""
    exact = width * multiplier
    rounded = max(min_width, int(exact + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * exact:
        rounded += divisor
    return int(rounded)


def stage_depths(depth_factor):
    return [int(math.ceil(depth_factor * d)) for d in STAGE_DEPTHS]


def _bn(channels):
    return nn.BatchNorm3d(channels, eps=BN_EPS)


def _spatial_mean(x):
    return x.mean(dim=(3, 4), keepdim=True)


class SqueezeExcite(nn.Module):
    """x * sigmoid(W2 relu(W1 m + b1) + b2), m a mean of x chosen by scope (see the file top).
    Parameter names follow fvcore's SqueezeExcitation: block.0 and block.2."""

    def __init__(self, channels, reduced, scope):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(channels, reduced, 1, bias=True), nn.ReLU(),
            nn.Conv3d(reduced, channels, 1, bias=True), nn.Sigmoid())
        self.scope = scope

    def squeeze(self, x):
        if self.scope == "clip":
            return x.mean(dim=(2, 3, 4), keepdim=True)
        if self.scope == "frame":
            return _spatial_mean(x)
        w = int(self.scope)
        m = F.pad(_spatial_mean(x), (0, 0, 0, 0, 0, w - 1))
        return F.avg_pool3d(m, (w, 1, 1), stride=1)

    def forward(self, x):
        return x * self.block(self.squeeze(x))


class _StemConv(nn.Module):
    # pytorchvideo's names are swapped: conv_t is the spatial (1,3,3) conv, conv_xy the
    # depthwise temporal (5,1,1) one, applied in that order.
    def __init__(self, dim_out):
        super().__init__()
        self.conv_t = nn.Conv3d(3, dim_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1),
                                bias=False)
        self.conv_xy = nn.Conv3d(dim_out, dim_out, (5, 1, 1), padding=(2, 0, 0), bias=False,
                                 groups=dim_out)

    def forward(self, x):
        return self.conv_xy(self.conv_t(x))


class Stem(nn.Module):
    def __init__(self, dim_out):
        super().__init__()
        self.conv = _StemConv(dim_out)
        self.norm = _bn(dim_out)

    def forward(self, x):
        return F.relu(self.norm(self.conv(x)))


class Bottleneck(nn.Module):
    """1x1x1 -> BN -> ReLU -> depthwise 3x3x3 -> BN [-> SE] -> swish -> 1x1x1 -> BN."""

    def __init__(self, dim_in, dim_inner, dim_out, spatial_stride, use_se, se_scope):
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.norm_a = _bn(dim_inner)
        stride = (1, spatial_stride, spatial_stride)
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, 3, stride=stride, padding=1, bias=False,
                                groups=dim_inner)
        se = (SqueezeExcite(dim_inner, round_width(dim_inner, SE_RATIO), se_scope)
              if use_se else nn.Identity())
        self.norm_b = nn.Sequential(_bn(dim_inner), se)
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.norm_c = _bn(dim_out)

    def forward(self, x):
        x = F.relu(self.norm_a(self.conv_a(x)))
        x = self.norm_b(self.conv_b(x))
        x = x * torch.sigmoid(x)
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """relu(shortcut(x) + branch2(x)). As in pytorchvideo, the shortcut has a conv when the
    width or the resolution changes but a BN only when the width changes."""

    def __init__(self, dim_in, dim_inner, dim_out, spatial_stride, use_se, se_scope):
        super().__init__()
        if dim_in != dim_out or spatial_stride > 1:
            stride = (1, spatial_stride, spatial_stride)
            self.branch1_conv = nn.Conv3d(dim_in, dim_out, 1, stride=stride, bias=False)
        else:
            self.branch1_conv = None
        self.branch1_norm = _bn(dim_out) if dim_in != dim_out else None
        self.branch2 = Bottleneck(dim_in, dim_inner, dim_out, spatial_stride, use_se, se_scope)

    def forward(self, x):
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
        if self.branch1_norm is not None:
            shortcut = self.branch1_norm(shortcut)
        return F.relu(shortcut + self.branch2(x))


class Stage(nn.Module):
    def __init__(self, depth, dim_in, dim_inner, dim_out, se_scope):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(dim_in if i == 0 else dim_out, dim_inner, dim_out, 2 if i == 0 else 1,
                     (i + 1) % 2 == 1, se_scope)
            for i in range(depth))

    def forward(self, x):
        for block in self.res_blocks:
            x = block(x)
        return x


class _ProjectedPool(nn.Module):
    def __init__(self, dim_in, dim_inner, dim_out, kernel):
        super().__init__()
        self.pre_conv = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.pre_norm = _bn(dim_inner)
        self.post_conv = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.kernel = kernel

    def forward(self, x):
        x = F.relu(self.pre_norm(self.pre_conv(x)))
        x = F.avg_pool3d(x, self.kernel, stride=1)
        return F.relu(self.post_conv(x))


class Head(nn.Module):
    def __init__(self, dim_in, dim_inner, num_classes, kernel):
        super().__init__()
        self.pool = _ProjectedPool(dim_in, dim_inner, HEAD_DIM, kernel)
        self.proj = nn.Linear(HEAD_DIM, num_classes)

    def forward(self, x):
        x = self.pool(x)                                  # [N, 2048, Pt, Ph, Pw]
        x = x.permute(0, 2, 3, 4, 1).reshape(-1, x.shape[1])
        return self.proj(x)                               # [N * P, classes]


class X3D(nn.Module):
    """X3D-{XS,S,M,L}. Input [N, 3, T, H, W]; output [N * P, num_classes], positions ordered
    (n, t, h, w). crop sets the head's spatial pool (ceil(crop / 32)); the input must be crop
    square. se_scope and pool_window: see the top of this file."""

    def __init__(self, size="s", num_classes=400, crop=None, pool_window=None, se_scope="clip"):
        super().__init__()
        frames, default_crop, depth_factor = SIZES[size]
        self.size = size
        self.crop = crop or default_crop
        self.pool_window = pool_window or frames
        self.se_scope = se_scope

        dim_stem = round_width(STEM_DIM, WIDTH_FACTOR)
        blocks = [Stem(dim_stem)]
        dim_in, dim = dim_stem, STEM_DIM
        for depth in stage_depths(depth_factor):
            dim_out = round_width(dim, WIDTH_FACTOR)
            dim_inner = int(BOTTLENECK_FACTOR * dim_out)
            blocks.append(Stage(depth, dim_in, dim_inner, dim_out, se_scope))
            dim_in, dim = dim_out, round_width(dim, 2.0)
        spatial = int(math.ceil(self.crop / SPATIAL_STRIDE))
        kernel = (self.pool_window, spatial, spatial)
        blocks.append(Head(dim_in, dim_inner, num_classes, kernel))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x

    def delay(self):
        """Frames between an input frame and the first output it completes when stepping: the
        stem's temporal conv (k5 p2) 2, each depthwise 3x3x3 conv (k3 p1) 1, each windowed SE
        w-1, the head pool window-1."""
        n_blocks = sum(stage_depths(SIZES[self.size][2]))
        n_se = sum((d + 1) // 2 for d in stage_depths(SIZES[self.size][2]))
        se = 0 if self.se_scope in ("clip", "frame") else int(self.se_scope) - 1
        return 2 + n_blocks + n_se * se + self.pool_window - 1


def clip_logits(model, clip_tchw):
    """Logits per position [P, classes] for one frame-major clip [T, 3, H, W]."""
    return model(clip_tchw.permute(1, 0, 2, 3).unsqueeze(0))


# pytorchvideo name -> SlowFast / co3d name (co3d's CoX3D uses SlowFast's names when its state
# dict is flattened). The stem's swap is undone: conv_t (spatial) -> conv_xy, conv_xy -> conv.
_NAME_RULES = [
    (r"^blocks\.0\.conv\.conv_t\.", "s1.pathway0_stem.conv_xy."),
    (r"^blocks\.0\.conv\.conv_xy\.", "s1.pathway0_stem.conv."),
    (r"^blocks\.0\.norm\.", "s1.pathway0_stem.bn."),
    (r"^blocks\.5\.pool\.pre_conv\.", "head.conv_5."),
    (r"^blocks\.5\.pool\.pre_norm\.", "head.conv_5_bn."),
    (r"^blocks\.5\.pool\.post_conv\.", "head.lin_5."),
    (r"^blocks\.5\.proj\.", "head.projection."),
]
_BLOCK_RULES = [
    ("branch1_conv.", "branch1."),
    ("branch1_norm.", "branch1_bn."),
    ("branch2.conv_a.", "branch2.a."),
    ("branch2.norm_a.", "branch2.a_bn."),
    ("branch2.conv_b.", "branch2.b."),
    ("branch2.norm_b.0.", "branch2.b_bn."),
    ("branch2.norm_b.1.block.0.", "branch2.se.fc1."),
    ("branch2.norm_b.1.block.2.", "branch2.se.fc2."),
    ("branch2.conv_c.", "branch2.c."),
    ("branch2.norm_c.", "branch2.c_bn."),
]


def slowfast_name(name):
    for pattern, repl in _NAME_RULES:
        if re.match(pattern, name):
            return re.sub(pattern, repl, name)
    m = re.match(r"^blocks\.([1-4])\.res_blocks\.(\d+)\.(.*)$", name)
    if m:
        stage, block, rest = int(m.group(1)), m.group(2), m.group(3)
        for old, new in _BLOCK_RULES:
            if rest.startswith(old):
                return "s%d.pathway0_res%s.%s" % (stage + 1, block, new + rest[len(old):])
    raise KeyError("no SlowFast name for %r" % name)


def name_map_lines(model):
    """'pytorchvideo_name slowfast_name d0,d1,...' per tensor, without num_batches_tracked."""
    lines = []
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        shape = ",".join(str(d) for d in t.shape)
        lines.append("%s %s %s" % (name, slowfast_name(name), shape))
    return lines


def to_slowfast_state_dict(sd):
    """Renames a pytorchvideo state dict to SlowFast names. SlowFast also has a BN after every
    shortcut conv (s2.pathway0_res0.branch1_bn, where pytorchvideo keeps the width and so has no
    branch1_norm); it is added as an identity (running_var = 1 - eps)."""
    out = {}
    for name, t in sd.items():
        if not name.endswith("num_batches_tracked"):
            out[slowfast_name(name)] = t
    for name in list(out):
        if not name.endswith(".branch1.weight"):
            continue
        bn = name[: -len("branch1.weight")] + "branch1_bn."
        if bn + "weight" in out:
            continue
        c = out[name].shape[0]
        out[bn + "weight"] = torch.ones(c)
        out[bn + "bias"] = torch.zeros(c)
        out[bn + "running_mean"] = torch.zeros(c)
        out[bn + "running_var"] = torch.full((c,), 1.0 - BN_EPS)
    return out
