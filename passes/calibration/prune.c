/* SPDX-License-Identifier: MIT */
/*
 * step for the calibration-aware sparsifiers (SPEC 12):
 *
 * Before:   W_mask = previous mask, W = the weight
 * After:    wanda:     W_mask = per-row lowest |W| * ||X_j||_2 pruned
 *           sparsegpt: W_mask = OBS choice, W = W reconstructed (pruned +0.0)
 *
 * Conditions: the model is prepared with sparsifier wanda or sparsegpt;
 * options.calibration names the calibration inputs; ONNX Runtime loads.
 * "sequential": true prunes wave by wave (each wave's statistics come from
 * the model with the earlier waves pruned); "allocate": "sensitivity"
 * chooses per-group levels (see allocate.c) before pruning.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "calibration/allocate.h"
#include "calibration/calibration.h"
#include "error.h"
#include "masks/masks.h"

int opass_group_pattern(const struct opass_group *g, double level, struct opass_prune_pattern *ret)
{
	*ret = (struct opass_prune_pattern){ .sparsity_level = level, .n = 0, .m = 1 };
	if (g->args.block_cols > 1) {
		ret->n = g->args.zeros_per_block;
		ret->m = g->args.block_cols;
	}
	return opass_prune_pattern_check(ret);
}

int opass_group_prune_values(const struct opass_group *g, struct opass_site *s,
			     enum opass_sparsifier kind, double level, float *w, uint8_t *mask)
{
	size_t rows = (size_t)g->map.rows / s->n_groups, cols = (size_t)g->map.cols, d = s->dim;
	struct opass_sparsegpt_args a = { .blocksize = (size_t)g->args.blocksize };
	const struct opass_sparsegpt_factor *f = NULL;
	int r = opass_group_pattern(g, level, &a.pattern);

	if (r == 0 && kind == OPASS_SPARSIFIER_SPARSEGPT)
		r = opass_site_factors(s, g->args.percdamp, &f);
	for (size_t k = 0; r == 0 && k < s->n_groups; k++) {
		float *wk = w + k * rows * cols;
		uint8_t *mk = mask + k * rows * cols;

		if (kind == OPASS_SPARSIFIER_WANDA)
			r = opass_wanda_mask(wk, rows, cols, s->stats.sq + k * d, &a.pattern, mk);
		else
			r = opass_sparsegpt_prune(wk, rows, cols, &f[k], &a, mk);
	}
	return r;
}

static int group_prune(struct opass_group *g, struct opass_site *s, enum opass_sparsifier kind,
		       double level, struct onnxpass_error *err)
{
	size_t n = (size_t)(g->map.rows * g->map.cols);
	float *w = malloc((n ? n : 1) * sizeof(*w)), *scratch = malloc((n ? n : 1) * sizeof(*w));
	uint8_t *mask = malloc(n ? n : 1);
	int r = w && scratch && mask ? 0 : -ENOMEM;

	if (r == 0) {
		opass_group_read_masked_f32(g, w, scratch);
		r = opass_group_prune_values(g, s, kind, level, w, mask);
	}
	if (r == 0 && kind == OPASS_SPARSIFIER_SPARSEGPT)
		opass_group_write_weight_f32(g, w);
	if (r == 0)
		opass_group_write_mask(g, mask, (uint8_t *)scratch);
	free(w);
	free(scratch);
	free(mask);
	if (r == -EDOM)
		return opass_error(err, r, "group '%s': the Hessian stays singular after dampening", g->name);
	return r < 0 ? opass_error(err, r, "group '%s': %s", g->name, strerror(-r)) : 0;
}

/* Mark the sites of one wave's groups (all when wave is -1) active. */
static void sites_activate(struct opass_sites *sites, size_t n_groups, long wave)
{
	for (size_t i = 0; i < sites->n; i++)
		sites->items[i].active = false;
	for (size_t i = 0; i < n_groups; i++)
		if (wave < 0 || sites->wave[i] == (unsigned)wave)
			sites->items[sites->of_group[i]].active = true;
}

static bool in_wave(const struct opass_sites *sites, size_t i, long wave)
{
	return wave < 0 || sites->wave[i] == (unsigned)wave;
}

/* Prune the wave's groups; a site's statistics and factors are dropped
 * after its last group, so that they do not pile up. */
static int wave_prune(struct opass_state *state, struct opass_sites *sites, long wave,
		      const double *levels, struct onnxpass_error *err)
{
	size_t *last = calloc(sites->n + 1, sizeof(*last));
	int r = last ? 0 : opass_error(err, -ENOMEM, "out of memory");

	for (size_t i = 0; r == 0 && i < state->n_groups; i++)
		if (in_wave(sites, i, wave))
			last[sites->of_group[i]] = i;
	for (size_t i = 0; r == 0 && i < state->n_groups; i++) {
		struct opass_site *s = &sites->items[sites->of_group[i]];

		if (!in_wave(sites, i, wave))
			continue;
		r = group_prune(&state->groups[i], s, state->sparsifier, levels[i], err);
		opass_state_release_weight(state, i);
		if (last[sites->of_group[i]] == i)
			opass_site_reset(s);
	}
	free(last);
	return r;
}

static bool state_flag(const struct opass_state *state, const struct opass_config *config,
		       const char *key, const char *value)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(config->root, key);

	if (!v || cJSON_IsNull(v))
		v = cJSON_GetObjectItemCaseSensitive(state->root, key);
	return value ? cJSON_IsString(v) && strcmp(v->valuestring, value) == 0 : cJSON_IsTrue(v);
}

int opass_calibrated_step(struct onnxpass_model *model, struct opass_state *state,
			  const struct opass_config *config, double *levels,
			  struct onnxpass_error *err)
{
	struct opass_sites sites = { 0 };
	bool allocate = state_flag(state, config, "allocate", "sensitivity");
	bool sequential = state_flag(state, config, "sequential", NULL);
	struct opass_collect how = {
		.model = model,
		.state = state,
		.calibration = opass_json_string(config->options, "calibration"),
		.full = allocate || state->sparsifier == OPASS_SPARSIFIER_SPARSEGPT,
	};
	int r = opass_config_threads(config, &how.threads, err);

	if (r == 0)
		r = opass_sites_find(model->proto, state, &sites, err);
	/* one run for all groups: to allocate, and to prune when not sequential */
	if (r == 0 && (allocate || !sequential)) {
		sites_activate(&sites, state->n_groups, -1);
		r = opass_sites_collect(&sites, &how, err);
	}
	if (r == 0 && allocate)
		r = opass_allocate_sensitivity(state, &sites, &how, levels, err);
	if (r == 0 && !sequential)
		r = wave_prune(state, &sites, -1, levels, err);
	for (unsigned w = 0; r == 0 && sequential && w < sites.n_waves; w++) {
		sites_activate(&sites, state->n_groups, (long)w);
		r = opass_sites_collect(&sites, &how, err);
		if (r == 0)
			r = wave_prune(state, &sites, (long)w, levels, err);
	}
	opass_sites_fini(&sites);
	return r;
}
