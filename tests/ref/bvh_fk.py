"""Joint world positions of a BVH file by forward kinematics: the reference for io/bvh.c.

Written apart from the C reader (an iterative parser over whitespace tokens, and 4x4 homogeneous
matrices for all frames at once), with numpy only, so it runs without torch:
    /usr/bin/python3 tests/ref/bvh_fk.py          (also run by `make goldens`)

Conventions (those of io/bvh.h): joints are the ROOT and JOINT blocks in file order, End Sites
left out; a joint's local matrix is the translation by OFFSET + its position channels times the
rotations in the order its CHANNELS line lists them, angles in degrees; world = parent @ local.
Resampling to fps: t = floor((frames - 1) * frame_time * fps + 1e-9) + 1 output frames, frame k
linearly interpolated between source frames floor(s) and floor(s) + 1, s = k / fps / frame_time.

Golden written: tests/golden/bvh_cmu_01_01.npy, float32 [15, 3, 31] (frame, x/y/z, joint) of
tests/media/assimp-testmodels__cmu_01_01.bvh: rows 0-4 are source frames SOURCE_FRAMES, rows
5-9 the output frames FPS30_FRAMES at 30 fps, rows 10-14 FPS25_FRAMES at 25 fps. Arithmetic is
float64.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from skeleton_graph import LAYOUTS as SKELETONS  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MEDIA = os.path.join(HERE, "..", "media", "assimp-testmodels__cmu_01_01.bvh")
GOLDEN = os.path.join(HERE, "..", "golden", "bvh_cmu_01_01.npy")

SOURCE_FRAMES = (0, 1, 100, 1000, 2751)
FPS30_FRAMES = (0, 1, 333, 500, 687)
FPS25_FRAMES = (0, 1, 201, 400, 573)
ROUND_SLACK = 1e-9
AXES = {"X": 0, "Y": 1, "Z": 2}


def parse(path):
    """(joints, frame_time, motion): joints a list of dicts name, parent, offset, channels;
    motion float64 [frames, channels]."""
    with open(path) as f:
        text = f.read()
    head, sep, motion = text.partition("MOTION")
    assert sep, "no MOTION section"
    tokens = head.split()
    assert tokens[0] == "HIERARCHY"
    joints, stack, i = [], [], 1
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("ROOT", "JOINT"):
            parent = stack[-1] if stack else -1
            joints.append({"name": tokens[i + 1], "parent": parent, "channels": []})
            stack.append(len(joints) - 1)
            assert tokens[i + 2] == "{"
            i += 3
        elif tok == "End":
            assert tokens[i + 1:i + 4] == ["Site", "{", "OFFSET"]
            assert tokens[i + 7] == "}"
            i += 8
        elif tok == "OFFSET":
            joints[stack[-1]]["offset"] = np.array([float(v) for v in tokens[i + 1:i + 4]])
            i += 4
        elif tok == "CHANNELS":
            n = int(tokens[i + 1])
            joints[stack[-1]]["channels"] = tokens[i + 2:i + 2 + n]
            i += 2 + n
        elif tok == "}":
            stack.pop()
            i += 1
        else:
            raise ValueError("unexpected token %r" % tok)
    assert not stack, "unbalanced braces"
    return joints, *_parse_motion(motion, sum(len(j["channels"]) for j in joints))


def _parse_motion(motion, nch):
    lines = motion.strip().splitlines()
    frames = int(lines[0].split(":")[1])
    label, value = lines[1].split(":")
    assert label.strip() == "Frame Time"
    rows = [np.array(line.split(), dtype=np.float64) for line in lines[2:2 + frames]]
    assert len(rows) == frames and all(r.shape == (nch,) for r in rows)
    return float(value), np.stack(rows)


def axis_rotation(axis, degrees):
    """[frames, 4, 4] rotations about axis 'X', 'Y' or 'Z', counter-clockwise."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    m = np.zeros(a.shape + (4, 4))
    m[:, 3, 3] = 1.0
    i, k = [(1, 2), (2, 0), (0, 1)][AXES[axis]]
    m[:, AXES[axis], AXES[axis]] = 1.0
    m[:, i, i], m[:, i, k], m[:, k, i], m[:, k, k] = c, -s, s, c
    return m


def world_positions(joints, motion):
    """float64 [frames, joints, 3]."""
    frames = motion.shape[0]
    world, col = [], 0
    for j in joints:
        local = np.tile(np.eye(4), (frames, 1, 1))
        local[:, :3, 3] = j["offset"]
        for name in j["channels"]:
            values = motion[:, col]
            col += 1
            if name.endswith("position"):
                local[:, AXES[name[0]], 3] += values
            else:
                local = local @ axis_rotation(name[0], values)
        world.append(local if j["parent"] < 0 else world[j["parent"]] @ local)
    return np.stack([w[:, :3, 3] for w in world], axis=1)


def resample(pos, frame_time, fps):
    frames = pos.shape[0]
    t = int(np.floor((frames - 1) * frame_time * fps + ROUND_SLACK)) + 1
    out = np.empty((t,) + pos.shape[1:])
    for k in range(t):
        s = k / fps / frame_time
        i0 = int(np.floor(s))
        w = s - i0
        if i0 >= frames - 1:
            i0, w = frames - 1, 0.0
        out[k] = pos[i0] if w == 0 else pos[i0] + w * (pos[i0 + 1] - pos[i0])
    return out


def cmu_golden(path=GOLDEN):
    joints, frame_time, motion = parse(MEDIA)
    pos = world_positions(joints, motion)
    assert pos.shape == (2752, 31, 3), pos.shape
    bones = [(c, j["parent"]) for c, j in enumerate(joints) if j["parent"] >= 0]
    assert bones == SKELETONS["cmu31"][1], "joint order differs from the cmu31 layout"
    rows = [pos[list(SOURCE_FRAMES)]]
    for fps, keep in ((30.0, FPS30_FRAMES), (25.0, FPS25_FRAMES)):
        res = resample(pos, frame_time, fps)
        assert res.shape[0] == keep[-1] + 1, (fps, res.shape)
        rows.append(res[list(keep)])
    golden = np.concatenate(rows).transpose(0, 2, 1).astype(np.float32)
    np.save(path, np.ascontiguousarray(golden))
    return golden


if __name__ == "__main__":
    g = cmu_golden()
    print("%s: float32 %s" % (os.path.normpath(GOLDEN), g.shape))
