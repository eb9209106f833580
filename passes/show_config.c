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
 */
#include <errno.h>
#include <stdlib.h>

#include "error.h"
#include "glob.h"
#include "passes.h"
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

static cJSON *config_json(const struct opass_config *config, const struct opass_weights *weights)
{
	cJSON *root = cJSON_CreateObject(), *list, *skipped;

	if (!root)
		return NULL;
	cJSON_AddStringToObject(root, "sparsifier", opass_sparsifier_name(config->sparsifier));
	cJSON_AddItemToObject(root, "defaults", cJSON_Duplicate(config->defaults, true));
	list = cJSON_AddArrayToObject(root, "config");
	skipped = cJSON_AddArrayToObject(root, "skipped");
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
	cJSON *out = NULL;
	char *text = NULL;
	int r;

	r = opass_context_config(ctx, &config, err);
	if (r == 0)
		r = opass_model_validate(model->proto, err);
	if (r == 0)
		r = opass_weights_find(model->proto, &weights, err);
	if (r == 0) {
		out = config_json(config, weights);
		text = out ? cJSON_Print(out) : NULL;
		r = text ? onnxpass_context_print(ctx, "%s\n", text) : -ENOMEM;
		if (r < 0)
			opass_error(err, r, "out of memory");
	}
	free(text);
	cJSON_Delete(out);
	opass_weights_free(weights);
	opass_config_free(config);
	return r;
}
