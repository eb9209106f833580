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
 * the model with the earlier waves pruned), "sequential": N in N stages of
 * consecutive waves (a stage's statistics come from the model with the
 * earlier stages pruned: N runs over the calibration set instead of one per
 * wave); "allocate": "sensitivity"
 * chooses per-group levels (see allocate.c) before pruning.
 */
#include <errno.h>
#include <limits.h>
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

	/* N:M at level 0 (no block pruned, as torch's): the layer stays dense */
	if (g->args.block_cols > 1 && level <= 0)
		goto out;
	if (r == 0) {
		opass_group_read_masked_f32(g, w, scratch);
		r = opass_group_prune_values(g, s, kind, level, w, mask);
	}
	if (r == 0 && kind == OPASS_SPARSIFIER_SPARSEGPT) {
		opass_group_write_weight_f32(g, w);
		g->weight_masked = true;
	}
	if (r == 0)
		opass_group_write_mask(g, mask, (uint8_t *)scratch);
out:
	free(w);
	free(scratch);
	free(mask);
	if (r == -EDOM)
		return opass_error(err, r, "group '%s': the Hessian stays singular after dampening", g->name);
	return r < 0 ? opass_error(err, r, "group '%s': %s", g->name, strerror(-r)) : 0;
}

/*
 * The runs over the calibration set: run p collects the statistics of the
 * groups with pass[i] == p and prunes them. Sites go to the same run while
 * their statistics fit the budget (SparseGPT's H of every layer at once is
 * about 0.8x the weights of a BERT-sized model), so that pruning a large
 * model does not hold all of them at the same time. The runs change no
 * result: sequential runs go wave by wave (a wave's groups do not feed
 * each other); one-shot runs go from the last wave to the first, so that
 * every run sees the groups that feed it unpruned, as one run would.
 */
struct plan {
	unsigned *pass;      /* per group */
	unsigned n_passes;
};

/* Statistics of one run may take options.statistics_memory_mb MiB, by
 * default this share of the pruned weights' float bytes and at least
 * STATS_BUDGET_MIN. */
#define STATS_SHARE 0.5
#define STATS_BUDGET_MIN ((double)(64u << 20))

static double site_bytes(const struct opass_site *s, bool full)
{
	double d = (double)s->dim, per_group = full ? d * (d + 1) / 2 * sizeof(float) : d * sizeof(double);

	return per_group * (double)s->n_groups;
}

static int stats_budget(const struct opass_state *state, const struct opass_config *config,
			double *ret_budget, struct onnxpass_error *err)
{
	const cJSON *mb = opass_config_option(config, "statistics_memory_mb");
	double bytes = 0;

	if (mb && !(cJSON_IsNumber(mb) && mb->valuedouble >= 0))
		return opass_error_usage(err, "options: statistics_memory_mb must be a number >= 0");
	if (mb) {
		*ret_budget = mb->valuedouble * (1 << 20);
		return 0;
	}
	for (size_t i = 0; i < state->n_groups; i++)
		bytes += (double)state->groups[i].map.rows * (double)state->groups[i].map.cols * sizeof(float);
	*ret_budget = bytes * STATS_SHARE > STATS_BUDGET_MIN ? bytes * STATS_SHARE : STATS_BUDGET_MIN;
	return 0;
}

/* Site indices ordered by wave (counting sort), then by index. */
static size_t *sites_by_wave(const unsigned *site_wave, size_t n, unsigned n_waves)
{
	size_t *start = calloc((size_t)n_waves + 2, sizeof(*start)), *order = calloc(n + 1, sizeof(*order));

	if (!start || !order) {
		free(start);
		free(order);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		start[site_wave[i] + 1]++;
	for (unsigned w = 0; w < n_waves; w++)
		start[w + 1] += start[w];
	for (size_t i = 0; i < n; i++)
		order[start[site_wave[i]]++] = i;
	free(start);
	return order;
}

/* The sequential stage of a wave: waves are split into `stages` runs of
 * consecutive waves (SEQUENTIAL_EVERY_WAVE: one run per wave). */
#define SEQUENTIAL_EVERY_WAVE UINT_MAX

static unsigned wave_stage(unsigned wave, unsigned n_waves, unsigned stages)
{
	if (stages >= n_waves)
		return wave;
	return (unsigned)((uint64_t)wave * stages / n_waves);
}

/* Runs over the sites in order (ascending waves when sequential, else
 * descending); a new one starts when the budget is full, and at each stage
 * when sequential (stages > 0). */
static void plan_sites(const struct opass_sites *sites, const unsigned *site_wave,
		       const size_t *order, unsigned stages, bool full, double budget,
		       unsigned *site_pass, unsigned *ret_n_passes)
{
	unsigned n_passes = 0, n_waves = sites->n_waves;
	bool sequential = stages > 0;
	double used = 0;

	for (size_t k = 0; k < sites->n; k++) {
		size_t i = order[sequential ? k : sites->n - 1 - k], prev;
		double b = site_bytes(&sites->items[i], full);

		prev = k == 0 ? i : order[sequential ? k - 1 : sites->n - k];
		if (k == 0 || used + b > budget ||
		    (sequential && wave_stage(site_wave[i], n_waves, stages) !=
				   wave_stage(site_wave[prev], n_waves, stages))) {
			n_passes++;
			used = 0;
		}
		used += b;
		site_pass[i] = n_passes - 1;
	}
	*ret_n_passes = n_passes;
}

static int plan_make(const struct opass_state *state, const struct opass_sites *sites,
		     unsigned stages, bool full, double budget, struct plan *ret)
{
	unsigned *site_wave = calloc(sites->n + 1, sizeof(*site_wave));
	unsigned *site_pass = calloc(sites->n + 1, sizeof(*site_pass));
	unsigned *pass = calloc(state->n_groups + 1, sizeof(*pass)), n_passes = 0;
	size_t *order = NULL;
	int r = site_wave && site_pass && pass ? 0 : -ENOMEM;

	for (size_t i = 0; r == 0 && i < state->n_groups; i++)
		site_wave[sites->of_group[i]] = sites->wave[i];
	if (r == 0)
		order = sites_by_wave(site_wave, sites->n, sites->n_waves + 1);
	if (r == 0 && !order)
		r = -ENOMEM;
	if (r == 0)
		plan_sites(sites, site_wave, order, stages, full, budget, site_pass, &n_passes);
	for (size_t i = 0; r == 0 && i < state->n_groups; i++)
		pass[i] = site_pass[sites->of_group[i]];
	free(order);
	free(site_wave);
	free(site_pass);
	if (r < 0) {
		free(pass);
		return r;
	}
	*ret = (struct plan){ .pass = pass, .n_passes = n_passes };
	return 0;
}

/* Mark the sites of one run's groups (all when pass is -1) active. */
static void sites_activate(struct opass_sites *sites, const struct plan *plan, size_t n_groups,
			   long pass)
{
	for (size_t i = 0; i < sites->n; i++)
		sites->items[i].active = false;
	for (size_t i = 0; i < n_groups; i++)
		if (pass < 0 || plan->pass[i] == (unsigned)pass)
			sites->items[sites->of_group[i]].active = true;
}

static bool in_pass(const struct plan *plan, size_t i, long pass)
{
	return pass < 0 || plan->pass[i] == (unsigned)pass;
}

/* Prune the run's groups; a site's statistics and factors are dropped
 * after its last group, so that they do not pile up. */
static int pass_prune(struct opass_state *state, struct opass_sites *sites, const struct plan *plan,
		      long pass, const double *levels, struct onnxpass_error *err)
{
	size_t *last = calloc(sites->n + 1, sizeof(*last));
	int r = last ? 0 : opass_error(err, -ENOMEM, "out of memory");

	for (size_t i = 0; r == 0 && i < state->n_groups; i++)
		if (in_pass(plan, i, pass))
			last[sites->of_group[i]] = i;
	for (size_t i = 0; r == 0 && i < state->n_groups; i++) {
		struct opass_site *s = &sites->items[sites->of_group[i]];

		if (!in_pass(plan, i, pass))
			continue;
		r = group_prune(&state->groups[i], s, state->sparsifier, levels[i], err);
		opass_state_release_weight(state, i);
		if (last[sites->of_group[i]] == i)
			opass_site_reset(s);
	}
	free(last);
	return r;
}

/* A calibration key of the config, else of the state (prepare stored it). */
static const cJSON *state_item(const struct opass_state *state, const struct opass_config *config,
			       const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(config->root, key);

	if (!v || cJSON_IsNull(v))
		v = cJSON_GetObjectItemCaseSensitive(state->root, key);
	return v;
}

/* "sequential": 0 when absent or false, SEQUENTIAL_EVERY_WAVE when true,
 * else its number of stages. */
static unsigned state_stages(const struct opass_state *state, const struct opass_config *config)
{
	const cJSON *v = state_item(state, config, "sequential");

	if (cJSON_IsNumber(v) && v->valuedouble >= 1)
		return v->valuedouble < (double)SEQUENTIAL_EVERY_WAVE ? (unsigned)v->valuedouble
								       : SEQUENTIAL_EVERY_WAVE;
	return cJSON_IsTrue(v) ? SEQUENTIAL_EVERY_WAVE : 0;
}

int opass_calibrated_step(struct onnxpass_model *model, struct opass_state *state,
			  const struct opass_config *config, double *levels,
			  struct onnxpass_error *err)
{
	struct opass_sites sites = { 0 };
	struct plan plan = { 0 };
	double budget = 0;
	const cJSON *allocate_v = state_item(state, config, "allocate");
	bool allocate = cJSON_IsString(allocate_v) && strcmp(allocate_v->valuestring, "sensitivity") == 0;
	unsigned stages = state_stages(state, config);
	bool sequential = stages > 0;
	struct opass_collect how = {
		.model = model,
		.state = state,
		.calibration = opass_json_string(config->options, "calibration"),
		.full = allocate || state->sparsifier == OPASS_SPARSIFIER_SPARSEGPT,
	};
	int r = opass_config_threads(config, &how.threads, err);

	if (r == 0)
		r = opass_sites_find(model->proto, state, &sites, err);
	if (r == 0)
		r = stats_budget(state, config, &budget, err);
	if (r == 0 && plan_make(state, &sites, stages, how.full, budget, &plan) < 0)
		r = opass_error(err, -ENOMEM, "out of memory");
	/* allocation compares every layer: one run for all groups, whose
	 * statistics also prune them when not sequential */
	if (r == 0 && allocate) {
		sites_activate(&sites, &plan, state->n_groups, -1);
		r = opass_sites_collect(&sites, &how, err);
		if (r == 0)
			r = opass_allocate_sensitivity(state, &sites, &how, levels, err);
		if (r == 0 && !sequential)
			r = pass_prune(state, &sites, &plan, -1, levels, err);
	}
	for (unsigned p = 0; r == 0 && !(allocate && !sequential) && p < plan.n_passes; p++) {
		sites_activate(&sites, &plan, state->n_groups, (long)p);
		r = opass_sites_collect(&sites, &how, err);
		if (r == 0)
			r = pass_prune(state, &sites, &plan, (long)p, levels, err);
	}
	free(plan.pass);
	opass_sites_fini(&sites);
	return r;
}
