/* SPDX-License-Identifier: MIT */
/*
 * step: torch.ao.pruning BaseSparsifier.step() -> update_mask() per group,
 * with the sparsity scheduler (CubicSL or a linear ramp) applied first.
 *
 * Before:   W_mask = previous mask (all true right after prepare)
 * After:    W_mask = weight_norm / nearly_diagonal mask computed from W * W_mask
 *
 * Conditions: the model is prepared; enable_mask_update is true (options
 * "freeze"/"unfreeze" change it); options "sparsity_level" overrides the
 * level for this one step; the step count is incremented per update.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "masks/masks.h"
#include "parallel.h"
#include "passes.h"
#include "calibration/calibration.h"

/* torch CubicSL.sparsity_compute_fn (Zhu & Gupta) and a linear ramp. */
static int schedule_level(const cJSON *schedule, double s_f, double t, double *ret_level,
			  struct onnxpass_error *err)
{
	const char *type = opass_json_string(schedule, "type");
	double s_0 = opass_json_number(schedule, "init_sl", 0.0);
	double t_0 = opass_json_number(schedule, "init_t", 0.0);
	double dt = opass_json_number(schedule, "delta_t", 10.0);
	double n = opass_json_number(schedule, "total_t", 100.0);
	double s, frac;

	if (!type || (strcmp(type, "cubic") != 0 && strcmp(type, "linear") != 0))
		return opass_error_config(err, "schedule: 'type' must be \"cubic\" or \"linear\"");
	if (opass_json_bool(schedule, "initially_zero", false) && t < t_0) {
		*ret_level = 0.0;
		return 0;
	}
	if (strcmp(type, "cubic") == 0) {
		if (dt * n == 0.0)
			return opass_error_config(err, "schedule: delta_t * total_t must not be 0");
		s = s_f + (s_0 - s_f) * pow(1.0 - (t - t_0) / (dt * n), 3);
		*ret_level = fmax(s_0, fmin(s_f, s));
		return 0;
	}
	if (n <= 0.0)
		return opass_error_config(err, "schedule: total_t must be > 0");
	frac = fmin(1.0, fmax(0.0, (t - t_0) / n));
	*ret_level = s_0 + (s_f - s_0) * frac;
	return 0;
}

/* Buffers one worker thread reuses across groups (sized in bytes: float
 * weights need half of what double weights do). */
struct scratch {
	void *values;
	void *stored;
	uint8_t *mask;
	size_t cap;   /* bytes of values and of stored */
	size_t cap_mask;
};

static int scratch_reserve(struct scratch *s, size_t n, size_t esize)
{
	if (n * esize > s->cap) {
		free(s->values);
		free(s->stored);
		s->values = malloc(n * esize);
		s->stored = malloc(n * esize);
		s->cap = s->values && s->stored ? n * esize : 0;
	}
	if (n > s->cap_mask) {
		free(s->mask);
		s->mask = malloc(n);
		s->cap_mask = s->mask ? n : 0;
	}
	return s->cap && s->cap_mask ? 0 : -ENOMEM;
}

/* The new mask of g into s->mask: 1 when it is in storage order, 0 in view
 * order, or a negative errno. */
static int group_mask(struct opass_group *g, enum opass_sparsifier kind, double level,
		      struct scratch *s)
{
	size_t rows = (size_t)g->map.rows, cols = (size_t)g->map.cols;
	struct opass_weight_norm_args wn = {
		.sparsity_level = level,
		.block_rows = g->args.block_rows,
		.block_cols = g->args.block_cols,
		.zeros_per_block = g->args.zeros_per_block,
		.norm = g->args.norm,
	};
	const float *w;
	int r;

	if (kind == OPASS_SPARSIFIER_NEARLY_DIAGONAL)
		return opass_nearly_diagonal_mask(rows, cols, g->args.nearliness, s->mask);
	if (g->weight.tensor->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE) {
		opass_group_read_masked(g, s->values, s->stored);
		return opass_weight_norm_mask(s->values, rows, cols, true, &wn, s->mask);
	}
	if (!opass_group_mask_in_storage(g)) {
		/* stored is free again once the view is gathered */
		opass_group_read_masked_f32(g, s->values, s->stored);
		return opass_weight_norm_mask_f32_with(s->values, rows, cols, &wn, s->stored, s->mask);
	}
	/* no transposes: the mask is computed on the stored weight */
	w = opass_group_read_stored_f32(g, s->values);
	r = opass_weight_norm_mask_f32_transposed(w, rows, cols, &wn, s->values, s->stored, s->mask);
	return r < 0 ? r : 1;
}

static int group_update(struct opass_group *g, enum opass_sparsifier kind, double level,
			struct scratch *s, struct onnxpass_error *err)
{
	size_t n = (size_t)g->map.rows * (size_t)g->map.cols;
	bool wide = g->weight.tensor->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
	int r;

	if (scratch_reserve(s, n > 0 ? n : 1, wide ? 8 : 4) < 0)
		return opass_error(err, -ENOMEM, "out of memory");
	r = group_mask(g, kind, level, s);
	if (r == 1)
		opass_group_write_stored_mask(g, s->mask);
	else if (r == 0)
		opass_group_write_mask(g, s->mask, s->values); /* values are consumed */
	else if (!err->code)
		opass_error(err, r, "group '%s': mask update failed (%s)", g->name, strerror(-r));
	return r < 0 ? r : 0;
}

/* One mask update per group, groups spread over the cores. */
struct step_job {
	struct opass_state *state;
	const double *levels;
	struct onnxpass_error *errors;
	struct scratch scratch[OPASS_MAX_THREADS];
};

static int step_one(size_t i, unsigned thread, void *userdata)
{
	struct step_job *job = userdata;
	int r = group_update(&job->state->groups[i], job->state->sparsifier, job->levels[i],
			     &job->scratch[thread], &job->errors[i]);

	opass_state_release_weight(job->state, i);
	return r;
}

static int step_levels(struct opass_state *state, const struct opass_config *config, double t,
		       struct onnxpass_error *err)
{
	const cJSON *override = opass_config_option(config, "sparsity_level");
	const cJSON *schedule = cJSON_GetObjectItemCaseSensitive(state->root, "schedule");
	size_t n = state->n_groups;
	struct step_job *job = calloc(1, sizeof(*job));
	unsigned threads = 0;
	double *levels = calloc(n + 1, sizeof(*levels));
	int r = 0;

	if (!job || !levels || !(job->errors = calloc(n + 1, sizeof(*job->errors))))
		r = opass_error(err, -ENOMEM, "out of memory");
	else if (override && (!cJSON_IsNumber(override) || override->valuedouble < 0 ||
			      override->valuedouble > 1))
		r = opass_error_usage(err, "options: sparsity_level must be a number in [0, 1]");
	for (size_t i = 0; r == 0 && i < n; i++) {
		levels[i] = state->groups[i].args.sparsity_level;
		if (override)
			levels[i] = override->valuedouble;
		else if (cJSON_IsObject(schedule))
			r = schedule_level(schedule, state->groups[i].args.sparsity_level, t, &levels[i], err);
	}
	if (r == 0)
		r = opass_config_threads(config, &threads, err);
	if (r == 0 && opass_sparsifier_calibrated(state->sparsifier)) {
		r = state->model ? opass_calibrated_step(state->model, state, config, levels, err) :
				   opass_error_usage(err, "step: no model to calibrate on");
	} else if (r == 0) {
		job->state = state;
		job->levels = levels;
		r = opass_parallel_for(n, threads, step_one, job);
	}
	for (size_t i = 0; r < 0 && err && job && job->errors && i < n; i++)
		if (job->errors[i].code) {
			*err = job->errors[i];
			break;
		}
	for (size_t i = 0; r == 0 && i < n; i++) {
		if (state->sparsifier == OPASS_SPARSIFIER_NEARLY_DIAGONAL)
			continue;
		cJSON_DeleteItemFromObjectCaseSensitive(state->groups[i].json, "current_sparsity_level");
		cJSON_AddNumberToObject(state->groups[i].json, "current_sparsity_level", levels[i]);
	}
	for (size_t k = 0; job && k < OPASS_MAX_THREADS; k++) {
		free(job->scratch[k].values);
		free(job->scratch[k].stored);
		free(job->scratch[k].mask);
	}
	if (job)
		free(job->errors);
	free(job);
	free(levels);
	return r;
}

static void state_set_number(cJSON *root, const char *key, double value)
{
	cJSON_DeleteItemFromObjectCaseSensitive(root, key);
	cJSON_AddNumberToObject(root, key, value);
}

static void state_set_bool(cJSON *root, const char *key, bool value)
{
	cJSON_DeleteItemFromObjectCaseSensitive(root, key);
	cJSON_AddBoolToObject(root, key, value);
}

int opass_step_apply(Onnx__ModelProto *model, struct opass_state *state,
		     const struct opass_config *config, struct onnxpass_error *err)
{
	double t;
	int r;

	if (opass_json_bool(config->options, "freeze", false))
		state_set_bool(state->root, "enable_mask_update", false);
	else if (opass_json_bool(config->options, "unfreeze", false))
		state_set_bool(state->root, "enable_mask_update", true);
	if (opass_json_bool(config->options, "freeze", false) ||
	    !opass_json_bool(state->root, "enable_mask_update", true))
		return opass_state_store(model, state, err);
	if (cJSON_IsObject(opass_config_option(config, "schedule"))) {
		cJSON_DeleteItemFromObjectCaseSensitive(state->root, "schedule");
		cJSON_AddItemToObject(state->root, "schedule",
				      cJSON_Duplicate(opass_config_option(config, "schedule"), true));
	}
	t = opass_json_number(state->root, "step_count", 0);
	r = step_levels(state, config, t, err);
	if (r == 0) {
		state_set_number(state->root, "step_count", t + 1);
		r = opass_state_store(model, state, err);
	}
	return r;
}

int opass_pass_step(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err)
{
	return opass_state_run(model, ctx, opass_step_apply, err);
}
