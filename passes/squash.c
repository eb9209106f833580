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
#include "proto_walk.h"
#include "tensor.h"

/* What squash renames and removes, gathered for all groups first and then
 * applied in one walk of the model. */
struct squash {
	const struct opass_state *state;
	struct opass_strmap renames;   /* masked output -> weight name */
	struct opass_strmap wanted;    /* Mul and Cast outputs -> 2 * group + kind + 1 */
	struct opass_strmap marked;    /* nodes and masks to remove (opass_ptr_key) */
	struct opass_strmap inputs;    /* mask names: graph inputs to remove (IR < 4) */
	Onnx__NodeProto **found;       /* per group: Mul, Cast */
	int error;
};

/* The first node of the group's graph that outputs a wanted name. */
static int squash_find_nodes(Onnx__GraphProto *g, void *userdata)
{
	struct squash *sq = userdata;
	void *value;

	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *node = g->node[i];
		size_t k;

		if (node->n_output != 1 || !opass_strmap_get(&sq->wanted, node->output[0], &value))
			continue;
		k = (uintptr_t)value - 1;
		if (!sq->found[k] && sq->state->groups[k / 2].weight.graph == g)
			sq->found[k] = node;
	}
	return 0;
}

static int squash_rewrite(Onnx__GraphProto *g, void *userdata)
{
	struct squash *sq = userdata;
	void *to;

	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_input; k++)
			if (opass_strmap_get(&sq->renames, g->node[i]->input[k], &to) &&
			    opass_string_replace(&g->node[i]->input[k], to) < 0)
				sq->error = -ENOMEM;
	opass_graph_remove_marked(g, opass_state_filemap(sq->state), &sq->marked, &sq->inputs);
	return 0;
}

static int squash_mark(struct squash *sq, const void *ptr)
{
	char key[32];

	opass_ptr_key(key, ptr);
	return opass_strmap_put_copy(&sq->marked, key, NULL);
}

static void squash_fini(struct squash *sq)
{
	opass_strmap_fini(&sq->renames);
	opass_strmap_fini(&sq->wanted);
	opass_strmap_fini(&sq->marked);
	opass_strmap_fini(&sq->inputs);
	free(sq->found);
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

/* Index the names of group i's mask nodes. */
static int group_want(struct squash *sq, size_t i)
{
	const struct opass_group *g = &sq->state->groups[i];
	const char *output = opass_json_string(g->json, "output");
	const char *cast_out = opass_json_string(g->json, "cast_output");
	int r = 0;

	if (output)
		r = opass_strmap_put(&sq->wanted, output, (void *)(uintptr_t)(2 * i + 1));
	if (r == 0 && cast_out)
		r = opass_strmap_put(&sq->wanted, cast_out, (void *)(uintptr_t)(2 * i + 2));
	if (r == 0 && output)
		r = opass_strmap_put(&sq->renames, output, (void *)g->name);
	return r;
}

/* Check group i's mask nodes and mark them and its mask for removal. */
static int group_mark(struct squash *sq, size_t i, struct onnxpass_error *err)
{
	const struct opass_group *g = &sq->state->groups[i];
	Onnx__NodeProto *mul = sq->found[2 * i], *cast = sq->found[2 * i + 1];
	int r;

	if (!mul || !cast || !mask_nodes_match(g, mul, cast))
		return opass_error(err, -EBADMSG, "group '%s': mask nodes not found", g->name);
	r = squash_mark(sq, mul);
	if (r == 0)
		r = squash_mark(sq, cast);
	if (r == 0)
		r = squash_mark(sq, g->mask);
	if (r == 0)
		r = opass_strmap_put_copy(&sq->inputs, g->mask->name, NULL);
	return r < 0 ? opass_error(err, r, "out of memory") : 0;
}

/* Fold every mask into its weight and remove the mask nodes, in one walk. */
static int groups_squash(Onnx__ModelProto *model, struct opass_state *state,
			 struct onnxpass_error *err)
{
	struct squash sq = { .state = state };
	int r = 0;

	sq.found = calloc(2 * state->n_groups + 1, sizeof(*sq.found));
	if (!sq.found)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < state->n_groups; i++)
		r = group_want(&sq, i);
	if (r < 0) {
		r = opass_error(err, r, "out of memory");
		goto out;
	}
	opass_proto_foreach_graph(model, squash_find_nodes, &sq);
	for (size_t i = 0; r == 0 && i < state->n_groups; i++)
		r = group_mark(&sq, i, err);
	for (size_t i = 0; r == 0 && i < state->n_groups; i++) {
		struct opass_group *g = &state->groups[i];

		if (!g->mask_in_weight)
			opass_tensor_zero_masked(g->weight.tensor, g->mask->raw_data.data,
						 g->mask->raw_data.len);
		opass_state_release_weight(state, i);
	}
	if (r == 0) {
		opass_proto_foreach_graph(model, squash_rewrite, &sq);
		for (size_t i = 0; i < state->n_groups; i++)
			state->groups[i].mask = NULL;
		if (sq.error)
			r = opass_error(err, sq.error, "out of memory");
	}
out:
	squash_fini(&sq);
	return r;
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
		return opass_error_usage(err, "options: keep_params must be a list of names");
	cJSON_ArrayForEach(key, keys)
		if (!cJSON_IsString(key))
			return opass_error_usage(err, "options: keep_params must be a list of names");
	/* torch raises KeyError for a name a group does not have */
	for (size_t i = 0; i < state->n_groups; i++) {
		const cJSON *args = cJSON_GetObjectItemCaseSensitive(state->groups[i].json, "args");

		cJSON_ArrayForEach(key, keys)
			if (!cJSON_GetObjectItemCaseSensitive(args, key->valuestring))
				return opass_error_usage(err, "options: keep_params: group '%s' has no "
							 "arg '%s'", state->groups[i].name, key->valuestring);
	}
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
	if (r == 0)
		r = groups_squash(model, state, err);
	if (r == 0)
		opass_model_set_metadata(model, OPASS_STATE_KEY, NULL);
	return r;
}

int opass_pass_squash(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err)
{
	return opass_state_run(model, ctx, opass_squash_apply, err);
}
