/* SPDX-License-Identifier: MIT */
/*
 * squash: torch.ao.pruning BaseSparsifier.squash_mask().
 *
 * Before:   W ──────────► Mul ─► consumers
 *           W_mask ─► Cast ─┘
 *
 * After:    W·mask ─► consumers      (pruned elements written as +0.0)
 *
 * Conditions: the model is prepared. The mask initializer, the Cast and Mul
 * nodes and the state entry are removed; every reader of the Mul output
 * reads W again. options.keep_params (list of arg names) records those args
 * per tensor in metadata_props "onnx_pass.sparse_params" (params_to_keep).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "graph.h"
#include "passes.h"
#include "mapping.h"
#include "tensor.h"

struct rename {
	const char *from;
	const char *to;
	int error;
};

static int rename_inputs(Onnx__GraphProto *g, void *userdata)
{
	struct rename *rn = userdata;

	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_input; k++)
			if (strcmp(g->node[i]->input[k], rn->from) == 0 &&
			    opass_string_replace(&g->node[i]->input[k], rn->to) < 0)
				rn->error = -ENOMEM;
	return 0;
}

static Onnx__NodeProto *node_by_output(Onnx__GraphProto *g, const char *output)
{
	for (size_t i = 0; i < g->n_node; i++)
		if (g->node[i]->n_output == 1 && output && strcmp(g->node[i]->output[0], output) == 0)
			return g->node[i];
	return NULL;
}

static void graph_remove_input(Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_input; i++) {
		if (g->input[i]->name && strcmp(g->input[i]->name, name) == 0) {
			onnx__value_info_proto__free_unpacked(g->input[i], NULL);
			memmove(&g->input[i], &g->input[i + 1], (g->n_input - i - 1) * sizeof(*g->input));
			g->n_input--;
			return;
		}
	}
}

/* mul = Mul(weight, cast_output), cast = Cast(mask): what prepare made. */
static bool mask_nodes_match(const struct opass_group *g, const Onnx__NodeProto *mul,
			     const Onnx__NodeProto *cast)
{
	const char *weight = opass_json_string(g->json, "weight");

	return opass_node_is(mul, "Mul") && mul->n_input == 2 && weight &&
	       strcmp(mul->input[0], weight) == 0 && strcmp(mul->input[1], cast->output[0]) == 0 &&
	       opass_node_is(cast, "Cast") && cast->n_input == 1 && g->mask->name &&
	       strcmp(cast->input[0], g->mask->name) == 0;
}

static int group_squash(Onnx__ModelProto *model, struct opass_group *g, struct onnxpass_error *err)
{
	Onnx__GraphProto *graph = g->weight.graph;
	const char *output = opass_json_string(g->json, "output");
	const char *cast_out = opass_json_string(g->json, "cast_output");
	struct rename rn = { .from = output, .to = g->name };
	Onnx__NodeProto *mul = node_by_output(graph, output);
	Onnx__NodeProto *cast = node_by_output(graph, cast_out);
	uint64_t n = g->mask->raw_data.len;
	char *mask_name;

	if (!mul || !cast || !mask_nodes_match(g, mul, cast))
		return opass_error(err, -EBADMSG, "group '%s': mask nodes not found", g->name);
	if (!g->mask_in_weight)
		opass_tensor_zero_masked(g->weight.tensor, g->mask->raw_data.data, n);
	opass_tensor_release(g->weight.tensor);
	opass_model_foreach_graph(model, rename_inputs, &rn);
	if (rn.error)
		return opass_error(err, rn.error, "out of memory");
	opass_graph_remove_node(graph, mul);
	opass_graph_remove_node(graph, cast);
	mask_name = strdup(g->mask->name);
	if (!mask_name)
		return opass_error(err, -ENOMEM, "out of memory");
	graph_remove_input(graph, mask_name);
	opass_graph_remove_initializer(graph, mask_name);
	free(mask_name);
	g->mask = NULL;
	return 0;
}

/* torch's params_to_keep: chosen args per tensor_fqn. */
static int keep_params(Onnx__ModelProto *model, const struct opass_state *state,
		       const cJSON *keys, struct onnxpass_error *err)
{
	const cJSON *key;
	cJSON *out;
	char *text;
	int r;

	if (!cJSON_IsArray(keys))
		return opass_error(err, -EINVAL, "options: keep_params must be a list of names");
	cJSON_ArrayForEach(key, keys)
		if (!cJSON_IsString(key))
			return opass_error(err, -EINVAL, "options: keep_params must be a list of names");
	out = cJSON_CreateObject();
	for (size_t i = 0; out && i < state->n_groups; i++) {
		const cJSON *args = cJSON_GetObjectItemCaseSensitive(state->groups[i].json, "args");
		cJSON *kept = cJSON_AddObjectToObject(out, state->groups[i].name);

		cJSON_ArrayForEach(key, keys) {
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, key->valuestring);

			if (v && kept)
				cJSON_AddItemToObject(kept, key->valuestring, cJSON_Duplicate(v, true));
		}
	}
	text = cJSON_PrintUnformatted(out);
	cJSON_Delete(out);
	if (!text)
		return opass_error(err, -ENOMEM, "out of memory");
	r = opass_model_set_metadata(model, OPASS_PARAMS_KEY, text);
	free(text);
	return r < 0 ? opass_error(err, r, "out of memory") : 0;
}

int opass_squash_apply(Onnx__ModelProto *model, struct opass_state *state,
		       const struct opass_config *config, struct onnxpass_error *err)
{
	const cJSON *keys = opass_config_option(config, "keep_params");
	int r = 0;

	if (keys && !cJSON_IsNull(keys))
		r = keep_params(model, state, keys, err);
	for (size_t i = 0; r == 0 && i < state->n_groups; i++)
		r = group_squash(model, &state->groups[i], err);
	if (r == 0)
		opass_model_set_metadata(model, OPASS_STATE_KEY, NULL);
	return r;
}

int opass_pass_squash(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err)
{
	return opass_state_run(model, ctx, opass_squash_apply, err);
}
