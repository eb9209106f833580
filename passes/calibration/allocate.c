/* SPDX-License-Identifier: MIT */
/* Sensitivity allocation of per-group levels (see allocate.h). */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calibration/allocate.h"
#include "error.h"

static const double candidates[] = { 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95 };
#define N_CAND (sizeof(candidates) / sizeof(candidates[0]))

/* sum over Conv groups of tr(A H A^T), A = a[rows][d] per group; h is
 * scratch for one full H, t for rows * d. */
static double quad_form(const float *a, const struct opass_site *s, size_t rows, float *h, float *t)
{
	size_t d = s->dim;
	double sum = 0;

	for (size_t k = 0; k < s->n_groups; k++) {
		const float *ak = a + k * rows * d;

		opass_stats_unpack(&s->stats, k, h);
		cblas_ssymm(CblasRowMajor, CblasRight, CblasUpper, (int)rows, (int)d, 1.0f,
			    h, (int)d, ak, (int)d, 0.0f, t, (int)d);
		for (size_t i = 0; i < rows * d; i++)
			sum += (double)t[i] * (double)ak[i];
	}
	return sum;
}

/* Relative output error of group g at every candidate level into e[]. */
static int group_errors(const struct opass_group *g, struct opass_site *s,
			enum opass_sparsifier kind, double *e)
{
	size_t n = (size_t)(g->map.rows * g->map.cols), rows = (size_t)g->map.rows / s->n_groups;
	float *w = malloc(n * sizeof(*w)), *p = malloc(n * sizeof(*p)), *t = malloc(n * sizeof(*t));
	float *h = malloc(s->dim * s->dim * sizeof(*h));
	uint8_t *mask = malloc(n);
	double base = 0;
	int r = w && p && t && h && mask ? 0 : -ENOMEM;

	if (r == 0) {
		opass_group_read_masked_f32(g, w, t);
		base = quad_form(w, s, rows, h, t);
	}
	for (size_t c = 0; r == 0 && c < N_CAND; c++) {
		memcpy(p, w, n * sizeof(*p));
		r = opass_group_prune_values(g, s, kind, candidates[c], p, mask);
		for (size_t i = 0; r == 0 && i < n; i++)
			p[i] = w[i] - (mask[i] ? p[i] : 0.0f);
		if (r == 0)
			e[c] = base > 0 ? quad_form(p, s, rows, h, t) / base : 0;
	}
	free(h);
	free(w);
	free(p);
	free(t);
	free(mask);
	return r;
}

/* The next point of group i's lower convex hull after candidate `from`:
 * the one with the least error added per pruned weight. */
static size_t hull_next(const double *e, size_t from, double *ret_slope)
{
	size_t best = N_CAND;
	double best_slope = INFINITY;

	for (size_t c = from + 1; c < N_CAND; c++) {
		double slope = (e[c] - e[from]) / (candidates[c] - candidates[from]);

		if (slope < best_slope) {
			best_slope = slope;
			best = c;
		}
	}
	*ret_slope = best_slope;
	return best;
}

/* Greedy choice along the hulls; sizes[i] 0 for groups that keep their level. */
static void choose(const double *e, const double *sizes, size_t n, double target, double *levels)
{
	size_t *at = calloc(n + 1, sizeof(*at));
	double total = 0;

	for (size_t i = 0; at && i < n; i++)
		if (sizes[i] > 0)
			levels[i] = 0;
	while (at && total < target) {
		size_t best = n, next = 0;
		double best_slope = INFINITY, gain;

		/* error added per pruned weight */
		for (size_t i = 0; i < n; i++) {
			double slope;
			size_t c = sizes[i] > 0 ? hull_next(e + i * N_CAND, at[i], &slope) : N_CAND;

			if (c < N_CAND && slope / sizes[i] < best_slope) {
				best_slope = slope / sizes[i];
				best = i;
				next = c;
			}
		}
		if (best == n)
			break;
		gain = sizes[best] * (candidates[next] - candidates[at[best]]);

		if (total + gain >= target) {
			levels[best] = candidates[at[best]] + (target - total) / sizes[best];
			break;
		}
		total += gain;
		at[best] = next;
		levels[best] = candidates[next];
	}
	free(at);
}

int opass_allocate_sensitivity(struct opass_state *state, struct opass_sites *sites,
			       double *levels, struct onnxpass_error *err)
{
	size_t n = state->n_groups;
	double *e = calloc(n * N_CAND + 1, sizeof(*e)), *sizes = calloc(n + 1, sizeof(*sizes));
	double target = 0, all = 0;
	int r = e && sizes ? 0 : opass_error(err, -ENOMEM, "out of memory");

	for (size_t i = 0; r == 0 && i < n; i++) {
		const struct opass_group *g = &state->groups[i];

		if (g->args.block_cols > 1)
			continue; /* N:M: the level is the pattern's */
		sizes[i] = (double)g->map.rows * (double)g->map.cols;
		target += sizes[i] * levels[i];
		all += sizes[i];
		r = group_errors(g, &sites->items[sites->of_group[i]], state->sparsifier, e + i * N_CAND);
		if (r < 0)
			opass_error(err, r, "group '%s': sensitivity: %s", g->name, strerror(-r));
	}
	/* beyond the last candidate everywhere: keep the uniform levels */
	if (r == 0 && all > 0 && target <= all * candidates[N_CAND - 1])
		choose(e, sizes, n, target, levels);
	for (size_t i = 0; r == 0 && i < n; i++) {
		if (sizes[i] == 0)
			continue;
		cJSON_DeleteItemFromObjectCaseSensitive(state->groups[i].json, "allocated_sparsity_level");
		cJSON_AddNumberToObject(state->groups[i].json, "allocated_sparsity_level", levels[i]);
	}
	free(e);
	free(sizes);
	return r;
}
