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
/* N:M: a layer is dense or all N:M (its level is the fraction of its blocks
 * pruned, as torch's; the allocation takes whole layers) */
static const double nm_candidates[] = { 0, 1 };
#define N_NM_CAND (sizeof(nm_candidates) / sizeof(nm_candidates[0]))

struct cands {
	const double *level;
	size_t n;
};

static struct cands group_cands(const struct opass_group *g)
{
	if (g->args.block_cols > 1)
		return (struct cands){ nm_candidates, N_NM_CAND };
	return (struct cands){ candidates, N_CAND };
}

/* The model's output error with group g pruned alone at each candidate
 * level (weight put back after each). */
static int group_errors(struct opass_group *g, struct opass_site *s, enum opass_sparsifier kind,
			struct opass_eval *ev, double *e, struct onnxpass_error *err)
{
	size_t n = (size_t)(g->map.rows * g->map.cols);
	float *w = malloc(n * sizeof(*w)), *p = malloc(n * sizeof(*p));
	uint8_t *mask = malloc(n);
	struct opass_tensor_backup backup = { 0 };
	const struct cands cand = group_cands(g);
	int r = w && p && mask ? opass_tensor_backup(g->weight.tensor, &backup) : -ENOMEM;

	if (r < 0)
		opass_error(err, r, "out of memory");
	else
		opass_group_read_masked_f32(g, w, p);
	e[0] = 0;
	for (size_t c = 1; r == 0 && c < cand.n; c++) {
		memcpy(p, w, n * sizeof(*p));
		r = opass_group_prune_values(g, s, kind, cand.level[c], p, mask);
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
static size_t hull_next(const double *e, struct cands cand, size_t from, double *ret_slope)
{
	size_t best = N_CAND;
	double best_slope = INFINITY;

	for (size_t c = from + 1; c < cand.n; c++) {
		double slope = (e[c] - e[from]) / (cand.level[c] - cand.level[from]);

		if (slope < best_slope) {
			best_slope = slope;
			best = c;
		}
	}
	*ret_slope = best_slope;
	return best;
}

/* Greedy choice along the hulls; sizes[i] 0 for groups that keep their level.
 * The last step is interpolated to meet the target exactly, or for an N:M
 * group (whole layers) taken whole. */
static int choose(const double *e, const struct cands *cand, const double *sizes, size_t n,
		  double target, double *levels)
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
			double slope = INFINITY;
			size_t c = sizes[i] > 0 ? hull_next(e + i * N_CAND, cand[i], at[i], &slope) : N_CAND;

			if (c < cand[i].n && slope / sizes[i] < best_slope) {
				best_slope = slope / sizes[i];
				best = i;
				next = c;
			}
		}
		if (best == n)
			break;
		gain = sizes[best] * (cand[best].level[next] - cand[best].level[at[best]]);

		if (total + gain >= target && cand[best].n == N_CAND) {
			levels[best] = cand[best].level[at[best]] + (target - total) / sizes[best];
			break;
		}
		total += gain;
		at[best] = next;
		levels[best] = cand[best].level[next];
	}
	free(at);
	return 0;
}

/* Weights a group prunes at level 1: all of them, or N of every M. */
static double group_size(const struct opass_group *g)
{
	double size = (double)g->map.rows * (double)g->map.cols;

	if (g->args.block_cols > 1)
		size *= (double)g->args.zeros_per_block / (double)g->args.block_cols;
	return size;
}

int opass_allocate_sensitivity(struct opass_state *state, struct opass_sites *sites,
			       const struct opass_collect *how, double *levels,
			       struct onnxpass_error *err)
{
	size_t n = state->n_groups;
	double *e = calloc(n * N_CAND + 1, sizeof(*e)), *sizes = calloc(n + 1, sizeof(*sizes));
	struct cands *cand = calloc(n + 1, sizeof(*cand));
	double target = 0, most = 0;
	struct opass_eval *ev = NULL;
	int r = e && sizes && cand ? opass_eval_open(how, &ev, err)
				   : opass_error(err, -ENOMEM, "out of memory");

	for (size_t i = 0; r == 0 && i < n; i++) {
		struct opass_group *g = &state->groups[i];

		cand[i] = group_cands(g);
		sizes[i] = group_size(g);
		target += sizes[i] * levels[i];
		most += sizes[i] * cand[i].level[cand[i].n - 1];
		r = group_errors(g, &sites->items[sites->of_group[i]], state->sparsifier, ev,
				 e + i * N_CAND, err);
	}
	opass_eval_free(ev);
	/* beyond the last candidates everywhere: keep the uniform levels */
	if (r == 0 && most > 0 && target <= most &&
	    choose(e, cand, sizes, n, target, levels) < 0)
		r = opass_error(err, -ENOMEM, "out of memory");
	for (size_t i = 0; r == 0 && i < n; i++) {
		cJSON_DeleteItemFromObjectCaseSensitive(state->groups[i].json, "allocated_sparsity_level");
		cJSON_AddNumberToObject(state->groups[i].json, "allocated_sparsity_level", levels[i]);
	}
	free(cand);
	free(e);
	free(sizes);
	return r;
}
