/* SPDX-License-Identifier: MIT */
/* The sparsifier state in metadata_props, and helpers shared by passes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "graph.h"
#include "sparsity/sparsity.h"
#include "tensor.h"
#include "validate.h"

double opass_json_number(const cJSON *obj, const char *key, double fallback)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsNumber(item) ? item->valuedouble : fallback;
}

const char *opass_json_string(const cJSON *obj, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(item) ? item->valuestring : NULL;
}

bool opass_json_bool(const cJSON *obj, const char *key, bool fallback)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsBool(item) ? cJSON_IsTrue(item) : fallback;
}

int opass_state_run(struct onnxpass_model *model, struct onnxpass_context *ctx,
		    int (*apply)(Onnx__ModelProto *model, struct opass_state *state,
				 const struct opass_config *config, struct onnxpass_error *err),
		    struct onnxpass_error *err)
{
	struct opass_config *config = NULL;
	struct opass_state *state = NULL;
	int r;

	r = opass_context_config(ctx, &config, err);
	if (r == 0)
		r = opass_state_load(model->proto, &state, err);
	if (r == 0) {
		state->model = model;
		r = apply(model->proto, state, config, err);
	}
	opass_state_free(state);
	opass_config_free(config);
	return r;
}

int opass_context_config(struct onnxpass_context *ctx, struct opass_config **ret_config,
			 struct onnxpass_error *err)
{
	return opass_config_parse(onnxpass_context_get_config(ctx), ret_config, err);
}

const cJSON *opass_config_option(const struct opass_config *config, const char *key)
{
	return config->options ? cJSON_GetObjectItemCaseSensitive(config->options, key) : NULL;
}

int opass_config_threads(const struct opass_config *config, unsigned *ret,
			 struct onnxpass_error *err)
{
	const cJSON *v = opass_config_option(config, "threads");

	if (!v || cJSON_IsNull(v)) {
		*ret = 0;
		return 0;
	}
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1024 ||
	    v->valuedouble != (double)(unsigned)v->valuedouble)
		return opass_error(err, -EINVAL, "options: threads must be an integer in [0, 1024]");
	*ret = (unsigned)v->valuedouble;
	return 0;
}

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
	opass_model_foreach_graph(model, constant_index_graph, x);
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

/* --- views ------------------------------------------------------------------- */

enum opass_view opass_view_from_name(const char *name)
{
	if (name && strcmp(name, "as_is") == 0)
		return OPASS_VIEW_AS_IS;
	if (name && strcmp(name, "transposed") == 0)
		return OPASS_VIEW_TRANSPOSED;
	return OPASS_VIEW_CONV;
}

int opass_view_map_init(struct opass_view_map *map, enum opass_view view, enum opass_conv_view cv,
			const Onnx__TensorProto *t, struct onnxpass_error *err)
{
	uint64_t numel;
	int r = opass_tensor_numel(t, &numel, err);

	if (r < 0)
		return r;
	*map = (struct opass_view_map){ .view = view, .conv_view = cv };
	if (view == OPASS_VIEW_CONV) {
		if (t->n_dims < 3 || t->dims[0] == 0 || t->dims[1] == 0)
			return opass_error(err, -EBADMSG, "tensor '%s': not a Conv weight", t->name);
		map->rows = t->dims[0];
		map->cols = (int64_t)(numel / (uint64_t)t->dims[0]);
		map->conv_channels = t->dims[1];
		map->conv_kernel = map->cols / t->dims[1];
		return 0;
	}
	if (t->n_dims != 2)
		return opass_error(err, -EBADMSG, "tensor '%s': not a rank-2 weight", t->name);
	map->rows = t->dims[view == OPASS_VIEW_AS_IS ? 0 : 1];
	map->cols = t->dims[view == OPASS_VIEW_AS_IS ? 1 : 0];
	return 0;
}

uint64_t opass_view_offset(const struct opass_view_map *map, int64_t i, int64_t j)
{
	switch (map->view) {
	case OPASS_VIEW_TRANSPOSED:
		return (uint64_t)(j * map->rows + i);
	case OPASS_VIEW_CONV:
		if (map->conv_view == OPASS_CONV_VIEW_OHWI) {
			int64_t k = j / map->conv_channels, c = j % map->conv_channels;

			return (uint64_t)(i * map->cols + c * map->conv_kernel + k);
		}
		return (uint64_t)(i * map->cols + j);
	default:
		return (uint64_t)(i * map->cols + j);
	}
}

/* --- masks ------------------------------------------------------------------- */

/* Transposes go tile by tile to stay in cache (16 measured best here). */
#define TILE 16

/* Is the view the storage order itself? */
static bool view_is_identity(const struct opass_view_map *map)
{
	return map->view == OPASS_VIEW_AS_IS ||
	       (map->view == OPASS_VIEW_CONV && map->conv_view == OPASS_CONV_VIEW_OIHW);
}

/* Copy elements of esize bytes from storage order into view order (inlined
 * with a constant esize by each caller). */
static inline __attribute__((always_inline)) void
view_gather(const struct opass_view_map *map, const uint8_t *stored, uint8_t *values, size_t esize)
{
	int64_t rows = map->rows, cols = map->cols;

	if (map->view == OPASS_VIEW_TRANSPOSED) {
		/* stored [cols][rows] -> values [rows][cols], writes contiguous */
		for (int64_t i0 = 0; i0 < rows; i0 += TILE)
			for (int64_t j0 = 0; j0 < cols; j0 += TILE)
				for (int64_t i = i0; i < i0 + TILE && i < rows; i++)
					for (int64_t j = j0; j < j0 + TILE && j < cols; j++)
						memcpy(values + (uint64_t)(i * cols + j) * esize,
						       stored + (uint64_t)(j * rows + i) * esize, esize);
		return;
	}
	for (int64_t i = 0; i < rows; i++)
		for (int64_t j = 0; j < cols; j++)
			memcpy(values + (uint64_t)(i * cols + j) * esize,
			       stored + opass_view_offset(map, i, j) * esize, esize);
}

/* W * mask is computed as torch's FakeSparsity does (NaN * 0 stays NaN,
 * -x * 0 is -0.0), in storage order, then put in view order. */
void opass_group_read_masked(const struct opass_group *group, double *values, double *scratch)
{
	const uint8_t *mask = group->mask->raw_data.data;
	uint64_t n = (uint64_t)group->map.rows * (uint64_t)group->map.cols;
	double *stored = view_is_identity(&group->map) ? values : scratch;

	opass_tensor_read(group->weight.tensor, stored);
	for (uint64_t off = 0; !group->mask_in_weight && off < n; off++)
		stored[off] *= (double)mask[off];
	if (stored != values)
		view_gather(&group->map, (const uint8_t *)stored, (uint8_t *)values, sizeof(*values));
}

/* The float32 storage of t when it can be read in place, else NULL. */
static const float *stored_f32(const Onnx__TensorProto *t)
{
	if (t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
		return NULL;
	return t->has_raw_data ? (const float *)(const void *)t->raw_data.data : t->float_data;
}

void opass_group_read_masked_f32(const struct opass_group *group, float *values, float *scratch)
{
	const uint8_t *mask = group->mask->raw_data.data;
	uint64_t n = (uint64_t)group->map.rows * (uint64_t)group->map.cols;
	const float *in_place = group->mask_in_weight ? stored_f32(group->weight.tensor) : NULL;
	float *stored = view_is_identity(&group->map) ? values : scratch;

	/* W is the masked weight: gather it straight from its storage */
	if (in_place && n && stored != values) {
		view_gather(&group->map, (const uint8_t *)in_place, (uint8_t *)values, sizeof(*values));
		return;
	}
	opass_tensor_read_f32(group->weight.tensor, stored);
	for (uint64_t off = 0; !group->mask_in_weight && off < n; off++)
		stored[off] *= (float)mask[off];
	if (stored != values)
		view_gather(&group->map, (const uint8_t *)stored, (uint8_t *)values, sizeof(*values));
}

bool opass_group_mask_in_storage(const struct opass_group *group)
{
	int32_t dt = group->weight.tensor->data_type;

	return group->map.view == OPASS_VIEW_TRANSPOSED &&
	       (group->args.block_rows == 1 || group->args.block_cols == 1) &&
	       dt != ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
}

const float *opass_group_read_stored_f32(const struct opass_group *group, float *values)
{
	const uint8_t *mask = group->mask->raw_data.data;
	uint64_t n = (uint64_t)group->map.rows * (uint64_t)group->map.cols;
	const float *in_place = group->mask_in_weight ? stored_f32(group->weight.tensor) : NULL;

	if (in_place && n)
		return in_place;
	opass_tensor_read_f32(group->weight.tensor, values);
	for (uint64_t off = 0; !group->mask_in_weight && off < n; off++)
		values[off] *= (float)mask[off];
	return values;
}

void opass_group_write_stored_mask(struct opass_group *group, const uint8_t *mask)
{
	uint64_t n = (uint64_t)group->map.rows * (uint64_t)group->map.cols;

	if (group->mask_in_weight)
		group->nnz = (int64_t)opass_tensor_zero_masked(group->weight.tensor, mask, n);
	else if (n)
		memcpy(group->mask->raw_data.data, mask, n);
}

/* A view-order mask in storage order. */
static void mask_scatter(const struct opass_view_map *map, const uint8_t *view_mask, uint8_t *mask)
{
	if (view_is_identity(map)) {
		memcpy(mask, view_mask, (size_t)(map->rows * map->cols));
	} else if (map->view == OPASS_VIEW_TRANSPOSED) {
		for (int64_t j0 = 0; j0 < map->cols; j0 += TILE)
			for (int64_t i0 = 0; i0 < map->rows; i0 += TILE)
				for (int64_t j = j0; j < j0 + TILE && j < map->cols; j++)
					for (int64_t i = i0; i < i0 + TILE && i < map->rows; i++)
						mask[j * map->rows + i] = view_mask[i * map->cols + j];
	} else {
		for (int64_t i = 0; i < map->rows; i++)
			for (int64_t j = 0; j < map->cols; j++)
				mask[opass_view_offset(map, i, j)] = view_mask[i * map->cols + j];
	}
}

void opass_group_write_mask(struct opass_group *group, const uint8_t *view_mask, uint8_t *scratch)
{
	uint64_t n = (uint64_t)group->map.rows * (uint64_t)group->map.cols;

	if (!group->mask_in_weight) {
		mask_scatter(&group->map, view_mask, group->mask->raw_data.data);
		return;
	}
	if (!view_is_identity(&group->map)) {
		mask_scatter(&group->map, view_mask, scratch);
		view_mask = scratch;
	}
	group->nnz = (int64_t)opass_tensor_zero_masked(group->weight.tensor, view_mask, n);
}

void opass_group_write_weight_f32(struct opass_group *group, const float *values)
{
	for (int64_t i = 0; i < group->map.rows; i++)
		for (int64_t j = 0; j < group->map.cols; j++)
			opass_tensor_set(group->weight.tensor, opass_view_offset(&group->map, i, j),
					 values[i * group->map.cols + j]);
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

int opass_state_load(Onnx__ModelProto *model, struct opass_state **ret_state,
		     struct onnxpass_error *err)
{
	const char *text = opass_model_get_metadata(model, OPASS_STATE_KEY);
	struct constant_index constants = { 0 };
	struct opass_state *state;
	const cJSON *groups;
	const char *kind;
	int r = 0;

	if (!text)
		return opass_error(err, -ENOENT, "model is not prepared (no %s metadata): run prepare first",
				   OPASS_STATE_KEY);
	r = opass_model_validate(model, err);
	if (r < 0)
		return r;
	state = calloc(1, sizeof(*state));
	if (!state)
		return opass_error(err, -ENOMEM, "out of memory");
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
	if (constant_index_build(model, &constants) < 0) {
		r = opass_error(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (cJSON *g = groups->child; g && r == 0; g = g->next)
		r = group_resolve(&constants, state, g, &state->groups[state->n_groups++], err);
	constant_index_fini(&constants);
	if (r == 0)
		r = groups_distinct(state, err);
	/* args errors from a stored state are model errors, not config errors */
	if (r == -EINVAL)
		r = -EBADMSG;
out:
	if (r < 0) {
		opass_state_free(state);
		return r;
	}
	*ret_state = state;
	return 0;
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
