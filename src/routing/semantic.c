/* semantic.c — the semantic index (see semantic.h).
 *
 * Examples are kept per route in one growing array of unit vectors
 * (route-major order is not needed: each example carries its route).
 * finish() sums each route's examples into its centroid and normalises
 * it. A query normalises its own copy-free view by dividing the dot
 * products by the query's norm, so it allocates nothing. */
#include "routing/semantic.h"

#include <math.h>
#include <stdlib.h>

struct sem_index {
	size_t n_routes, dim;
	float *vecs;       /* n_vecs * dim, unit vectors */
	uint32_t *owner;   /* route of each vector */
	size_t n_vecs, cap;
	size_t *count;     /* examples per route */
	float *centroid;   /* n_routes * dim; zero for a route without examples */
	bool finished;
};

struct sem_index *sem_index_new(size_t n_routes, size_t dim)
{
	struct sem_index *ix = umb_calloc(1, sizeof(*ix));

	UMB_BUG_ON(dim == 0);
	ix->n_routes = n_routes;
	ix->dim = dim;
	ix->count = umb_calloc(n_routes ? n_routes : 1, sizeof(*ix->count));
	ix->centroid = umb_calloc(n_routes ? n_routes * dim : 1, sizeof(float));
	return ix;
}

void sem_index_free(struct sem_index *ix)
{
	if (!ix)
		return;
	free(ix->vecs);
	free(ix->owner);
	free(ix->count);
	free(ix->centroid);
	free(ix);
}

/* Dot product in double: example counts are small, dims are not. */
static double dot(const float *a, const float *b, size_t n)
{
	double s = 0;

	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

int sem_index_add(struct sem_index *ix, size_t route, const float *vec)
{
	double norm;
	float *dst;

	if (route >= ix->n_routes || ix->finished)
		return UMB_ERR;
	norm = sqrt(dot(vec, vec, ix->dim));
	if (!(norm > 0) || !isfinite(norm))
		return UMB_ERR;
	if (ix->n_vecs == ix->cap) {
		ix->cap = ix->cap ? ix->cap * 2 : 16;
		ix->vecs = umb_realloc(ix->vecs, ix->cap * ix->dim * sizeof(float));
		ix->owner = umb_realloc(ix->owner, ix->cap * sizeof(*ix->owner));
	}
	dst = ix->vecs + ix->n_vecs * ix->dim;
	for (size_t i = 0; i < ix->dim; i++)
		dst[i] = (float)(vec[i] / norm);
	ix->owner[ix->n_vecs++] = (uint32_t)route;
	ix->count[route]++;
	return UMB_OK;
}

void sem_index_finish(struct sem_index *ix)
{
	if (ix->finished)
		return;
	for (size_t v = 0; v < ix->n_vecs; v++) {
		float *c = ix->centroid + (size_t)ix->owner[v] * ix->dim;
		const float *x = ix->vecs + v * ix->dim;

		for (size_t i = 0; i < ix->dim; i++)
			c[i] += x[i];
	}
	for (size_t r = 0; r < ix->n_routes; r++) {
		float *c = ix->centroid + r * ix->dim;
		double norm = sqrt(dot(c, c, ix->dim));

		/* opposite examples may cancel out: the centroid stays zero
		 * and the route scores 0 */
		if (norm > 0)
			for (size_t i = 0; i < ix->dim; i++)
				c[i] = (float)(c[i] / norm);
	}
	ix->finished = true;
}

size_t sem_index_count(const struct sem_index *ix, size_t route)
{
	return route < ix->n_routes ? ix->count[route] : 0;
}

/* Keep the best two (score, route) pairs; ties keep the earlier route. */
static void rank(struct sem_result *out, int route, double score)
{
	if (out->route < 0 || score > out->score) {
		out->second = out->route;
		out->second_score = out->score;
		out->route = route;
		out->score = (float)score;
	} else if (out->second < 0 || score > out->second_score) {
		out->second = route;
		out->second_score = (float)score;
	}
}

void sem_index_query(const struct sem_index *ix, enum sem_comparison cmp,
		     const float *q, struct sem_result *out)
{
	double qn = sqrt(dot(q, q, ix->dim));

	out->route = out->second = -1;
	out->score = out->second_score = 0;
	UMB_BUG_ON(!ix->finished);
	if (!(qn > 0) || !isfinite(qn))
		return;
	for (size_t r = 0; r < ix->n_routes; r++) {
		double s = 0;

		if (ix->count[r] == 0)
			continue;
		if (cmp == SEM_CENTROID) {
			s = dot(q, ix->centroid + r * ix->dim, ix->dim) / qn;
		} else {
			bool first = true;

			for (size_t v = 0; v < ix->n_vecs; v++) {
				double c;

				if (ix->owner[v] != r)
					continue;
				c = dot(q, ix->vecs + v * ix->dim, ix->dim) / qn;
				if (cmp == SEM_MAX)
					s = first || c > s ? c : s;
				else
					s += c;
				first = false;
			}
			if (cmp == SEM_AVERAGE)
				s /= (double)ix->count[r];
		}
		rank(out, (int)r, s);
	}
}
