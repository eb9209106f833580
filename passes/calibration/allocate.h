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

/*
 * "allocate": "sensitivity". levels[i] holds group i's level on entry.
 * For every unstructured group, the relative output error
 * ||(W - W_s) X||^2 / ||W X||^2 = tr(dW H dW^T) / tr(W H W^T) is measured
 * at the candidate levels 0, 0.1, ..., 0.9, 0.95 with the state's
 * sparsifier; then levels are chosen that prune as many weights as the
 * entry levels did (sum of levels * sizes) with the least sum of errors:
 * greedily, cheapest error per pruned weight first along each group's lower
 * convex hull, the last step interpolated to meet the total exactly. N:M
 * groups keep their level. The chosen levels go into levels[] and into each
 * group's "allocated_sparsity_level".
 */
int opass_allocate_sensitivity(struct opass_state *state, struct opass_sites *sites,
			       double *levels, struct onnxpass_error *err);
