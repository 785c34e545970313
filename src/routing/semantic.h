/* semantic.h — the semantic index: each route's example vectors, and the
 * cosine comparison of a query vector with them.
 *
 * It works on any embedder's vectors (the builtin one or a provider's
 * 768- or 1536-float output): the dimension is fixed when the index is
 * created. Vectors are copied and L2-normalised on the way in, so callers
 * need not normalise. Build it once per config (new, add..., finish), then
 * query it from any number of threads: queries only read. */
#ifndef UMB_SEMANTIC_H
#define UMB_SEMANTIC_H

#include "core/core.h"
#include "config/config.h" /* enum sem_comparison */

struct sem_index;

/** The best route for a query and the runner-up (for a margin). A route
 * index is -1 when no route scored (no route has an example, or the query
 * vector is zero or not finite). Scores are cosines in [-1, 1]. */
struct sem_result {
	int route;
	float score;
	int second;
	float second_score;
};

/** An empty index for routes 0..n_routes-1 and vectors of dim floats.
 * Never returns NULL (aborts on OOM); dim must be > 0. */
struct sem_index *sem_index_new(size_t n_routes, size_t dim);

/** Add one example vector (dim floats, copied and normalised) to a route.
 * UMB_ERR if the route is out of range, the index is finished, or the
 * vector is zero or holds a NaN/inf (the example is then skipped). */
int sem_index_add(struct sem_index *ix, size_t route, const float *vec);

/** Compute the route centroids (normalised mean of the normalised
 * examples). Call once after the last add; queries need it. */
void sem_index_finish(struct sem_index *ix);

/** Score q (dim floats, any norm) against every route that has examples:
 * SEM_CENTROID = cosine to the centroid, SEM_MAX = best single example,
 * SEM_AVERAGE = mean cosine over the examples. Ties go to the lower route
 * index. A route without examples never wins or comes second. */
void sem_index_query(const struct sem_index *ix, enum sem_comparison cmp,
		     const float *q, struct sem_result *out);

/** Examples held for a route (0 when out of range). */
size_t sem_index_count(const struct sem_index *ix, size_t route);

/** Free the index (NULL is fine). */
void sem_index_free(struct sem_index *ix);

#endif
