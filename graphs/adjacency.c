/* Skeleton layouts and ST-GCN's adjacency partitions. With hops capped at 1, a joint's distance
 * to the centre is 0, 1 or "far"; the spatial strategy compares those capped distances, as the
 * original code does, so most bones fall into the root partition. That is what published
 * checkpoints were trained with, so cin reproduces it rather than using true distances. */
#include "adjacency.h"

#include <stdlib.h>
#include <string.h>

typedef struct layout {
    const char *name;
    int joints, centre;
    const signed char (*bones)[2];    /* pairs of 0-based joints */
    int n_bones;
} layout;

/* Kinect v2 joints as in NTU RGB+D; centre: spine middle (21 counting from 1). */
static const signed char ntu_bones[][2] = {
    {0, 1}, {1, 20}, {2, 20}, {3, 2}, {4, 20}, {5, 4}, {6, 5}, {7, 6},
    {8, 20}, {9, 8}, {10, 9}, {11, 10}, {12, 0}, {13, 12}, {14, 13}, {15, 14},
    {16, 0}, {17, 16}, {18, 17}, {19, 18}, {21, 22}, {22, 7}, {23, 24}, {24, 11},
};

/* OpenPose's 18 keypoints; centre: the neck. */
static const signed char openpose_bones[][2] = {
    {4, 3}, {3, 2}, {7, 6}, {6, 5}, {13, 12}, {12, 11}, {10, 9}, {9, 8},
    {11, 5}, {8, 2}, {5, 1}, {2, 1}, {0, 1}, {15, 0}, {14, 0}, {17, 15}, {16, 14},
};

/* COCO's 17 keypoints; centre: the nose. */
static const signed char coco_bones[][2] = {
    {15, 13}, {13, 11}, {16, 14}, {14, 12}, {11, 5}, {12, 6}, {9, 7}, {7, 5},
    {10, 8}, {8, 6}, {5, 0}, {6, 0}, {1, 0}, {3, 1}, {2, 0}, {4, 2},
};

/* The CMU motion capture skeleton in BVH file order (Hips first, End Sites left out), each
 * joint with its parent; centre: Spine (12). */
static const signed char cmu31_bones[][2] = {
    {1, 0}, {2, 1}, {3, 2}, {4, 3}, {5, 4}, {6, 0}, {7, 6}, {8, 7},
    {9, 8}, {10, 9}, {11, 0}, {12, 11}, {13, 12}, {14, 13}, {15, 14}, {16, 15},
    {17, 13}, {18, 17}, {19, 18}, {20, 19}, {21, 20}, {22, 21}, {23, 20}, {24, 13},
    {25, 24}, {26, 25}, {27, 26}, {28, 27}, {29, 28}, {30, 27},
};

#define BONES(b) b, (int)(sizeof b / sizeof b[0])

static const layout layouts[] = {
    {"ntu-rgb+d", 25, 20, BONES(ntu_bones)},
    {"openpose", 18, 1, BONES(openpose_bones)},
    {"coco", 17, 0, BONES(coco_bones)},
    {"cmu31", 31, 12, BONES(cmu31_bones)},
};

enum { FAR = 2 };           /* a hop distance beyond the cap of 1 */
enum { MAX_JOINTS = 31 };   /* the largest layout */

static const layout *find_layout(const char *name)
{
    for (size_t i = 0; name && i < sizeof layouts / sizeof layouts[0]; i++)
        if (strcmp(layouts[i].name, name) == 0)
            return &layouts[i];
    return NULL;
}

int adj_joints(const char *name)
{
    const layout *l = find_layout(name);
    return l ? l->joints : 0;
}

int adj_partitions(adj_strategy s)
{
    return s == ADJ_UNIFORM ? 1 : s == ADJ_DISTANCE ? 2 : 3;
}

int adj_parse_strategy(const char *name, adj_strategy *out, cin_err *err)
{
    static const char *names[] = {"uniform", "distance", "spatial"};
    for (int i = 0; name && i < 3; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (adj_strategy)i;
            return 0;
        }
    return cin_err_set(err, CIN_E_CONFIG,
                       "graph strategy '%s', expected one of: uniform, distance, spatial",
                       name ? name : "(none)");
}

/* hop[v * V + w]: 0 on the diagonal, 1 along a bone, FAR otherwise. */
static void hops(const layout *l, unsigned char *hop)
{
    int nv = l->joints;
    memset(hop, FAR, (size_t)nv * nv);
    for (int v = 0; v < nv; v++)
        hop[v * nv + v] = 0;
    for (int b = 0; b < l->n_bones; b++) {
        int i = l->bones[b][0], j = l->bones[b][1];
        hop[i * nv + j] = hop[j * nv + i] = 1;
    }
}

/* The partition of entry (j, i) of hop distance `h` under the spatial strategy: 0 root
 * (self, or a neighbour as far from the centre), 1 towards the centre, 2 away from it. */
static int spatial_part(const layout *l, const unsigned char *hop, int j, int i, int h)
{
    int nv = l->joints, c = l->centre;
    if (h == 0)
        return 0;
    if (hop[j * nv + c] == hop[i * nv + c])
        return 1;
    return hop[j * nv + c] > hop[i * nv + c] ? 1 : 2;
}

static int partition(adj_strategy s, const layout *l, const unsigned char *hop, int j, int i)
{
    int h = hop[j * l->joints + i];
    if (s == ADJ_UNIFORM)
        return 0;
    if (s == ADJ_DISTANCE)
        return h;
    return spatial_part(l, hop, j, i, h);
}

int adj_build(const char *name, adj_strategy s, float *a, cin_err *err)
{
    const layout *l = find_layout(name);
    if (!l)
        return cin_err_set(err, CIN_E_CONFIG, "graph layout '%s', expected one of: ntu-rgb+d, "
                           "openpose, coco, cmu31", name ? name : "(none)");
    int nv = l->joints, k = adj_partitions(s);
    unsigned char hop[MAX_JOINTS * MAX_JOINTS];
    hops(l, hop);
    memset(a, 0, sizeof(float) * (size_t)k * nv * nv);
    for (int i = 0; i < nv; i++) {
        int degree = 0;
        for (int j = 0; j < nv; j++)
            degree += hop[j * nv + i] < FAR;
        for (int j = 0; j < nv; j++)
            if (hop[j * nv + i] < FAR)
                a[((size_t)partition(s, l, hop, j, i) * nv + j) * nv + i] = 1.0f / degree;
    }
    return 0;
}
