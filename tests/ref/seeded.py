"""Deterministic tensors from a seed and a name: the Python twin of engine/seeded.c.

Goldens are computed on weights and inputs drawn here, and the C tests draw the same values with
cin_seeded_fill, so large tensors never need to be committed. Every formula below must stay
bit-for-bit equal to engine/seeded.c (tests/test_seeded.c checks a few tensors).
"""
import math

import numpy as np
import torch

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MASK64 = (1 << 64) - 1

INPUT_RANGE = (-1.0, 1.0)


def fnv1a64(name):
    h = _FNV_OFFSET
    for byte in name.encode("utf-8"):
        h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return h


def _splitmix64_finalize(z):
    # z: uint64 array; numpy wraps uint64 array arithmetic modulo 2^64.
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def seeded_values(n, seed, name, lo, hi):
    """The n float32 values cin_seeded_fill(dst, n, seed, name, lo, hi) writes."""
    key = np.uint64((seed ^ fnv1a64(name)) & _MASK64)
    i = np.arange(1, n + 1, dtype=np.uint64)
    z = _splitmix64_finalize(key + i * _GOLDEN)
    u = (z >> np.uint64(40)).astype(np.float64) * (1.0 / 16777216.0)
    return (lo + (hi - lo) * u).astype(np.float32)


def seeded_range(name, shape):
    """(lo, hi) as cin_seeded_range gives it, or None for a name it has no rule for."""
    ndim = len(shape)
    if "edge_importance." in name or name.endswith("graph_attn"):
        return 0.5, 1.5
    if name.endswith("running_var") or (name.endswith("weight") and ndim == 1):
        return 0.5, 1.5
    if name.endswith("_token") or name.endswith("_embedding"):
        return -0.5, 0.5
    if name.endswith("bias") or name.endswith("running_mean"):
        return -0.2, 0.2
    if name.endswith("weight") and ndim >= 2:
        fan_in = 1.0
        for d in shape[1:]:
            fan_in *= float(d)
        hi = math.sqrt(3.0 / fan_in)
        return -hi, hi
    return None


def seeded_tensor(name, shape, seed, lo=None, hi=None):
    """A float32 torch tensor named `name`, drawn in the range of seeded_range unless given."""
    shape = tuple(int(d) for d in shape)
    if lo is None:
        rng = seeded_range(name, shape)
        if rng is None:
            raise ValueError("no seeded range rule for tensor %r" % name)
        lo, hi = rng
    n = int(np.prod(shape, dtype=np.int64))
    return torch.from_numpy(seeded_values(n, seed, name, lo, hi).reshape(shape))


def seeded_input(shape, seed):
    """The tensor named "input" in [-1, 1], e.g. a frame-major clip [T, C, H, W]."""
    return seeded_tensor("input", shape, seed, *INPUT_RANGE)


def seeded_state_dict(model, seed):
    """Fills every parameter and buffer of `model` by its state_dict name (in place) and returns
    the state dict. num_batches_tracked is left alone; any other unknown name is an error."""
    sd = model.state_dict()
    with torch.no_grad():
        for name, t in sd.items():
            if name.endswith("num_batches_tracked"):
                continue
            t.copy_(seeded_tensor(name, t.shape, seed))
    return sd
