"""Regenerates every golden file in tests/golden/ from the PyTorch references (`make goldens`).

  seeded.safetensors            tensors of the shared seeded generator (tests/test_seeded.c)
  ops/<case>.safetensors        one operator per file, see ops.py
  x3d_names_<size>.txt          pytorchvideo name, SlowFast / co3d name, shape, per tensor
  x3d_<size>_clip.safetensors   X3D logits for one clip (pytorchvideo semantics)
  cox3d_<size>_steps.safetensors  CoX3D stepping outputs (SE per frame, sliding head pool)
  transformer_<case>.safetensors  continual transformer encoder logits per window, see
                                transformer.py
  stgcn_graphs.safetensors      skeleton adjacency [K, V, V] as "<layout>/<strategy>"
  stgcn_names_<layout>.txt      state_dict name and shape (d0xd1x..) of each ST-GCN checkpoint
                                layout ("stgcn": yysijie, "coskel": continual-skeletons)
  stgcn[_star]_clip_<layout>.safetensors  ST-GCN (CoST-GCN*: no padding) logits for one clip
  cost_gcn[_star]_steps_<layout>.safetensors  continual logits over a stream, see stgcn.py
  bvh_cmu_01_01.npy             joint positions of the CMU BVH capture, written by bvh_fk.py
                                (numpy only; `make goldens` runs it before this script)
  ops/agcn_<case>.safetensors   adaptive graph convolution: "clip" (C_k over the whole input)
                                and "steps" (C_k per frame), see agcn.py
  agcn_names_coskel.txt         state_dict name and shape of an AGCN checkpoint
  agcn[_star]_clip_coskel.safetensors  AGCN (AGCN*: a_gcn_mod) logits for one clip
  coagcn[_star]_steps_coskel.safetensors  CoAGCN (CoAGCN*) logits stepped over a stream
  merge/base, merge/ft_<k>      synthetic models for cin-merge, and merge/<case>.safetensors the
                                merge after each of them ("<k>/<tensor>"), see opcm.py
  derive/derive_fuse            SPLoRA/SPPaRA fused weights and L1/L2 masks, see derive.py
  derive/derive_x3d_xs_*        masks, adapters and stepping outputs of a derived X3D-XS
  derive/derive_cost_gcn_star_*, derive/derive_stgcn_coskel_*  masks, adapters, clip (and
                                continual) logits of derived ST-GCNs, see derive_stgcn.py
  derive/derive_tfm_*           masks, adapters and window logits of a derived transformer,
                                see derive_tfm.py

Models use weights seeded_state_dict(model, seed=1) on their state_dict names (pytorchvideo's
for X3D) and the input seeded_input(shape, seed=2): [T, 3, crop, crop] frame-major for X3D,
[steps, input_dim] for the transformers, [T, 3, 25, 2] (frames, xyz, NTU joints, persons) for
ST-GCN, whose graph entries (A, gcn.A) hold the NTU spatial graph instead of seeded values; the
input is not stored, only its sum.
All arithmetic is float64, stored as float32, so the tensors do not depend on the machine. One
metadata field does: f32_rel_err (logits_f32_rel_err) records how far a float32 run of the same
reference lands, which varies with the CPU's BLAS kernels; files regenerated on another machine
differ from the committed ones in that field only, and repeat exactly on the same machine.
Run with Debian's python (torch 1.13): /usr/bin/python3 tests/ref/make_goldens.py
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ops import make_op_goldens  # noqa: E402
from opcm import make_merge_goldens  # noqa: E402
from derive import make_derive_goldens  # noqa: E402
from safetensors_io import write_safetensors  # noqa: E402
from seeded import (seeded_input, seeded_range, seeded_state_dict,  # noqa: E402
                    seeded_tensor)
from skeleton_graph import LAYOUTS as SKELETONS  # noqa: E402
from skeleton_graph import STRATEGIES, adjacency  # noqa: E402
from stgcn import LAYOUTS as STGCN_LAYOUTS  # noqa: E402
from stgcn import clip_logits as stgcn_clip_logits  # noqa: E402
from stgcn import (VARIANTS, StGcn, continual_geometry, continual_logits,  # noqa: E402
                   name_lines, seed_weights)
from agcn import VARIANTS as AGCN_VARIANTS  # noqa: E402
from agcn import AGcn, graph_conv_case  # noqa: E402
from transformer import ContinualEncoder, plain_window_logits, window_logits  # noqa: E402
from x3d import SIZES, X3D, clip_logits, name_map_lines, stage_depths  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")
WEIGHT_SEED = 1
INPUT_SEED = 2

SEEDED_CASES = [("a.weight", (4, 3, 3, 3)), ("b.bias", (7,)), ("bn.running_var", (5,)),
                ("bn.weight", (5,)), ("c.running_mean", (6,)), ("fc.weight", (5, 6))]

# name, size, crop, frames, pool window (None: the clip length)
CLIP_CASES = [
    ("x3d_xs_clip", "xs", 160, 4, None),
    ("x3d_s_clip", "s", 160, 13, None),
    ("x3d_m_clip", "m", 64, 16, None),
    ("x3d_l_clip", "l", 64, 4, 4),
]
# name, size, crop, frames, head pool window, positions kept
CONTINUAL_CASES = [
    ("cox3d_s_steps", "s", 96, 48, 13, 8),
    ("cox3d_xs_steps", "xs", 96, 40, 4, 9),
]
# name, d_model, nhead, dim_feedforward, layers, activation, norm_first, pos, class token,
# input_dim, classes, window, steps
TRANSFORMER_CASES = [
    ("transformer_d64_relu", 64, 4, 128, 1, "relu", False, "none", False, 32, 10, 16, 48),
    ("transformer_d64_prenorm_gelu_sin", 64, 4, 256, 1, "gelu", True, "sinusoidal", False,
     64, 10, 16, 48),
    ("transformer_d128_2layer_learned_cls", 128, 8, 256, 2, "relu", False, "learned", True,
     48, 20, 24, 72),
    ("transformer_d256_2layer_prenorm_gelu_sin_cls", 256, 8, 512, 2, "gelu", True,
     "sinusoidal", True, 256, 20, 32, 96),
    ("transformer_d1024_2layer_learned_oadtr", 1024, 8, 2048, 2, "relu", False, "learned",
     False, 2048, 21, 64, 192),
    ("transformer_d512_prenorm_gelu_cls", 512, 8, 1024, 1, "gelu", True, "none", True, 432, 5,
     64, 192),
]

# ST-GCN goldens: NTU RGB+D input, 3 channels, 25 joints, 2 persons, 60 classes.
STGCN_SHAPE = (3, 25, 2)
STGCN_CLASSES = 60
STGCN_GRAPH = ("ntu-rgb+d", "spatial")
# name, layout, variant, frames
STGCN_CLIP_CASES = [
    ("stgcn_clip_stgcn", "stgcn", "stgcn", 64),
    ("stgcn_clip_coskel", "coskel", "stgcn", 64),
    ("stgcn_star_clip_coskel", "coskel", "stgcn_star", 100),
]
# name, layout, variant, clip frames, stream frames
STGCN_CONTINUAL_CASES = [
    ("cost_gcn_steps_coskel", "coskel", "stgcn", 100, 128),
    ("cost_gcn_star_steps_coskel", "coskel", "stgcn_star", 100, 128),
    ("cost_gcn_steps_stgcn", "stgcn", "stgcn", 100, 128),
]

# AGCN goldens: the ST-GCN shapes. Operator cases: name, C_in, C_out, joints, persons, frames
AGCN_OP_CASES = [
    ("agcn_c4_c8_m2", 4, 8, 25, 2, 6),
    ("agcn_c6_c16_m1", 6, 16, 7, 1, 5),
]
# name, variant (agcn.py), frames
AGCN_CLIP_CASES = [
    ("agcn_clip_coskel", "agcn", 64),
    ("agcn_star_clip_coskel", "agcn_star", 100),
]
# name, variant, clip frames, stream frames
AGCN_CONTINUAL_CASES = [
    ("coagcn_steps_coskel", "coagcn", 100, 128),
    ("coagcn_star_steps_coskel", "agcn_star", 100, 128),
]


def seeded_golden(path, seed=7):
    tensors, meta = [], {"seed": seed, "generator": "engine/seeded.h"}
    for name, shape in SEEDED_CASES:
        lo, hi = seeded_range(name, shape)
        tensors.append((name, seeded_tensor(name, shape, seed)))
        meta["range." + name] = "%r,%r" % (lo, hi)
    tensors.append(("x.cls_token", seeded_tensor("x.cls_token", (6,), seed)))
    meta["range.x.cls_token"] = "%r,%r" % seeded_range("x.cls_token", (6,))
    tensors.append(("input", seeded_input((2, 3, 4, 5), seed)))
    meta["range.input"] = "-1.0,1.0"
    write_safetensors(path, tensors, meta)


def name_maps(outdir):
    for size in SIZES:
        lines = name_map_lines(X3D(size))
        with open(os.path.join(outdir, "x3d_names_%s.txt" % size), "w") as f:
            f.write("\n".join(lines) + "\n")


def _model(size, crop, window, se_scope):
    model = X3D(size, crop=crop, pool_window=window, se_scope=se_scope).eval()
    seeded_state_dict(model, WEIGHT_SEED)
    return model


def _logits(model, frames):
    """float64 logits, and the relative deviation of a float32 run from them: a measure of how
    well conditioned the case is (the bound a float32 engine can hope to meet)."""
    with torch.no_grad():
        ref = clip_logits(model.double(), frames.double())
        f32 = clip_logits(model.float(), frames)
    err = ((f32.double() - ref).abs().max() / ref.abs().max().clamp(min=1.0)).item()
    return ref, err


def _model_meta(size, crop, frames, window, se_scope, x, err):
    depths = ",".join(str(d) for d in stage_depths(SIZES[size][2]))
    return {"model": "x3d", "size": size, "crop": crop, "frames": frames,
            "pool_window": window, "se_scope": se_scope, "depths": depths,
            "weight_seed": WEIGHT_SEED, "input_seed": INPUT_SEED,
            "input_shape": "%d,3,%d,%d" % (frames, crop, crop), "input_layout": "TCHW",
            "input_sum": repr(x.double().sum().item()), "weights": "pytorchvideo names",
            "compute": "float64", "f32_rel_err": "%.3g" % err}


def clip_golden(outdir, name, size, crop, frames, window):
    model = _model(size, crop, window, "clip")
    x = seeded_input((frames, 3, crop, crop), INPUT_SEED)
    logits, err = _logits(model, x)
    meta = _model_meta(size, crop, frames, model.pool_window, "clip", x, err)
    meta["positions"] = logits.shape[0]
    write_safetensors(os.path.join(outdir, name + ".safetensors"),
                      [("clip_logits", logits.float())], meta)


def continual_golden(outdir, name, size, crop, frames, window, keep):
    """Stepping from a zero state emits position j at step j + delay; the first `keep`
    positions of the offline run over all frames (zero temporal padding) are those steps."""
    model = _model(size, crop, window, "frame")
    x = seeded_input((frames, 3, crop, crop), INPUT_SEED)
    logits, err = _logits(model, x)
    delay = model.delay()
    assert delay + keep <= frames, "the kept positions must be emitted within the frames"
    meta = _model_meta(size, crop, frames, window, "frame", x, err)
    meta.update({"mode": "continual", "delay": delay, "first_step": delay,
                 "positions": keep, "temporal_fill": "zeros"})
    write_safetensors(os.path.join(outdir, name + ".safetensors"),
                      [("step_logits", logits[:keep].float())], meta)


def transformer_golden(outdir, name, d_model, nhead, ff, layers, activation, norm_first, pos,
                       cls, input_dim, classes, window, steps):
    """One row of logits per window position t = window-1 .. steps-1 (see transformer.py)."""
    model = ContinualEncoder(input_dim, d_model, nhead, ff, layers, window, classes, pos=pos,
                             class_token=cls, activation=activation,
                             norm_first=norm_first).eval()
    seeded_state_dict(model, WEIGHT_SEED)
    x = seeded_input((steps, input_dim), INPUT_SEED)
    with torch.no_grad():
        model.double()
        ref = window_logits(model, x.double())
        plain = plain_window_logits(model, x.double())
        model.float()
        f32 = window_logits(model, x)
    scale = ref.abs().max().clamp(min=1.0)
    plain_err = ((plain - ref).abs().max() / scale).item()
    assert plain_err < 1e-12, "%s: encoder layer and formula differ by %g" % (name, plain_err)
    err = ((f32.double() - ref).abs().max() / scale).item()
    if err >= 1e-5:
        print("warning: %s: float32 lands %.3g from float64" % (name, err))
    meta = {"model": "transformer", "d_model": d_model, "nhead": nhead,
            "dim_feedforward": ff, "num_layers": layers, "norm_first": int(norm_first),
            "activation": activation, "layer_norm_eps": repr(model.layers[0].norm1.eps),
            "window": window, "pos": pos, "pos_index": "frame mod window",
            "class_token": int(cls), "input_dim": input_dim, "num_classes": classes,
            "steps": steps, "first_step": window - 1, "positions": steps - window + 1,
            "weight_seed": WEIGHT_SEED, "input_seed": INPUT_SEED,
            "input_shape": "%d,%d" % (steps, input_dim),
            "input_sum": repr(x.double().sum().item()), "compute": "float64",
            "logits_f32_rel_err": "%.3g" % err}
    write_safetensors(os.path.join(outdir, name + ".safetensors"), [("logits", ref.float())],
                      meta)


def stgcn_graphs(path):
    tensors, meta = [], {"max_hop": 1, "dilation": 1, "normalize": "A @ D^-1, D column sums",
                         "reference": "yysijie/st-gcn net/utils/graph.py"}
    for layout, (joints, _, centre) in SKELETONS.items():
        meta["joints." + layout] = joints
        meta["centre." + layout] = centre
        for strategy in STRATEGIES:
            tensors.append(("%s/%s" % (layout, strategy), adjacency(layout, strategy)))
    write_safetensors(path, tensors, meta)


def stgcn_names(outdir):
    for layout in STGCN_LAYOUTS:
        lines = name_lines(_stgcn_model(layout, "stgcn"))
        with open(os.path.join(outdir, "stgcn_names_%s.txt" % layout), "w") as f:
            f.write("\n".join(lines) + "\n")


def _stgcn_model(layout, variant):
    model = StGcn(layout, variant, STGCN_SHAPE[0], STGCN_CLASSES, STGCN_SHAPE[2],
                  *STGCN_GRAPH).eval()
    seed_weights(model, WEIGHT_SEED)
    return model


def _stgcn_run(name, model, fn, x):
    """fn(model, x) in float64, and a warning when a float32 run lands far from it (the
    deviation is printed, not stored: it depends on the machine)."""
    with torch.no_grad():
        ref = fn(model.double(), x.double())
        f32 = fn(model.float(), x)
    err = ((f32.double() - ref).abs().max() / ref.abs().max().clamp(min=1.0)).item()
    if err >= 1e-5:
        print("warning: %s: float32 lands %.3g from float64" % (name, err))
    return ref


def _stgcn_meta(layout, variant, frames, x):
    padding, strided = VARIANTS[variant]
    return {"model": "stgcn", "layout": layout, "variant": variant,
            "weights": {"stgcn": "yysijie/st-gcn names",
                        "coskel": "continual-skeletons names"}[layout],
            "temporal_padding": padding, "strided": int(strided), "frames": frames,
            "in_channels": STGCN_SHAPE[0], "joints": STGCN_SHAPE[1],
            "persons": STGCN_SHAPE[2], "num_classes": STGCN_CLASSES,
            "skeleton": STGCN_GRAPH[0], "strategy": STGCN_GRAPH[1],
            "graph": "built from the skeleton, not seeded",
            "weight_seed": WEIGHT_SEED, "input_seed": INPUT_SEED,
            "input_shape": "%d,%d,%d,%d" % ((frames,) + STGCN_SHAPE), "input_layout": "TCVM",
            "input_sum": repr(x.double().sum().item()), "compute": "float64"}


def stgcn_clip_golden(outdir, name, layout, variant, frames):
    x = seeded_input((frames,) + STGCN_SHAPE, INPUT_SEED)
    logits = _stgcn_run(name, _stgcn_model(layout, variant), stgcn_clip_logits, x)
    write_safetensors(os.path.join(outdir, name + ".safetensors"), [("logits", logits.float())],
                      _stgcn_meta(layout, variant, frames, x))
    return logits


def stgcn_continual_golden(outdir, name, layout, variant, clip_frames, frames):
    """Row i is emitted at input frame first_step + i * stride (see stgcn.continual_logits)."""
    model = _stgcn_model(layout, variant)
    x = seeded_input((frames,) + STGCN_SHAPE, INPUT_SEED)
    geo = continual_geometry(model, clip_frames, frames)
    logits = _stgcn_run(name, model, lambda m, v: continual_logits(m, v, clip_frames)[0], x)
    meta = _stgcn_meta(layout, variant, frames, x)
    meta.update({"mode": "continual", "clip_frames": clip_frames, "stream_frames": frames,
                 "rf": geo["rf"], "pad": geo["pad"], "stride": geo["stride"],
                 "w": geo["w"], "p": geo["p"], "computable_positions": geo["computable"],
                 "positions": logits.shape[0], "first_step": geo["first_step"],
                 "temporal_fill": "zeros", "pool_count_include_pad": 1})
    write_safetensors(os.path.join(outdir, name + ".safetensors"), [("logits", logits.float())],
                      meta)
    return logits


def stgcn_goldens(outdir):
    stgcn_graphs(os.path.join(outdir, "stgcn_graphs.safetensors"))
    stgcn_names(outdir)
    clips = {case[0]: stgcn_clip_golden(outdir, *case) for case in STGCN_CLIP_CASES}
    steps = {case[0]: stgcn_continual_golden(outdir, *case) for case in STGCN_CONTINUAL_CASES}
    # Without padding, w = 20 positions and p = 0: the first output is the clip over frames
    # 0..99, and the 100-frame input is the stream's first 100 frames.
    dev = (steps["cost_gcn_star_steps_coskel"][0] - clips["stgcn_star_clip_coskel"]).abs().max()
    assert dev < 1e-10, "CoST-GCN* first step and ST-GCN* clip differ by %g" % dev


def agcn_op_golden(outdir, seed, name, cin, cout, joints, persons, frames):
    x, tensors, clip = graph_conv_case(cin, cout, joints, persons, frames, seed, "clip")
    _, _, steps = graph_conv_case(cin, cout, joints, persons, frames, seed, "frame")
    meta = {"op": "agcn", "seed": seed, "layout": "TCHW", "compute": "float64", "k": 3,
            "inter": cout // 4, "joints": joints, "persons": persons, "relu": 0, "delay": 0,
            "clip": "C_k over all frames", "steps": "C_k per frame",
            "reference": "continual-skeletons models/a_gcn/a_gcn.py AdaptiveGraphConvolution "
                         "without gcn_residual and ReLU"}
    out = [("input", x)] + list(tensors.items()) + [("clip", clip), ("steps", steps)]
    write_safetensors(os.path.join(outdir, "ops", name + ".safetensors"), out, meta)


def _agcn_model(variant):
    model = AGcn(variant, STGCN_SHAPE[0], STGCN_CLASSES, STGCN_SHAPE[2], *STGCN_GRAPH).eval()
    seed_weights(model, WEIGHT_SEED)
    return model


def _agcn_meta(variant, frames, x):
    base, form = AGCN_VARIANTS[variant]
    meta = _stgcn_meta("coskel", base, frames, x)
    meta.update({"model": "agcn", "variant": variant, "graph_form": form,
                 "reference": "continual-skeletons models/a_gcn, a_gcn_mod, coa_gcn, "
                              "coa_gcn_mod"})
    return meta


def agcn_goldens(outdir):
    for i, case in enumerate(AGCN_OP_CASES):
        agcn_op_golden(outdir, 700 + i, *case)
    with open(os.path.join(outdir, "agcn_names_coskel.txt"), "w") as f:
        f.write("\n".join(name_lines(_agcn_model("agcn"))) + "\n")
    clips, steps = {}, {}
    for name, variant, frames in AGCN_CLIP_CASES:
        x = seeded_input((frames,) + STGCN_SHAPE, INPUT_SEED)
        clips[name] = _stgcn_run(name, _agcn_model(variant), stgcn_clip_logits, x)
        write_safetensors(os.path.join(outdir, name + ".safetensors"),
                          [("logits", clips[name].float())], _agcn_meta(variant, frames, x))
    for name, variant, clip_frames, frames in AGCN_CONTINUAL_CASES:
        model = _agcn_model(variant)
        x = seeded_input((frames,) + STGCN_SHAPE, INPUT_SEED)
        geo = continual_geometry(model, clip_frames, frames)
        steps[name] = _stgcn_run(
            name, model, lambda m, v: continual_logits(m, v, clip_frames)[0], x)
        meta = _agcn_meta(variant, frames, x)
        meta.update({"mode": "continual", "clip_frames": clip_frames, "stream_frames": frames,
                     "rf": geo["rf"], "pad": geo["pad"], "stride": geo["stride"],
                     "w": geo["w"], "p": geo["p"], "computable_positions": geo["computable"],
                     "positions": steps[name].shape[0], "first_step": geo["first_step"],
                     "temporal_fill": "zeros", "pool_count_include_pad": 1})
        write_safetensors(os.path.join(outdir, name + ".safetensors"),
                          [("logits", steps[name].float())], meta)
    # AGCN*'s graph is per frame in both modes: its first step is the clip over frames 0..99.
    dev = (steps["coagcn_star_steps_coskel"][0] - clips["agcn_star_clip_coskel"]).abs().max()
    assert dev <= 1e-10 * clips["agcn_star_clip_coskel"].abs().max(), \
        "CoAGCN* first step and AGCN* clip differ by %g" % dev


def main():
    t0 = time.time()
    os.makedirs(GOLDEN, exist_ok=True)
    seeded_golden(os.path.join(GOLDEN, "seeded.safetensors"))
    make_op_goldens(os.path.join(GOLDEN, "ops"))
    name_maps(GOLDEN)
    for case in CLIP_CASES:
        clip_golden(GOLDEN, *case)
    for case in CONTINUAL_CASES:
        continual_golden(GOLDEN, *case)
    for case in TRANSFORMER_CASES:
        transformer_golden(GOLDEN, *case)
    stgcn_goldens(GOLDEN)
    agcn_goldens(GOLDEN)
    make_merge_goldens(os.path.join(GOLDEN, "merge"))
    make_derive_goldens(os.path.join(GOLDEN, "derive"))
    print("goldens written to %s in %.1f s" % (os.path.normpath(GOLDEN), time.time() - t0))


if __name__ == "__main__":
    main()
