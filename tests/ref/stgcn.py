"""ST-GCN and CoST-GCN references in PyTorch, with the state_dict names of two checkpoint layouts.

Both layouts compute the same network: a BatchNorm over the raw joints, ten spatio-temporal
blocks (graph convolution, then a temporal convolution of 9 frames, plus a residual), a mean over
frames and joints, then over persons, and a linear classifier. They differ in names and in how
the graph convolution is parameterized:
  "stgcn"   yysijie/st-gcn net/st_gcn.py Model. The graph is a buffer `A`; data_bn normalizes
            V*C channels (index v*C + c), shared by the persons; block N is
            st_gcn_networks.N with gcn.conv a 1x1 conv to K*C_out channels (channel k*C_out + c)
            mixed over joints by A_k * edge_importance.N; tcn = BN, ReLU, conv (9,1), BN
            (tcn.0, .2, .3); residual.0 / .1 a strided 1x1 conv and BN; fcn a 1x1 conv.
  "coskel"  LukasHedegaard/continual-skeletons models/base.py and models/st_gcn/st_gcn.py.
            data_bn normalizes M*V*C channels (index m*V*C + v*C + c); block N is layers.layerN
            with gcn.g_conv.k a 1x1 conv applied after mixing joints by A_k * graph_attn_k
            (gcn.A is a parameter without gradient), gcn.bn, gcn.gcn_residual.0 / .1 when the
            width changes, a ReLU; tcn.t_conv and tcn.bn; residual.t_conv / residual.bn; fc a
            Linear. The graph convolution has its own residual and ReLU; yysijie's has neither.
Both give relu(tcn(gcn(x)) + residual(x)) per block, with no residual in block 1, an identity one
when width and stride are kept, and else a strided 1x1 conv and BN.

Variants: "stgcn" pads each temporal conv by 4 frames and strides blocks 5 and 8 by 2 (ST-GCN,
CoST-GCN); "stgcn_star" pads by 0 and never strides (st_gcn_mod / cost_gcn_mod, CoST-GCN*).
Without padding the temporal conv shortens the sequence by 8 frames, so the residual is cropped
by 4 - padding frames at each end (continual-skeletons' residual_shrink).

Inputs are [N, C, T, V, M] as in both references; clip_logits takes one frame-major sequence
[T, C, V, M]. Dropout is not modelled (inference). For cin's continual mode see
continual_logits below.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from seeded import seeded_tensor
from skeleton_graph import adjacency

TEMPORAL_KERNEL = 9
FEATURES = 256
LAYOUTS = ("stgcn", "coskel")
# variant: temporal padding of every block, whether blocks keep their strides
VARIANTS = {"stgcn": (4, True), "stgcn_star": (0, False)}
# (C_out, stride, residual) per block; C_in is the previous block's C_out
BLOCKS = [(64, 1, False), (64, 1, True), (64, 1, True), (64, 1, True), (128, 2, True),
          (128, 1, True), (128, 1, True), (256, 2, True), (256, 1, True), (256, 1, True)]


def block_plan(in_channels, variant):
    """[(C_in, C_out, stride, padding, residual)] for the ten blocks of a variant."""
    padding, strided = VARIANTS[variant]
    plan, c_in = [], in_channels
    for c_out, stride, residual in BLOCKS:
        plan.append((c_in, c_out, stride if strided else 1, padding, residual))
        c_in = c_out
    return plan


def compose_geometry(layers):
    """(rf, pad, stride) of a chain of temporal convs [(k, s, p)], composed back to front so that
    output j reads input frames j*stride - pad .. j*stride - pad + rf - 1."""
    rf, pad, stride = 1, 0, 1
    for k, s, p in reversed(layers):
        rf = s * rf + k - s
        pad = s * pad + p
        stride *= s
    return rf, pad, stride


def pool_geometry(clip_frames, rf, pad, stride):
    """(w, p) of the sliding average that replaces the clip mean in continual mode
    (continual-skeletons CoModelBase: pool_size and pool_padding). w is the number of backbone
    positions of a clip; p the positions of that clip that lean on its end padding."""
    w = (clip_frames + 2 * pad - rf) // stride + 1
    p = w - ((clip_frames - rf + pad) // stride + 1)
    return w, max(0, p)


def computable_positions(frames, rf, pad, stride):
    """How many backbone positions of a stream of `frames` frames need no end padding."""
    last = frames - rf + pad
    return 0 if last < 0 else last // stride + 1


def _bn2d(channels):
    return nn.BatchNorm2d(channels)


def _crop(x, shrink):
    """x [N, C, T, V] without `shrink` frames at each end."""
    return x[:, :, shrink: x.shape[2] - shrink] if shrink else x


class _Block(nn.Module):
    """What both layouts share: the residual choice and its centre crop."""

    def _init_residual(self, c_in, c_out, stride, padding, residual):
        self.shrink = (TEMPORAL_KERNEL - 1) // 2 - padding
        if not residual:
            self.residual_kind = "none"
        elif c_in == c_out and stride == 1:
            self.residual_kind = "identity"
        else:
            self.residual_kind = "conv"

    def shortcut(self, x):
        if self.residual_kind == "none":
            return 0.0
        x = _crop(x, self.shrink)
        return x if self.residual_kind == "identity" else self.residual(x)


class YysijieGraphConv(nn.Module):
    """out[n, c, t, w] = sum_k sum_v conv(x)[n, k*C_out + c, t, v] * a[k, v, w]."""

    def __init__(self, c_in, c_out, parts):
        super().__init__()
        self.parts = parts
        self.conv = nn.Conv2d(c_in, parts * c_out, 1)

    def forward(self, x, a):
        n, _, t, v = x.shape
        y = self.conv(x).view(n, self.parts, -1, t, v)
        return torch.einsum("nkctv,kvw->nctw", y, a)


class YysijieBlock(_Block):
    def __init__(self, c_in, c_out, stride, padding, residual, parts):
        super().__init__()
        self._init_residual(c_in, c_out, stride, padding, residual)
        self.gcn = YysijieGraphConv(c_in, c_out, parts)
        # indices 0, 2, 3 as in yysijie (1 is the ReLU; its dropout at 4 holds nothing)
        self.tcn = nn.Sequential(
            _bn2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, (TEMPORAL_KERNEL, 1), (stride, 1), (padding, 0)),
            _bn2d(c_out))
        if self.residual_kind == "conv":
            self.residual = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=(stride, 1)),
                                          _bn2d(c_out))

    def forward(self, x, a):
        return F.relu(self.tcn(self.gcn(x, a)) + self.shortcut(x))


class CoskelGraphConv(nn.Module):
    """relu(bn(sum_k g_conv_k(x @ (A_k * graph_attn_k))) + gcn_residual(x))."""

    def __init__(self, c_in, c_out, graph):
        super().__init__()
        # registration order as in continual-skeletons, so state_dict order matches too
        self.graph_attn = nn.Parameter(torch.ones(graph.shape))
        self.A = nn.Parameter(graph.clone(), requires_grad=False)
        self.g_conv = nn.ModuleList(nn.Conv2d(c_in, c_out, 1) for _ in range(graph.shape[0]))
        if c_in != c_out:
            self.gcn_residual = nn.Sequential(nn.Conv2d(c_in, c_out, 1), _bn2d(c_out))
        else:
            self.gcn_residual = None
        self.bn = _bn2d(c_out)

    def forward(self, x):
        a = self.A * self.graph_attn
        z = sum(conv(torch.einsum("nctv,vw->nctw", x, a[k]))
                for k, conv in enumerate(self.g_conv))
        z = self.bn(z)
        z = z + (x if self.gcn_residual is None else self.gcn_residual(x))
        return F.relu(z)


class TemporalConv(nn.Module):
    def __init__(self, c_in, c_out, kernel, stride, padding):
        super().__init__()
        self.t_conv = nn.Conv2d(c_in, c_out, (kernel, 1), (stride, 1), (padding, 0))
        self.bn = _bn2d(c_out)

    def forward(self, x):
        return self.bn(self.t_conv(x))


class CoskelBlock(_Block):
    def __init__(self, c_in, c_out, stride, padding, residual, graph):
        super().__init__()
        self._init_residual(c_in, c_out, stride, padding, residual)
        self.gcn = CoskelGraphConv(c_in, c_out, graph)
        self.tcn = TemporalConv(c_out, c_out, TEMPORAL_KERNEL, stride, padding)
        if self.residual_kind == "conv":
            self.residual = TemporalConv(c_in, c_out, 1, stride, 0)

    def forward(self, x):
        return F.relu(self.tcn(self.gcn(x)) + self.shortcut(x))


class StGcn(nn.Module):
    """ST-GCN in either checkpoint layout (see the top of this file). forward: [N, C, T, V, M]
    -> logits [N, classes]; features: -> [N, M, 256, P, V], the backbone before any pooling."""

    def __init__(self, layout="coskel", variant="stgcn", in_channels=3, num_classes=60,
                 persons=2, skeleton="ntu-rgb+d", strategy="spatial"):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError("unknown checkpoint layout %r" % layout)
        graph = torch.from_numpy(adjacency(skeleton, strategy)).float()
        parts, joints = graph.shape[0], graph.shape[1]
        if layout == "coskel" and parts != 3:
            raise ValueError("continual-skeletons' graph convolution has exactly 3 parts")
        self.layout, self.variant = layout, variant
        self.plan = block_plan(in_channels, variant)
        if layout == "stgcn":
            self._init_yysijie(graph, in_channels, joints, num_classes)
        else:
            self._init_coskel(graph, in_channels, joints, persons, num_classes)

    def _init_yysijie(self, graph, in_channels, joints, num_classes):
        self.register_buffer("A", graph)
        self.data_bn = nn.BatchNorm1d(in_channels * joints)
        self.st_gcn_networks = nn.ModuleList(
            YysijieBlock(*spec, parts=graph.shape[0]) for spec in self.plan)
        self.edge_importance = nn.ParameterList(
            nn.Parameter(torch.ones(graph.shape)) for _ in self.plan)
        self.fcn = nn.Conv2d(FEATURES, num_classes, 1)

    def _init_coskel(self, graph, in_channels, joints, persons, num_classes):
        self.data_bn = nn.BatchNorm1d(persons * in_channels * joints)
        self.layers = nn.ModuleDict(
            ("layer%d" % (i + 1), CoskelBlock(*spec, graph=graph))
            for i, spec in enumerate(self.plan))
        self.fc = nn.Linear(FEATURES, num_classes)

    def normalize(self, x):
        """[N, C, T, V, M] -> data_bn -> [N*M, C, T, V]."""
        n, c, t, v, m = x.shape
        rows = x.permute(0, 4, 3, 1, 2)                    # [N, M, V, C, T]
        if self.layout == "stgcn":
            rows = self.data_bn(rows.reshape(n * m, v * c, t))
        else:
            rows = self.data_bn(rows.reshape(n, m * v * c, t))
        return rows.reshape(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)

    def features(self, x):
        n, m = x.shape[0], x.shape[4]
        y = self.normalize(x)
        if self.layout == "stgcn":
            for block, importance in zip(self.st_gcn_networks, self.edge_importance):
                y = block(y, self.A * importance)
        else:
            for block in self.layers.values():
                y = block(y)
        return y.reshape(n, m, *y.shape[1:])

    def classify(self, pooled):
        """[N, 256] -> [N, classes]."""
        if self.layout == "stgcn":
            return self.fcn(pooled[:, :, None, None]).flatten(1)
        return self.fc(pooled)

    def forward(self, x):
        return self.classify(self.features(x).mean(dim=(3, 4)).mean(dim=1))

    def geometry(self):
        """(rf, pad, stride) of the backbone along time."""
        return compose_geometry([(TEMPORAL_KERNEL, s, p) for _, _, s, p, _ in self.plan])


def is_graph_entry(name):
    """The adjacency itself (yysijie's buffer `A`, continual-skeletons' `gcn.A`): part of the
    checkpoint, but built from the skeleton rather than drawn from a seed."""
    return name == "A" or name.endswith(".A")


def seed_weights(model, seed):
    """seeded_state_dict for ST-GCN: every entry drawn by its name except the adjacency, which
    keeps the graph the model was built with."""
    sd = model.state_dict()
    with torch.no_grad():
        for name, t in sd.items():
            if name.endswith("num_batches_tracked") or is_graph_entry(name):
                continue
            t.copy_(seeded_tensor(name, t.shape, seed))
    return sd


def name_lines(model):
    """'name d0xd1x...' per state_dict entry, without num_batches_tracked."""
    return ["%s %s" % (name, "x".join(str(d) for d in t.shape))
            for name, t in model.state_dict().items()
            if not name.endswith("num_batches_tracked")]


def _batch(frames_tcvm):
    """[T, C, V, M] -> [1, C, T, V, M]."""
    return frames_tcvm.permute(1, 0, 2, 3).unsqueeze(0)


def clip_logits(model, frames_tcvm):
    """Logits [classes] of the regular model over one frame-major sequence [T, C, V, M]."""
    return model(_batch(frames_tcvm))[0]


def position_means(model, frames_tcvm):
    """f [P, 256]: the backbone over the whole sequence (zero padded at both ends), averaged
    over joints and persons per output position."""
    return model.features(_batch(frames_tcvm))[0].mean(dim=3).mean(dim=0).t()


def continual_geometry(model, clip_frames, stream_frames):
    rf, pad, stride = model.geometry()
    w, p = pool_geometry(clip_frames, rf, pad, stride)
    computable = computable_positions(stream_frames, rf, pad, stride)
    outputs = max(0, computable - (w - 1 - p))
    return {"rf": rf, "pad": pad, "stride": stride, "w": w, "p": p,
            "computable": computable, "outputs": outputs,
            "first_step": (w - 1 - p) * stride - pad + rf - 1}


def continual_logits(model, stream_tcvm, clip_frames):
    """What cin's continual mode emits over a stream [T_s, C, V, M], in order: [n, classes].

    The backbone runs as the regular network would over the whole stream with its zero padding,
    but only positions j that need no end padding (j*stride - pad + rf - 1 <= T_s - 1) exist.
    Pooled output i = (1/w) sum_{j = i-p}^{i-p+w-1} f[j], with f[j] = 0 for j < 0 (the pool's
    zero padding is counted), is emitted at the step that completes f[i-p+w-1], i.e. at input
    frame first_step + i*stride. w and p come from the clip length (pool_geometry)."""
    geo = continual_geometry(model, clip_frames, stream_tcvm.shape[0])
    w, p = geo["w"], geo["p"]
    if p > w - 1:
        raise ValueError("pool padding %d leaves windows without any frame" % p)
    f = position_means(model, stream_tcvm)[: geo["computable"]]
    f = torch.cat([f.new_zeros(p, f.shape[1]), f])          # row r holds position r - p
    pooled = torch.stack([f[i: i + w].sum(dim=0) / w for i in range(geo["outputs"])]) \
        if geo["outputs"] else f.new_zeros(0, f.shape[1])
    return model.classify(pooled), geo


def causal_check(model, stream_tcvm, clip_frames, steps):
    """Largest deviation between continual_logits over the whole stream and each output
    recomputed at the step that emits it, from the prefix stream[:t+1] alone (t in steps).
    Returns (deviation, outputs checked)."""
    ref, geo = continual_logits(model, stream_tcvm, clip_frames)
    rf, pad, stride, w, p = (geo[k] for k in ("rf", "pad", "stride", "w", "p"))
    worst, checked = 0.0, 0
    for t in steps:
        done = t - (rf - 1 - pad)
        if done < 0 or done % stride:
            continue
        i = done // stride + p - w + 1
        if i < 0:
            continue
        f = position_means(model, stream_tcvm[: t + 1])[: done // stride + 1]
        window = f[max(0, i - p): i - p + w]
        logits = model.classify((window.sum(dim=0) / w)[None])[0]
        worst = max(worst, (logits - ref[i]).abs().max().item())
        checked += 1
    return worst, checked


def _main():
    """Sanity check (not a test, not run by make goldens): continual_logits against outputs
    recomputed from stream prefixes, and CoST-GCN* against the clip model on sliding clips."""
    from seeded import seeded_input
    torch.set_grad_enabled(False)
    stream, clip = seeded_input((128, 3, 25, 2), 2).double(), 100
    for layout in LAYOUTS:
        for variant in VARIANTS:
            model = StGcn(layout, variant).eval()
            seed_weights(model, 1)
            model.double()
            logits, geo = continual_logits(model, stream, clip)
            first, s = geo["first_step"], geo["stride"]
            dev, n = causal_check(model, stream, clip, range(first, 128, 3 * s))
            line = "%s/%s: %d outputs from frame %d; prefixes: %d checked, max dev %.2g" % (
                layout, variant, geo["outputs"], first, n, dev)
            if geo["pad"] == 0 and geo["p"] == 0:
                dev = max((clip_logits(model, stream[i: i + clip]) - logits[i]).abs().max()
                          .item() for i in range(0, geo["outputs"], 7))
                line += "; sliding clips: max dev %.2g" % dev
            print(line)


if __name__ == "__main__":
    _main()
