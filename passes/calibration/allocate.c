/* SPDX-License-Identifier: MIT */
/* Sensitivity allocation of per-group levels (see allocate.h). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calibration/allocate.h"
#include "error.h"
#include "tensor.h"

static const double candidates[] = { 0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95 };
#define N_CAND (sizeof(candidates) / sizeof(candidates[0]))

/* The model's output error with group g pruned alone at each candidate
 * level (weight put back after each). */
static int group_errors(struct opass_group *g, struct opass_site *s, enum opass_sparsifier kind,
			struct opass_eval *ev, double *e, struct onnxpass_error *err)
{
	size_t n = (size_t)(g->map.rows * g->map.cols);
	float *w = malloc(n * sizeof(*w)), *p = malloc(n * sizeof(*p));
	uint8_t *mask = malloc(n);
	struct opass_tensor_backup backup = { 0 };
	int r = w && p && mask ? opass_tensor_backup(g->weight.tensor, &backup) : -ENOMEM;

	if (r < 0)
		opass_error(err, r, "out of memory");
	else
		opass_group_read_masked_f32(g, w, p);
	e[0] = 0;
	for (size_t c = 1; r == 0 && c < N_CAND; c++) {
		memcpy(p, w, n * sizeof(*p));
		r = opass_group_prune_values(g, s, kind, candidates[c], p, mask);
		if (r < 0) {
			opass_error(err, r, "group '%s': sensitivity: %s", g->name, strerror(-r));
			break;
		}
		for (size_t i = 0; i < n; i++)
			p[i] = mask[i] ? p[i] : 0.0f;
		opass_group_write_weight_f32(g, p);
		r = opass_eval_error(ev, &e[c], err);
		opass_tensor_restore(g->weight.tensor, &backup);
	}
	opass_tensor_backup_fini(&backup);
	free(w);
	free(p);
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
static int choose(const double *e, const double *sizes, size_t n, double target, double *levels)
{
	size_t *at = calloc(n + 1, sizeof(*at));
	double total = 0;

	if (!at)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (sizes[i] > 0)
			levels[i] = 0;
	while (total < target) {
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
	return 0;
}

int opass_allocate_sensitivity(struct opass_state *state, struct opass_sites *sites,
			       const struct opass_collect *how, double *levels,
			       struct onnxpass_error *err)
{
	size_t n = state->n_groups;
	double *e = calloc(n * N_CAND + 1, sizeof(*e)), *sizes = calloc(n + 1, sizeof(*sizes));
	double target = 0, all = 0;
	struct opass_eval *ev = NULL;
	int r = e && sizes ? opass_eval_open(how, &ev, err) : opass_error(err, -ENOMEM, "out of memory");

	for (size_t i = 0; r == 0 && i < n; i++) {
		struct opass_group *g = &state->groups[i];

		if (g->args.block_cols > 1)
			continue; /* N:M: the level is the pattern's */
		sizes[i] = (double)g->map.rows * (double)g->map.cols;
		target += sizes[i] * levels[i];
		all += sizes[i];
		r = group_errors(g, &sites->items[sites->of_group[i]], state->sparsifier, ev,
				 e + i * N_CAND, err);
	}
	opass_eval_free(ev);
	/* beyond the last candidate everywhere: keep the uniform levels */
	if (r == 0 && all > 0 && target <= all * candidates[N_CAND - 1] &&
	    choose(e, sizes, n, target, levels) < 0)
		r = opass_error(err, -ENOMEM, "out of memory");
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
