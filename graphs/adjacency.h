/* Skeleton graphs for graph convolutions: the joints and bones of a skeleton layout, and the
 * normalised adjacency partitions A_k that ST-GCN (Yan et al., AAAI 2018) sums over. The
 * construction follows the original ST-GCN code (net/utils/graph.py): hop distances up to 1,
 * columns normalised by their degree, and its partition strategies. */
#ifndef CIN_ADJACENCY_H
#define CIN_ADJACENCY_H

#include "error.h"

typedef enum { ADJ_UNIFORM, ADJ_DISTANCE, ADJ_SPATIAL } adj_strategy;

/* The number of joints of a layout ("ntu-rgb+d" 25, "openpose" 18, "coco" 17, "cmu31" 31),
 * or 0 for a name it does not know. */
int adj_joints(const char *layout);

/* Partitions of a strategy: 1, 2 or 3. */
int adj_partitions(adj_strategy s);

/* Parses "uniform", "distance" or "spatial"; CIN_E_CONFIG names the others. */
int adj_parse_strategy(const char *name, adj_strategy *out, cin_err *err);

/* Fills a[k][v][w] (adj_partitions(s) x V x V floats, V = adj_joints(layout)): the weight
 * with which joint v feeds joint w in partition k. CIN_E_CONFIG for an unknown layout. */
int adj_build(const char *layout, adj_strategy s, float *a, cin_err *err);

#endif
