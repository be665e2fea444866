#!/usr/bin/python3
"""Converts a PyTorch checkpoint (.pyth / .pt / .pth) into a safetensors file cin can load.

The tensors keep the checkpoint's own names (the graph builders map names, not this tool). A
checkpoint may be {"model_state": sd} (pytorchvideo hub, SlowFast), {"state_dict": sd}
(Lightning, co3d) or a plain state dict. A leading "module." (DataParallel) is stripped,
num_batches_tracked is dropped, floating tensors become float32 and other tensors keep their
type. Metadata: {"source": <file name>, "format": "pt"}.

  convert_checkpoint.py X3D_S.pyth [x3d_s.safetensors]
  convert_checkpoint.py --list X3D_S.pyth
Needs torch (Debian's python3-torch).
"""
import argparse
import json
import os
import pickle
import struct
import sys

import torch

# safetensors dtype names of the tensor types a checkpoint may hold after conversion.
_DTYPES = {
    torch.float32: "F32", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
    torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def load_state_dict(path):
    ckpt = torch.load(path, map_location="cpu")
    if isinstance(ckpt, dict):
        for key in ("model_state", "state_dict"):
            if isinstance(ckpt.get(key), dict):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, dict):
        raise ValueError("%s: not a state dict nor a dict holding one" % path)
    bad = [k for k, v in ckpt.items() if not torch.is_tensor(v)]
    if bad:
        raise ValueError("%s: entries that are not tensors (no model_state or state_dict key?):"
                         " %s" % (path, ", ".join(map(str, bad[:5]))))
    return ckpt


def convert(sd):
    """Returns [(name, tensor)] in checkpoint order, renamed and converted."""
    out, seen = [], set()
    for name, t in sd.items():
        if name.startswith("module."):
            name = name[len("module."):]
        if name.endswith("num_batches_tracked"):
            continue
        if name in seen:
            raise ValueError("tensor %s appears twice after stripping 'module.'" % name)
        seen.add(name)
        if t.is_floating_point():
            t = t.float()
        if t.dtype not in _DTYPES:
            raise ValueError("tensor %s has unsupported type %s" % (name, t.dtype))
        out.append((name, t.detach().contiguous()))
    return out


def save_safetensors(path, tensors, metadata):
    """8-byte LE header length, JSON header padded with spaces to 8 bytes, LE tensor data."""
    header, offset = {"__metadata__": metadata}, 0
    for name, t in tensors:
        n = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    if sys.byteorder != "little":
        raise RuntimeError("big-endian hosts are not supported")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, t in tensors:
            f.write(t.numpy().tobytes())


def main(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch checkpoint -> safetensors")
    ap.add_argument("checkpoint")
    ap.add_argument("output", nargs="?", help="default: the checkpoint's name + .safetensors")
    ap.add_argument("--list", action="store_true", help="print names and shapes, write nothing")
    args = ap.parse_args(argv)

    try:
        tensors = convert(load_state_dict(args.checkpoint))
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as e:
        print("convert_checkpoint: %s" % e, file=sys.stderr)
        return 1
    if args.list:
        for name, t in tensors:
            print("%s %s %s" % (name, _DTYPES[t.dtype], ",".join(map(str, t.shape))))
        return 0
    out = args.output or os.path.splitext(args.checkpoint)[0] + ".safetensors"
    meta = {"source": os.path.basename(args.checkpoint), "format": "pt"}
    save_safetensors(out, tensors, meta)
    print("%s: %d tensors, %d values" % (out, len(tensors), sum(t.numel() for _, t in tensors)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
