"""Skeleton adjacency for ST-GCN: the partitioned, normalized graphs A [K, V, V] its layers mix
joints with (out[w] = sum_v x[v] * A[k, v, w]).

This follows yysijie/st-gcn net/utils/graph.py with max_hop = 1 and dilation = 1: joints within
one hop (self links included) are adjacent; each column w is divided by its degree (A @ D^-1 with
D the column sums); a hop distance past max_hop is infinite. The "spatial" strategy splits a
neighbour pair (v, w) by the hop distances of v and w to the centre joint: equal -> root, v
further -> close (its message goes towards the centre), else -> further; the hop-0 root and the
hop-1 root are then summed with close, giving K = 3: [root, root + close, further]. As in
yysijie, with max_hop = 1 every joint more than one hop from the centre is at distance infinity,
so pairs of such joints compare equal and land in the root partition.
"""
import numpy as np

MAX_HOP = 1
STRATEGIES = ("uniform", "distance", "spatial")


def _from_1based(pairs):
    return [(i - 1, j - 1) for i, j in pairs]


def _from_parents(parents):
    return [(child, parent) for child, parent in enumerate(parents) if parent >= 0]


# name: (joints, neighbour pairs 0-based, centre joint)
LAYOUTS = {
    "ntu-rgb+d": (25, _from_1based([
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
        (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17),
        (19, 18), (20, 19), (22, 23), (23, 8), (24, 25), (25, 12)]), 20),
    "openpose": (18, [
        (4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2),
        (5, 1), (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14)], 1),
    "coco": (17, [
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8),
        (8, 6), (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2)], 0),
    # CMU mocap BVH skeleton, joints in file order; centre 12 is Spine.
    "cmu31": (31, _from_parents([
        -1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 15, 13, 17, 18, 19, 20, 21, 20,
        13, 24, 25, 26, 27, 28, 27]), 12),
}


def hop_distance(joints, pairs, max_hop=MAX_HOP):
    """[V, V] hops between joints; inf beyond max_hop. Hop d is reached where the d-th power of
    the link matrix is non-zero; the first such d counts."""
    link = np.eye(joints)
    for a, b in pairs:
        link[a, b] = link[b, a] = 1.0
    dist = np.full((joints, joints), np.inf)
    walk = np.eye(joints)
    for d in range(max_hop + 1):
        dist[(walk > 0) & np.isinf(dist)] = d
        walk = walk @ link
    return dist


def normalize_columns(adjacency):
    """adjacency @ D^-1, D the diagonal of column sums (empty columns stay zero)."""
    degree = adjacency.sum(axis=0)
    scale = np.zeros_like(degree)
    scale[degree > 0] = 1.0 / degree[degree > 0]
    return adjacency * scale[None, :]


def _spatial(dist, norm, centre):
    to_centre = dist[:, centre]
    d_row, d_col = to_centre[:, None], to_centre[None, :]
    parts = []
    for hop in range(MAX_HOP + 1):
        at_hop = dist == hop
        root = np.where(at_hop & (d_row == d_col), norm, 0.0)
        close = np.where(at_hop & (d_row > d_col), norm, 0.0)
        further = np.where(at_hop & ~(d_row == d_col) & ~(d_row > d_col), norm, 0.0)
        if hop == 0:
            parts.append(root)
        else:
            parts += [root + close, further]
    return np.stack(parts)


def adjacency(layout, strategy):
    """A [K, V, V] float64 for a layout of LAYOUTS and a strategy of STRATEGIES (K = 1, 2, 3)."""
    if layout not in LAYOUTS:
        raise ValueError("unknown skeleton layout %r" % layout)
    joints, pairs, centre = LAYOUTS[layout]
    dist = hop_distance(joints, pairs)
    norm = normalize_columns((dist <= MAX_HOP).astype(np.float64))
    if strategy == "uniform":
        return norm[None]
    if strategy == "distance":
        return np.stack([np.where(dist == hop, norm, 0.0) for hop in range(MAX_HOP + 1)])
    if strategy == "spatial":
        return _spatial(dist, norm, centre)
    raise ValueError("unknown partition strategy %r" % strategy)


def joint_count(layout):
    return LAYOUTS[layout][0]
