/* SPDX-License-Identifier: MIT */
/* The sparsifier state in metadata_props: load (groups resolved against the
 * model's constants), store, free. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "graph.h"
#include "proto_walk.h"
#include "sparsity/sparsity.h"
#include "tensor.h"
#include "validate.h"

/* --- finding constants ----------------------------------------------------- */

/* Every constant of the model by name: the first of the walk order (graph
 * by graph; in each, initializers before Constant nodes) wins. */
struct constant_index {
	struct opass_strmap names;
	struct opass_constant *items;
	size_t n, cap;
	int error;
};

static void constant_index_add(struct constant_index *x, const char *name, struct opass_constant c)
{
	if (x->error || !name || opass_strmap_get(&x->names, name, NULL))
		return;
	if (x->n == x->cap) {
		struct opass_constant *items;

		/* the map holds indexes: growing the array keeps them valid */
		x->cap = x->cap ? 2 * x->cap : 64;
		items = realloc(x->items, x->cap * sizeof(*items));
		if (!items) {
			x->error = -ENOMEM;
			return;
		}
		x->items = items;
	}
	x->items[x->n++] = c;
	if (opass_strmap_put(&x->names, name, (void *)(uintptr_t)x->n) < 0)
		x->error = -ENOMEM;
}

static int constant_index_graph(Onnx__GraphProto *g, void *userdata)
{
	struct constant_index *x = userdata;

	for (size_t i = 0; i < g->n_initializer; i++)
		constant_index_add(x, g->initializer[i]->name,
				   (struct opass_constant){ .tensor = g->initializer[i], .graph = g });
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *node = g->node[i];
		const Onnx__AttributeProto *value = opass_node_attr(node, "value");

		if (opass_node_is(node, "Constant") && node->n_output == 1 && value && value->t)
			constant_index_add(x, node->output[0], (struct opass_constant){
				.tensor = value->t, .graph = g, .node = node });
	}
	return 0;
}

static void constant_index_fini(struct constant_index *x)
{
	opass_strmap_fini(&x->names);
	free(x->items);
}

static int constant_index_build(Onnx__ModelProto *model, struct constant_index *x)
{
	*x = (struct constant_index){ 0 };
	opass_proto_foreach_graph(model, constant_index_graph, x);
	if (x->error)
		constant_index_fini(x);
	return x->error;
}

static int constant_lookup(const struct constant_index *x, const char *name, struct opass_constant *ret)
{
	void *index;

	if (!name || !opass_strmap_get(&x->names, name, &index))
		return -ENOENT;
	*ret = x->items[(uintptr_t)index - 1];
	return 0;
}

/* --- state ------------------------------------------------------------------- */

static int group_resolve(const struct constant_index *constants, struct opass_state *state, cJSON *json,
			 struct opass_group *g, struct onnxpass_error *err)
{
	struct opass_constant mask;
	uint64_t n_weight, n_mask;
	int r;

	g->json = json;
	g->nnz = -1;
	g->name = opass_json_string(json, "tensor_fqn");
	if (!g->name || constant_lookup(constants, opass_json_string(json, "weight"), &g->weight) < 0)
		return opass_error(err, -EBADMSG, "sparsity state: group '%s': weight not found",
				   g->name ? g->name : "?");
	if (constant_lookup(constants, opass_json_string(json, "mask"), &mask) < 0 ||
	    mask.tensor->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__BOOL || !mask.tensor->has_raw_data)
		return opass_error(err, -EBADMSG, "sparsity state: group '%s': mask not found", g->name);
	g->mask = mask.tensor;
	r = opass_tensor_check(g->weight.tensor, &n_weight, err);
	if (r == 0)
		r = opass_tensor_numel(g->mask, &n_mask, err);
	if (r < 0)
		return r;
	if (n_mask != n_weight || g->mask->raw_data.len != n_mask)
		return opass_error(err, -EBADMSG, "sparsity state: group '%s': mask size differs from the weight",
				   g->name);
	r = opass_args_parse(cJSON_GetObjectItemCaseSensitive(json, "args"), state->sparsifier, &g->args,
			     err);
	if (r < 0)
		return r;
	return opass_view_map_init(&g->map, opass_view_from_name(opass_json_string(json, "view")),
				   g->args.conv_view, g->weight.tensor, err);
}

/* No tensor may be the weight or the mask of two groups (squash would free
 * it twice), nor one group's weight and another's mask. */
static int groups_distinct(const struct opass_state *state, struct onnxpass_error *err)
{
	struct opass_strmap seen = { 0 };
	int r = 0;

	for (size_t i = 0; r == 0 && i < state->n_groups; i++) {
		const struct opass_group *g = &state->groups[i];
		const void *tensors[2] = { g->weight.tensor, g->mask };

		for (size_t k = 0; r == 0 && k < 2; k++) {
			char key[32];

			snprintf(key, sizeof(key), "%p", tensors[k]);
			if (opass_strmap_get(&seen, key, NULL))
				r = opass_error(err, -EBADMSG,
						"sparsity state: group '%s' shares its %s with another group",
						g->name, k ? "mask" : "weight");
			else if (opass_strmap_put_copy(&seen, key, NULL) < 0)
				r = opass_error(err, -ENOMEM, "out of memory");
		}
	}
	opass_strmap_fini(&seen);
	return r;
}

int opass_state_load(struct onnxpass_model *model, struct opass_state **ret_state,
		     struct onnxpass_error *err)
{
	const char *text = opass_model_get_metadata(model->proto, OPASS_STATE_KEY);
	struct constant_index constants = { 0 };
	struct opass_state *state;
	const cJSON *groups;
	const char *kind;
	int r = 0;

	if (!text)
		return opass_error(err, -ENOENT, "model is not prepared (no %s metadata): run prepare first",
				   OPASS_STATE_KEY);
	r = opass_model_validate(model->proto, err);
	if (r < 0)
		return r;
	state = calloc(1, sizeof(*state));
	if (!state)
		return opass_error(err, -ENOMEM, "out of memory");
	state->model = model;
	state->root = cJSON_Parse(text);
	groups = cJSON_GetObjectItemCaseSensitive(state->root, "groups");
	kind = opass_json_string(state->root, "sparsifier");
	if (!cJSON_IsArray(groups) || !kind) {
		r = opass_error(err, -EBADMSG, "sparsity state (%s metadata) is malformed", OPASS_STATE_KEY);
		goto out;
	}
	if (opass_sparsifier_from_name(kind, &state->sparsifier) < 0) {
		r = opass_error(err, -EBADMSG, "sparsity state: unknown sparsifier '%s'", kind);
		goto out;
	}
	state->groups = calloc((size_t)cJSON_GetArraySize(groups) + 1, sizeof(*state->groups));
	if (!state->groups) {
		r = opass_error(err, -ENOMEM, "out of memory");
		goto out;
	}
	if (constant_index_build(model->proto, &constants) < 0) {
		r = opass_error(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (cJSON *g = groups->child; g && r == 0; g = g->next)
		r = group_resolve(&constants, state, g, &state->groups[state->n_groups++], err);
	constant_index_fini(&constants);
	if (r == 0)
		r = groups_distinct(state, err);
	/* args errors from a stored state are model errors, not config errors */
	if (r == -EINVAL) {
		r = -EBADMSG;
		if (err)
			err->code = r;
		opass_error_blame(err, ONNXPASS_ERROR_MODEL);
	}
out:
	if (r < 0) {
		opass_state_free(state);
		return r;
	}
	*ret_state = state;
	return 0;
}

const struct opass_filemap *opass_state_filemap(const struct opass_state *state)
{
	return &state->model->store.map;
}

void opass_state_release_weight(const struct opass_state *state, size_t i)
{
	opass_filemap_release(opass_state_filemap(state), state->groups[i].weight.tensor);
}

struct opass_state *opass_state_free(struct opass_state *state)
{
	if (!state)
		return NULL;
	cJSON_Delete(state->root);
	free(state->groups);
	free(state);
	return NULL;
}

int opass_state_store(Onnx__ModelProto *model, const struct opass_state *state,
		      struct onnxpass_error *err)
{
	char *text = cJSON_PrintUnformatted(state->root);
	int r;

	if (!text)
		return opass_error(err, -ENOMEM, "out of memory");
	r = opass_model_set_metadata(model, OPASS_STATE_KEY, text);
	free(text);
	return r < 0 ? opass_error(err, r, "out of memory") : 0;
}
