"""Minimal safetensors writer and reader for the goldens (F32 only, json + struct, no deps).

Layout: 8-byte little-endian header length, a JSON header padded with spaces to a multiple of 8,
then the tensors' little-endian bytes back to back in header order. Metadata values are strings.
"""
import json
import struct

import numpy as np


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, array-like); written as F32 in the given order."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name, value in tensors:
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        a = np.ascontiguousarray(value, dtype="<f4")
        blob = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    """Returns ({name: float32 array}, metadata) for a file of F32 tensors."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError("%s: %s: only F32 is supported" % (path, name))
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"])
    return out, meta
