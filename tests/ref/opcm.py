"""Sequential model merging, re-implemented from the published OPCM formulas for the goldens of
tests/test_merge.c (`make goldens` calls make_merge_goldens).

Models are ordered dicts {name: float32 tensor}. The choices follow fusion_bench (54c9e8c):
- opcm_general.OPCM.run: the first model is the first merge; each later one appends its task
  vector norm ||ft - base|| (over every tensor) to a list whose mean is the target norm; after
  the layer-wise merge the merged task vector is rescaled to that mean and lambda_t = its norm
  before rescaling / the mean, the previous_lambda_t of the next arrival.
- opcm_general.OPCM.merge_linear_weights (Linear weights only): SVD of the previous merged task
  vector, split rank r = argmax(cumsum(s) / sum(s) > alpha), the new task vector in the singular
  bases, diagonal and block [:r, :r] zeroed, back, then prev_lambda * previous + cleaned.
- merge_other_parameters (every other parameter, convolutions included):
  prev_lambda * previous + task.
- task_arithmetic.py: merged = base + lambda * sum of task vectors; weight_average.py: the
  running mean (merged * k + ft) / (k + 1).
Variants of ours: diag_kept (tanganke/opcm, whose diag().fill_(0) fills a copy and leaves the
diagonal), project_conv (tensors of >= 3 dims projected too, viewed as [shape[0], -1]),
sum_only (glob patterns of 2-D tensors summed as fusion_bench sums a non-Linear module's) and
buffers (glob patterns of tensors that are buffers there, BatchNorm statistics by default: not
merged; OPCM counts them in its norms, which fusion_bench takes over the state_dict).
The goldens run these in float64 on the float32 models (as every golden here, so the files do
not depend on the machine); fusion_bench's own code in float32 on the same models agrees to 1e-6.
"""
import fnmatch
import os
from collections import OrderedDict

import torch

from safetensors_io import write_safetensors


def _norm(model, base):
    return torch.linalg.norm(torch.cat([(model[k] - base[k]).reshape(-1) for k in base]))


def _split_rank(s, alpha):
    return int((s.cumsum(dim=0) / s.sum() > alpha).float().argmax().item())


def project(prev_tv, task_tv, alpha, diag_kept=False):
    """The new task vector with what lies along prev_tv's leading directions removed."""
    shape = task_tv.shape
    prev_tv, task_tv = prev_tv.reshape(shape[0], -1), task_tv.reshape(shape[0], -1)
    u, s, vh = torch.linalg.svd(prev_tv, full_matrices=True)
    v = vh.T
    r = _split_rank(s, alpha)
    p = u.T @ task_tv @ v
    if not diag_kept:
        p.diagonal().fill_(0)
    p[:r, :r] = 0
    return (u @ p @ v.T).reshape(shape)


def _projected(name, value, project_conv, sum_only):
    if any(fnmatch.fnmatchcase(name, p) for p in sum_only):
        return False
    return value.dim() == 2 or (project_conv and value.dim() > 2)


# Tensors fusion_bench does not merge, since they are not in named_parameters(): BatchNorm's.
BUFFERS = ("*running_mean", "*running_var")


def _is_buffer(name, buffers):
    return any(fnmatch.fnmatchcase(name, p) for p in buffers)


def opcm(base, models, alpha=0.5, diag_kept=False, project_conv=False, sum_only=(),
         buffers=BUFFERS):
    """Yields the merge after each model. Buffers keep the first model's values and count in
    the norms, which fusion_bench takes over the state_dict."""
    merged = OrderedDict((k, v.clone()) for k, v in models[0].items())
    norms = [_norm(merged, base)]
    prev_lambda = 1.0
    yield merged
    for ft in models[1:]:
        norms.append(_norm(ft, base))
        mean = torch.stack(norms).mean()
        for k, b in base.items():
            if _is_buffer(k, buffers):
                continue
            prev, task = merged[k] - b, ft[k] - b
            if _projected(k, b, project_conv, sum_only):
                task = project(prev, task, alpha, diag_kept)
            merged[k] = b + (prev_lambda * prev + task)
        norm = _norm(merged, base)
        for k, b in base.items():
            if not _is_buffer(k, buffers):
                merged[k] = b + (merged[k] - b) * (mean / norm)
        prev_lambda = (norm / mean).item()
        yield merged


def task_arithmetic(base, models, lam=0.3, buffers=BUFFERS):
    """Buffers stay the base's."""
    merged = OrderedDict((k, v.clone()) for k, v in base.items())
    for ft in models:
        for k, b in base.items():
            if not _is_buffer(k, buffers):
                merged[k] = merged[k] + lam * (ft[k] - b)
        yield merged


def average(base, models, buffers=BUFFERS):
    """Buffers stay the first model's."""
    merged = OrderedDict((k, v.clone()) for k, v in models[0].items())
    yield merged
    for i, ft in enumerate(models[1:], start=1):
        for k in base:
            if not _is_buffer(k, buffers):
                merged[k] = (merged[k] * i + ft[k]) / (i + 1)
        yield merged


# A small model: Linear weights tall and wide, their biases, a norm's 1-D parameters, a
# BatchNorm's parameters and running statistics, and a Conv3d weight [out, in, kt, kh, kw].
SHAPES = [("bn.weight", (6,)), ("bn.bias", (6,)), ("bn.running_mean", (6,)),
          ("bn.running_var", (6,)),
          ("blocks.0.fc1.weight", (12, 8)), ("blocks.0.fc1.bias", (12,)),
          ("blocks.0.fc2.weight", (6, 12)), ("blocks.0.fc2.bias", (6,)),
          ("head.weight", (5, 6)), ("head.bias", (5,)), ("norm.weight", (6,)),
          ("norm.bias", (6,)), ("stem.conv.weight", (4, 3, 3, 2, 2))]
MODELS = 4


def synthetic_models(seed=7):
    """The base and MODELS fine-tuned models: each task vector is a rank-2 part shared in
    direction between tasks plus its own noise, so the projections have something to remove."""
    g = torch.Generator().manual_seed(seed)
    base = OrderedDict((k, torch.randn(s, generator=g)) for k, s in SHAPES)
    base["bn.running_var"] = base["bn.running_var"].abs() + 0.5
    models = []
    for t in range(MODELS):
        ft = OrderedDict()
        for k, s in SHAPES:
            d = 0.05 * torch.randn(s, generator=g)
            if len(s) >= 2:
                rows, cols = s[0], int(torch.tensor(s[1:]).prod())
                a = torch.randn(rows, 2, generator=g)
                c = torch.randn(2, cols, generator=g)
                d = d + (0.1 * (a @ c) / (t + 1)).reshape(s)
            ft[k] = base[k] + d
        models.append(ft)
    return base, models


CASES = [
    ("opcm", lambda b, m: opcm(b, m)),
    ("opcm_alpha08", lambda b, m: opcm(b, m, alpha=0.8)),
    ("opcm_diag_kept", lambda b, m: opcm(b, m, diag_kept=True)),
    ("opcm_conv", lambda b, m: opcm(b, m, project_conv=True)),
    ("opcm_sum_only_head", lambda b, m: opcm(b, m, sum_only=("head.*",))),
    ("opcm_no_buffers", lambda b, m: opcm(b, m, buffers=())),
    ("task_arithmetic", lambda b, m: task_arithmetic(b, m, 0.3)),
    ("average", lambda b, m: average(b, m)),
]


def make_merge_goldens(outdir):
    """merge/base, merge/ft_<k> (k = 1..4) and merge/<case>: "<k>/<tensor>" is the merge after
    the k-th model."""
    os.makedirs(outdir, exist_ok=True)
    base, models = synthetic_models()
    base64 = OrderedDict((k, v.double()) for k, v in base.items())
    models64 = [OrderedDict((k, v.double()) for k, v in ft.items()) for ft in models]
    meta = {"source": "tests/ref/opcm.py"}
    write_safetensors(os.path.join(outdir, "base.safetensors"), list(base.items()), meta)
    for i, ft in enumerate(models, start=1):
        write_safetensors(os.path.join(outdir, "ft_%d.safetensors" % i), list(ft.items()), meta)
    for name, run in CASES:
        out = []
        for k, merged in enumerate(run(base64, models64), start=1):
            out += [("%d/%s" % (k, n), v.float()) for n, v in merged.items()]
        write_safetensors(os.path.join(outdir, name + ".safetensors"), out, meta)
