/* SPDX-License-Identifier: MIT */
/*
 * config: torch.ao.pruning make_config_from_model() for an ONNX model.
 *
 * Before:   any model (unchanged by this pass)
 * After:    report = JSON config in the input schema: "sparsifier",
 *           "defaults", one "config" entry per candidate weight (tensor_fqn,
 *           alias, op, view, shape, dtype) and "skipped" with reasons.
 *
 * Conditions: candidates are filtered by the config's module_types and
 * exclude; entries are not required to match (this is the listing).
 * On a prepared model the entries are the state's groups with their args,
 * "sparsity_level" being the level "allocate": "sensitivity" chose where it
 * did.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "glob.h"
#include "passes.h"
#include "sparsity/sparsity.h"
#include "tensor.h"
#include "validate.h"

static cJSON *shape_json(const Onnx__TensorProto *t)
{
	cJSON *shape = cJSON_CreateArray();

	for (size_t i = 0; shape && i < t->n_dims; i++)
		cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->dims[i]));
	return shape;
}

static cJSON *weight_json(const struct opass_weight *w)
{
	cJSON *e = cJSON_CreateObject();

	if (!e)
		return NULL;
	cJSON_AddStringToObject(e, "tensor_fqn", w->name);
	if (w->alias)
		cJSON_AddStringToObject(e, "alias", w->alias);
	else
		cJSON_AddNullToObject(e, "alias");
	cJSON_AddStringToObject(e, "op", w->op);
	cJSON_AddStringToObject(e, "module_type", w->module_type);
	cJSON_AddStringToObject(e, "view", opass_view_name(w->view));
	cJSON_AddItemToObject(e, "view_shape", cJSON_CreateDoubleArray((const double[]){ (double)w->rows, (double)w->cols }, 2));
	cJSON_AddItemToObject(e, "shape", shape_json(w->tensor));
	cJSON_AddStringToObject(e, "dtype", opass_dtype_name(w->tensor->data_type));
	cJSON_AddStringToObject(e, "storage", w->constant ? "constant" : "initializer");
	cJSON_AddBoolToObject(e, "in_subgraph", w->in_subgraph);
	if (w->note)
		cJSON_AddStringToObject(e, "note", w->note);
	return e;
}

/* A prepared weight: its state group (see prepare.c) as a config entry. */
static cJSON *group_entry(const cJSON *g)
{
	static const char *const keys[] = { "tensor_fqn", "alias", "op", "view" };
	const cJSON *arg, *level = cJSON_GetObjectItemCaseSensitive(g, "allocated_sparsity_level");
	cJSON *e = cJSON_CreateObject();

	for (size_t i = 0; e && i < sizeof(keys) / sizeof(keys[0]); i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(g, keys[i]);

		cJSON_AddItemToObject(e, keys[i], v ? cJSON_Duplicate(v, true) : cJSON_CreateNull());
	}
	cJSON_AddItemToObject(e, "view_shape", cJSON_CreateDoubleArray((const double[]){
		opass_json_number(g, "rows", 0), opass_json_number(g, "cols", 0) }, 2));
	cJSON_ArrayForEach(arg, cJSON_GetObjectItemCaseSensitive(g, "args"))
		cJSON_AddItemToObject(e, arg->string, cJSON_IsNumber(level) &&
				      strcmp(arg->string, "sparsity_level") == 0 ?
				      cJSON_CreateNumber(level->valuedouble) : cJSON_Duplicate(arg, true));
	return e;
}

static void candidates_json(cJSON *list, const struct opass_config *config,
			    const struct opass_weights *weights)
{
	for (size_t i = 0; list && i < weights->n; i++) {
		const struct opass_weight *w = &weights->items[i];
		bool excluded = (w->module_type[0] == 'l' && !config->module_linear) ||
				(w->module_type[0] == 'c' && !config->module_conv);
		const cJSON *pat;

		cJSON_ArrayForEach(pat, config->exclude)
			if (cJSON_IsString(pat) &&
			    opass_glob_match_either(pat->valuestring, w->name, w->alias))
				excluded = true;
		if (!excluded)
			cJSON_AddItemToArray(list, weight_json(w));
	}
}

/* state: the parsed onnx_pass.sparsity metadata of a prepared model, or NULL */
static cJSON *config_json(const struct opass_config *config, const struct opass_weights *weights,
			  const cJSON *state)
{
	cJSON *root = cJSON_CreateObject(), *list, *skipped;
	const cJSON *g;

	if (!root)
		return NULL;
	cJSON_AddStringToObject(root, "sparsifier", state && opass_json_string(state, "sparsifier") ?
				opass_json_string(state, "sparsifier") :
				opass_sparsifier_name(config->sparsifier));
	cJSON_AddItemToObject(root, "defaults", cJSON_Duplicate(config->defaults, true));
	list = cJSON_AddArrayToObject(root, "config");
	skipped = cJSON_AddArrayToObject(root, "skipped");
	if (state)
		cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(state, "groups"))
			cJSON_AddItemToArray(list, group_entry(g));
	else
		candidates_json(list, config, weights);
	for (size_t i = 0; skipped && i < weights->n_skipped; i++) {
		cJSON *s = cJSON_CreateObject();

		cJSON_AddItemToArray(skipped, s);
		cJSON_AddStringToObject(s, "tensor_fqn", weights->skipped[i].name);
		cJSON_AddStringToObject(s, "op", weights->skipped[i].op);
		cJSON_AddStringToObject(s, "reason", weights->skipped[i].reason);
	}
	return root;
}

int opass_pass_config(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err)
{
	struct opass_config *config = NULL;
	struct opass_weights *weights = NULL;
	cJSON *out = NULL, *state = NULL;
	const char *state_text;
	char *text = NULL;
	int r;

	r = opass_context_config(ctx, &config, err);
	if (r == 0)
		r = opass_model_validate(model->proto, err);
	if (r == 0)
		r = opass_weights_find(model->proto, &weights, err);
	if (r == 0) {
		/* a malformed state is prepare's or step's error, not the listing's */
		state_text = opass_model_get_metadata(model->proto, OPASS_STATE_KEY);
		state = state_text ? cJSON_Parse(state_text) : NULL;
		out = config_json(config, weights, state);
		text = out ? cJSON_Print(out) : NULL;
		r = text ? onnxpass_context_print(ctx, "%s\n", text) : -ENOMEM;
		if (r < 0)
			opass_error(err, r, "out of memory");
	}
	free(text);
	cJSON_Delete(out);
	cJSON_Delete(state);
	opass_weights_free(weights);
	opass_config_free(config);
	return r;
}
