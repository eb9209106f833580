/* SPDX-License-Identifier: MIT */
/*
 * prepare: torch.ao.pruning BaseSparsifier.prepare() with FakeSparsity.
 *
 * Before:   W ─────────────────────────────► Gemm / MatMul / Conv (B or W input)
 *
 * After:    W ──────────────────────► Mul ─► Gemm / MatMul / Conv
 *           W_mask (BOOL, all true) ─► Cast(to = dtype(W)) ─┘
 *
 * Conditions: the model is not prepared yet; a weight is selected by the
 * config (module_types, exclude, entries) with valid args; every consumer
 * of W (in its graph and in subgraphs) reads the Mul output afterwards; the
 * mask and nodes go in the graph that defines W (right after its Constant
 * node, or at the head of the graph); new names collide with nothing.
 * The state (groups, args, step count, schedule) goes to metadata_props.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "graph.h"
#include "passes.h"
#include "tensor.h"
#include "validate.h"

struct prepare {
	Onnx__ModelProto *model;
	struct opass_strmap names;
	struct opass_node_insert *inserts;  /* spliced in at the end, in one pass */
	size_t n_inserts, cap_inserts;
	cJSON *groups;
	bool fill_masks;
	struct onnxpass_error *err;
};

/* IR < 4 requires every initializer to be a graph input too. */
static int mask_add_input(Onnx__GraphProto *graph, const Onnx__TensorProto *mask)
{
	Onnx__ValueInfoProto *vi = malloc(sizeof(*vi));
	Onnx__TypeProto *type = malloc(sizeof(*type));
	Onnx__TypeProto__Tensor *tt = malloc(sizeof(*tt));
	Onnx__TensorShapeProto *shape = malloc(sizeof(*shape));
	Onnx__ValueInfoProto **inputs;

	if (vi)
		onnx__value_info_proto__init(vi);
	if (!vi || !type || !tt || !shape || !(vi->name = strdup(mask->name))) {
		free(type), free(tt), free(shape);
		onnx__value_info_proto__free_unpacked(vi, NULL);
		return -ENOMEM;
	}
	onnx__type_proto__init(type);
	onnx__type_proto__tensor__init(tt);
	onnx__tensor_shape_proto__init(shape);
	vi->type = type;
	type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
	type->tensor_type = tt;
	tt->has_elem_type = true;
	tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
	tt->shape = shape;
	shape->dim = calloc(mask->n_dims ? mask->n_dims : 1, sizeof(*shape->dim));
	for (size_t i = 0; shape->dim && i < mask->n_dims; i++) {
		shape->dim[i] = malloc(sizeof(**shape->dim));
		if (!shape->dim[i])
			break;
		onnx__tensor_shape_proto__dimension__init(shape->dim[i]);
		shape->dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
		shape->dim[i]->dim_value = mask->dims[i];
		shape->n_dim++;
	}
	inputs = realloc(graph->input, (graph->n_input + 1) * sizeof(*inputs));
	if (!inputs || !shape->dim || shape->n_dim != mask->n_dims) {
		graph->input = inputs ? inputs : graph->input;
		onnx__value_info_proto__free_unpacked(vi, NULL);
		return -ENOMEM;
	}
	graph->input = inputs;
	graph->input[graph->n_input++] = vi;
	return 0;
}

/* Queue a node: after the weight's Constant node, or at the head of the
 * graph after the nodes queued there before. Takes node (NULL: -ENOMEM). */
static int node_queue(struct prepare *p, const struct opass_weight *w, Onnx__NodeProto *node)
{
	struct opass_node_insert *ins = p->inserts;

	if (node && p->n_inserts == p->cap_inserts) {
		p->cap_inserts = p->cap_inserts ? 2 * p->cap_inserts : 64;
		ins = realloc(p->inserts, p->cap_inserts * sizeof(*ins));
	}
	if (!node || !ins) {
		if (node)
			onnx__node_proto__free_unpacked(node, NULL);
		return -ENOMEM;
	}
	p->inserts = ins;
	ins[p->n_inserts++] = (struct opass_node_insert){ .graph = w->graph, .after = w->constant,
							  .node = node };
	return 0;
}

/* Cast + Mul after the weight's definition. */
static int nodes_insert(struct prepare *p, const struct opass_weight *w, const char *const names[5])
{
	const char *cast_in[] = { names[0] }, *cast_out[] = { names[1] };
	const char *mul_in[] = { w->name, names[1] }, *mul_out[] = { names[2] };
	Onnx__NodeProto *cast = opass_node_new("Cast", names[3], cast_in, 1, cast_out, 1);
	int r;

	if (cast && opass_node_add_int_attr(cast, "to", w->tensor->data_type) < 0) {
		onnx__node_proto__free_unpacked(cast, NULL);
		cast = NULL;
	}
	r = node_queue(p, w, cast);
	if (r == 0)
		r = node_queue(p, w, opass_node_new("Mul", names[4], mul_in, 2, mul_out, 1));
	return r;
}

/* Free the queued nodes that no graph took. */
static void nodes_queue_free(struct prepare *p)
{
	for (size_t i = 0; i < p->n_inserts; i++)
		if (p->inserts[i].node)
			onnx__node_proto__free_unpacked(p->inserts[i].node, NULL);
	free(p->inserts);
	p->inserts = NULL;
	p->n_inserts = 0;
}

/* Splice the queued nodes in. */
static int nodes_splice(struct prepare *p)
{
	int r = opass_graphs_insert_nodes(p->inserts, p->n_inserts);

	nodes_queue_free(p);
	return r == -ENOMEM ? opass_error(p->err, r, "out of memory") :
	       r < 0 ? opass_error(p->err, r, "a weight's Constant node is not in its graph") : 0;
}

static int group_json(struct prepare *p, const struct opass_weight *w, const char *const names[5],
		      cJSON *args)
{
	cJSON *g = cJSON_CreateObject();

	if (!g)
		return -ENOMEM;
	cJSON_AddItemToArray(p->groups, g);
	cJSON_AddStringToObject(g, "tensor_fqn", w->name);
	if (w->alias)
		cJSON_AddStringToObject(g, "alias", w->alias);
	else
		cJSON_AddNullToObject(g, "alias");
	cJSON_AddStringToObject(g, "weight", w->name);
	cJSON_AddStringToObject(g, "mask", names[0]);
	cJSON_AddStringToObject(g, "cast_output", names[1]);
	cJSON_AddStringToObject(g, "output", names[2]);
	cJSON_AddStringToObject(g, "op", w->op);
	cJSON_AddStringToObject(g, "view", opass_view_name(w->view));
	cJSON_AddNumberToObject(g, "rows", (double)w->rows);
	cJSON_AddNumberToObject(g, "cols", (double)w->cols);
	if (w->note)
		cJSON_AddStringToObject(g, "note", w->note);
	cJSON_AddItemToObject(g, "args", args);
	return 0;
}

static int group_add(struct prepare *p, const struct opass_weight *w, cJSON *args)
{
	static const char *const suffixes[] = { "_mask", "_mask_cast", "_masked", "_mask_Cast",
						"_mask_Mul" };
	char *names[5] = { 0 };
	Onnx__TensorProto *mask = NULL;
	uint64_t numel;
	int r;

	r = opass_tensor_check(w->tensor, &numel, p->err);
	if (r < 0) {
		cJSON_Delete(args);
		return r;
	}
	for (size_t i = 0; r == 0 && i < 5; i++)
		r = opass_names_make(&p->names, w->name, suffixes[i], &names[i]);
	if (r == 0) {
		mask = opass_tensor_new(names[0], ONNX__TENSOR_PROTO__DATA_TYPE__BOOL, w->tensor->dims,
					w->tensor->n_dims);
		if (mask && p->fill_masks)
			memset(mask->raw_data.data, 1, numel);
		r = mask && opass_graph_add_initializer(w->graph, mask) == 0 ? 0 : -ENOMEM;
		if (r < 0)
			onnx__tensor_proto__free_unpacked(mask, NULL);
	}
	if (r == 0 && p->model->ir_version < 4)
		r = mask_add_input(w->graph, mask);
	if (r == 0)
		r = nodes_insert(p, w, (const char *const *)names);
	for (size_t i = 0; r == 0 && i < w->n_uses; i++)
		r = opass_string_replace(&w->uses[i].node->input[w->uses[i].input], names[2]);
	if (r == 0)
		r = group_json(p, w, (const char *const *)names, args);
	else
		cJSON_Delete(args);
	for (size_t i = 0; i < 5; i++)
		free(names[i]);
	return r == -ENOMEM ? opass_error(p->err, r, "out of memory") : r;
}

static int weight_select(struct prepare *p, struct opass_config *config, const struct opass_weight *w)
{
	struct opass_args args;
	cJSON *json = NULL;
	int r;

	r = opass_config_match(config, w->name, w->alias, w->module_type, &json, p->err);
	if (r < 0 || !json)
		return r;
	r = opass_args_parse(json, config->sparsifier, &args, p->err);
	if (r == 0)
		r = opass_args_check_shape(&args, w->rows, w->cols, p->err);
	if (r < 0) {
		char prefix[256];

		cJSON_Delete(json);
		snprintf(prefix, sizeof(prefix), "weight '%s': ", w->name);
		opass_error_prefix(p->err, prefix);
		return r;
	}
	return group_add(p, w, json);
}

static cJSON *state_new(const struct opass_config *config)
{
	const cJSON *schedule = cJSON_GetObjectItemCaseSensitive(config->root, "schedule");
	cJSON *s = cJSON_CreateObject();

	if (!s)
		return NULL;
	cJSON_AddStringToObject(s, "format", OPASS_STATE_FORMAT);
	cJSON_AddStringToObject(s, "sparsifier", opass_sparsifier_name(config->sparsifier));
	cJSON_AddItemToObject(s, "defaults", cJSON_Duplicate(config->defaults, true));
	cJSON_AddBoolToObject(s, "enable_mask_update", true);
	cJSON_AddNumberToObject(s, "step_count", 0);
	if (cJSON_IsObject(schedule))
		cJSON_AddItemToObject(s, "schedule", cJSON_Duplicate(schedule, true));
	else
		cJSON_AddNullToObject(s, "schedule");
	/* calibration-aware sparsifiers: how step runs them (SPEC 12) */
	for (size_t i = 0; i < 2; i++) {
		const char *key = i ? "sequential" : "allocate";
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(config->root, key);

		if (v && !cJSON_IsNull(v))
			cJSON_AddItemToObject(s, key, cJSON_Duplicate(v, true));
	}
	cJSON_AddItemToObject(s, "groups", cJSON_CreateArray());
	return s;
}

int opass_prepare_apply(Onnx__ModelProto *model, struct opass_config *config, bool fill_masks,
			struct onnxpass_error *err)
{
	struct prepare p = { .model = model, .fill_masks = fill_masks, .err = err };
	struct opass_weights *weights = NULL;
	struct opass_state state = { 0 };
	int r;

	if (opass_model_get_metadata(model, OPASS_STATE_KEY))
		return opass_error(err, -EALREADY,
				   "model is already prepared (%s metadata present): squash or convert it first",
				   OPASS_STATE_KEY);
	r = opass_model_validate(model, err);
	if (r < 0)
		return r;
	state.root = state_new(config);
	p.groups = cJSON_GetObjectItemCaseSensitive(state.root, "groups");
	if (!p.groups) {
		r = opass_error(err, -ENOMEM, "out of memory");
		goto out;
	}
	r = opass_weights_find(model, &weights, err);
	if (r == 0)
		r = opass_names_collect(model, &p.names) < 0 ? opass_error(err, -ENOMEM, "out of memory") : 0;
	for (size_t i = 0; r == 0 && i < weights->n; i++)
		r = weight_select(&p, config, &weights->items[i]);
	if (r == 0)
		r = opass_config_check_unused(config, err);
	if (r == 0)
		r = nodes_splice(&p);
	if (r == 0)
		r = opass_state_store(model, &state, err);
out:
	cJSON_Delete(state.root);
	opass_weights_free(weights);
	opass_strmap_fini(&p.names);
	nodes_queue_free(&p);
	return r;
}

int opass_prepare_state(struct onnxpass_model *model, struct opass_config *config,
			bool mask_in_weight, struct opass_state **ret_state,
			struct onnxpass_error *err)
{
	struct opass_state *state = NULL;
	int r = opass_prepare_apply(model->proto, config, !mask_in_weight, err);

	if (r == 0)
		r = opass_state_load(model, &state, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < state->n_groups; i++)
		state->groups[i].mask_in_weight = mask_in_weight;
	*ret_state = state;
	return 0;
}

int opass_pass_prepare(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err)
{
	struct opass_config *config = NULL;
	int r;

	r = opass_context_config(ctx, &config, err);
	if (r == 0)
		r = opass_prepare_apply(model->proto, config, true, err);
	opass_config_free(config);
	return r;
}
