/* SPDX-License-Identifier: MIT */
/* Sensitivity allocation of per-group levels, and what it shares with
 * pruning (prune.c). */
#pragma once

#include "calibration/calibration.h"
#include "masks/masks.h"

/* The group's pattern at a level: unstructured, or its N:M. */
int opass_group_pattern(const struct opass_group *g, double level, struct opass_prune_pattern *ret);

/* Prune a view-order copy w of the group's weight with the site's
 * statistics (per Conv group); mask gets 1 where kept. */
int opass_group_prune_values(const struct opass_group *g, struct opass_site *s,
			     enum opass_sparsifier kind, double level, float *w, uint8_t *mask);

/* The model's output error against a reference (evaluate.c): the first
 * two calibration batches run on the model as it is at opass_eval_open and
 * as it is at each opass_eval_error, which returns the relative squared
 * error sum |y - y_ref|^2 / sum |y_ref|^2 over the float graph outputs. */
struct opass_eval;

int opass_eval_open(const struct opass_collect *how, struct opass_eval **ret_eval,
		    struct onnxpass_error *err);
int opass_eval_error(struct opass_eval *ev, double *ret_error, struct onnxpass_error *err);
struct opass_eval *opass_eval_free(struct opass_eval *ev);

/*
 * "allocate": "sensitivity". levels[i] holds group i's level on entry.
 * For every group, the model's output error (opass_eval) with that group
 * alone pruned by the state's sparsifier is measured at the candidate
 * levels: 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95 for an unstructured group, 1
 * (all of it N:M) for an N:M one. Then levels are chosen that prune as many
 * weights as the entry levels did (sum of levels * sizes; an N:M group's
 * size is its N of every M) with the least sum of errors: greedily,
 * cheapest error per pruned weight first along each group's lower convex
 * hull, the last step interpolated to meet the total exactly (an N:M
 * group's taken whole: its level is 0, dense, or 1). The chosen levels go
 * into levels[] and into each group's "allocated_sparsity_level". Costs
 * one session and two batches per group and candidate.
 */
int opass_allocate_sensitivity(struct opass_state *state, struct opass_sites *sites,
			       const struct opass_collect *how, double *levels,
			       struct onnxpass_error *err);
