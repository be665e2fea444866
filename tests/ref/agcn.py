"""AGCN and CoAGCN(*) references in PyTorch, with continual-skeletons' state_dict names.

The network is continual-skeletons' ST-GCN in its own layout (stgcn.py, "coskel") with the graph
convolution of each block replaced by the adaptive one of 2s-AGCN (Shi et al., CVPR 2019), as in
LukasHedegaard/continual-skeletons models/a_gcn/a_gcn.py (AdaptiveGraphConvolution) and
models/a_gcn_mod/a_gcn_mod.py (AdaptiveGraphConvolutionMod). Per block, gcn holds graph_attn and
A ([3, V, V], used as B_k = A_k + graph_attn_k: added, not multiplied as in ST-GCN), g_conv.k
(C_in -> C_out), a_conv.k and b_conv.k (C_in -> C_out // 4, 2s-AGCN's conv_a / conv_b: theta and
phi), gcn_residual.0 / .1 when the width changes, and bn. With theta_k, phi_k [N, C_e, T, V]:

  "clip"   a_gcn.py forward: C_k = softmax_v(theta_k^T phi_k / (C_e T)), the embedding flattened
           over all T frames it is given: over a whole clip, one graph for the clip.
  "frame"  the same over each frame alone (T = 1, divided by C_e): what coa_gcn.py's
           co.forward_stepping(AdaptiveGraphConvolution).forward_step computes, one frame a step.
  "mod"    a_gcn_mod.py forward, used by CoAGCN* (coa_gcn_mod.py) in both of its modes:
           einsum("nvct,nctw->nvwt") / C_e, softmax over w (dim -2 of nvwt), then
           einsum("nctv,nvwt->nctv", x, C + B): w is summed out, so joint v is scaled by
           sum_w (C + B)[v, w] = 1 + sum_w B[v, w]; theta and phi drop out of the result.

then z = sum_k g_conv_k(x (C_k + B_k)) (for "mod": g_conv_k(x * rowsum)), and
relu(bn(z) + gcn_residual(x)) as in ST-GCN's coskel layout.

Variants: "agcn" is a_gcn.py's AGcn (temporal padding 4, strides 2 in blocks 5 and 8, "clip");
"coagcn" the same weights stepped as CoAGCN does ("frame"); "agcn_star" a_gcn_mod.py's AGcnMod /
CoAGcnMod (padding 0, stride 1, "mod"), whose clip and step outputs agree.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from stgcn import StGcn, _bn2d

COFF_EMBEDDING = 4
# variant: (stgcn.py variant, form)
VARIANTS = {"agcn": ("stgcn", "clip"), "coagcn": ("stgcn", "frame"),
            "agcn_star": ("stgcn_star", "mod")}


def embed_graph(theta, phi, form):
    """C [N, V, V] or, per frame, [N, T, V, V] from theta, phi [N, C_e, T, V]."""
    ce, t = theta.shape[1], theta.shape[2]
    if form == "clip":
        s = torch.einsum("nctv,nctw->nvw", theta, phi) / (ce * t)
        return torch.softmax(s, dim=-2)
    s = torch.einsum("nctv,nctw->ntvw", theta, phi) / ce
    return torch.softmax(s, dim=-2 if form == "frame" else -1)


def adaptive_aggregate(x, theta, phi, b, form):
    """x [N, C, T, V] aggregated over joints by C + B (b [V, V]), in the reference's form."""
    c = embed_graph(theta, phi, form)
    if form == "clip":
        return torch.einsum("nctv,nvw->nctw", x, c + b)
    if form == "frame":
        return torch.einsum("nctv,ntvw->nctw", x, c + b)
    return x * (c + b).sum(dim=-1)[:, None]                 # [N, T, V] row sums


class AdaptiveGraphConv(nn.Module):
    """relu(bn(sum_k g_conv_k(x (C_k + A_k + graph_attn_k))) + gcn_residual(x))."""

    def __init__(self, c_in, c_out, graph, form):
        super().__init__()
        self.form = form
        self.inter = c_out // COFF_EMBEDDING
        parts = graph.shape[0]
        # registration order as in continual-skeletons, so state_dict order matches too
        self.graph_attn = nn.Parameter(torch.ones(graph.shape))
        self.A = nn.Parameter(graph.clone(), requires_grad=False)
        self.g_conv = nn.ModuleList(nn.Conv2d(c_in, c_out, 1) for _ in range(parts))
        self.a_conv = nn.ModuleList(nn.Conv2d(c_in, self.inter, 1) for _ in range(parts))
        self.b_conv = nn.ModuleList(nn.Conv2d(c_in, self.inter, 1) for _ in range(parts))
        if c_in != c_out:
            self.gcn_residual = nn.Sequential(nn.Conv2d(c_in, c_out, 1), _bn2d(c_out))
        else:
            self.gcn_residual = None
        self.bn = _bn2d(c_out)

    def forward(self, x):
        b = self.A + self.graph_attn
        z = sum(g(adaptive_aggregate(x, a(x), bc(x), b[k], self.form))
                for k, (g, a, bc) in enumerate(zip(self.g_conv, self.a_conv, self.b_conv)))
        z = self.bn(z)
        z = z + (x if self.gcn_residual is None else self.gcn_residual(x))
        return F.relu(z)


class AGcn(StGcn):
    """AGCN / CoAGCN / AGCN* (see the top of this file) in continual-skeletons' layout; the same
    interface as stgcn.StGcn, so stgcn.clip_logits and stgcn.continual_logits apply."""

    def __init__(self, variant="agcn", in_channels=3, num_classes=60, persons=2,
                 skeleton="ntu-rgb+d", strategy="spatial"):
        base, form = VARIANTS[variant]
        super().__init__("coskel", base, in_channels, num_classes, persons, skeleton, strategy)
        self.form = form
        for block in self.layers.values():
            old = block.gcn
            block.gcn = AdaptiveGraphConv(old.g_conv[0].in_channels, old.g_conv[0].out_channels,
                                          old.A.data, form)


def graph_conv_case(cin, cout, nv, persons, frames, seed, form):
    """One adaptive graph convolution (3 partitions, the block's gcn without its residual, as
    cin's operator computes it): input [T, C, 1, M*V] frame-major -> y [T, C_out, 1, M*V]."""
    from seeded import seeded_input, seeded_tensor
    gc = AdaptiveGraphConv(cin, cout, torch.zeros(3, nv, nv), form).double().eval()
    tensors = {}
    with torch.no_grad():
        for name, t in gc.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name == "A":
                v = seeded_tensor("adj", t.shape, seed, 0.0, 0.5)
            else:
                v = seeded_tensor(name, t.shape, seed)
            tensors[name] = v
            t.copy_(v)
    x = seeded_input((frames, cin, 1, persons * nv), seed)
    xn = x.double().reshape(frames, cin, persons, nv).permute(2, 1, 0, 3)   # [M, C, T, V]
    with torch.no_grad():
        b = gc.A + gc.graph_attn
        z = sum(g(adaptive_aggregate(xn, a(xn), bc(xn), b[k], form))
                for k, (g, a, bc) in enumerate(zip(gc.g_conv, gc.a_conv, gc.b_conv)))
        y = gc.bn(z)
    y = y.permute(2, 1, 0, 3).reshape(frames, cout, 1, persons * nv).float()
    return x, tensors, y


def _reference_module(repo, path, cls):
    """continual-skeletons' graph convolution class `cls` from models/<path> in a checkout at
    `repo`, without its model class and the imports only that needs (ride, datasets)."""
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location("cs_utils", os.path.join(repo, "models",
                                                                          "utils.py"))
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    with open(os.path.join(repo, "models", path)) as f:
        src = f.read().split("\nclass AGcn")[0]
    src = "\n".join(line for line in src.splitlines()
                    if not line.startswith(("import ride", "from datasets", "from models")))
    scope = {"init_weights": utils.init_weights}
    exec(compile(src, path, "exec"), scope)
    return scope[cls]


def _main():
    """Sanity check (not a test, not run by make goldens): AdaptiveGraphConv in each form
    against continual-skeletons' own modules, given the path of a checkout (a8fe293):
    python3 tests/ref/agcn.py /path/to/continual-skeletons"""
    import sys
    import numpy as np
    from seeded import seeded_tensor
    torch.set_grad_enabled(False)
    graph = np.random.RandomState(0).rand(3, 25, 25).astype(np.float32)
    x = torch.randn(2, 6, 7, 25, dtype=torch.float64)
    cases = (("clip", "a_gcn/a_gcn.py", "AdaptiveGraphConvolution"),
             ("frame", "a_gcn/a_gcn.py", "AdaptiveGraphConvolution"),
             ("mod", "a_gcn_mod/a_gcn_mod.py", "AdaptiveGraphConvolutionMod"))
    for form, path, cls in cases:
        ref = _reference_module(sys.argv[1], path, cls)(6, 16, graph).double().eval()
        mine = AdaptiveGraphConv(6, 16, torch.from_numpy(graph), form).double().eval()
        sd = ref.state_dict()
        assert list(sd) == list(mine.state_dict()), "state_dict names or order differ"
        for name, t in sd.items():
            if not name.endswith("num_batches_tracked") and name != "A":
                t.copy_(seeded_tensor(name, t.shape, 3))
        mine.load_state_dict(sd)
        if form == "frame":      # forward_step: the module on one frame at a time
            want = torch.stack([ref(x[:, :, t: t + 1])[:, :, 0] for t in range(7)], 2)
        else:
            want = ref(x)
        dev = ((mine(x) - want).abs().max() / want.abs().max()).item()
        print("%s (%s %s): relative deviation %.2g" % (form, path, cls, dev))


if __name__ == "__main__":
    _main()
