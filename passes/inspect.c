/* SPDX-License-Identifier: MIT */
/*
 * inspect: what torch's sparsifier __repr__ and a sparsity report show.
 *
 * Before:   any model (unchanged by this pass)
 * After:    report = a table (or JSON with options.json) per weight: name,
 *           alias, op, shape, dtype, nonzeros, sparsity, pattern (N:M along
 *           input, block shape, unstructured, dense), storage (initializer,
 *           constant, sparse, external, ort-sparse), bytes; model totals; on a prepared
 *           model the groups as torch prints them, and the masked weights.
 *
 * Conditions: none; weights of prepared groups are counted through their mask.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "filemap.h"
#include "graph.h"
#include "ort_sparse.h"
#include "passes.h"
#include "tensor.h"
#include "validate.h"

struct row {
	char *name;
	char *alias;
	const char *op;
	char shape[96];
	const char *dtype;
	uint64_t numel;
	uint64_t nnz;
	char pattern[64];
	const char *storage;
	uint64_t bytes;
	char *note;   /* e.g. consumers disagree on the view */
};

struct inspect {
	struct onnxpass_model *model;
	struct row *rows;
	size_t n_rows;
	struct opass_state *state;
};

static void shape_text(char *out, size_t size, const int64_t *dims, size_t n)
{
	size_t len = (size_t)snprintf(out, size, "[");

	for (size_t i = 0; i < n && len < size; i++)
		len += (size_t)snprintf(out + len, size - len, "%s%" PRId64, i ? ", " : "", dims[i]);
	if (len < size)
		snprintf(out + len, size - len, "]");
}

/* Nonzeros of the br x bc block at (i0, j0) (partial at the edges); *ret_n
 * gets its in-bounds size. */
static int64_t block_count(const uint8_t *nz, const struct opass_view_map *map, int64_t i0,
			   int64_t j0, int64_t br, int64_t bc, int64_t *ret_n)
{
	int64_t c = 0, n = 0;

	for (int64_t i = i0; i < i0 + br && i < map->rows; i++)
		for (int64_t j = j0; j < j0 + bc && j < map->cols; j++, n++)
			c += nz[opass_view_offset(map, i, j)];
	*ret_n = n;
	return c;
}

/* N:M in br x bc blocks (M = br * bc): the most nonzeros of any full block,
 * and the slots N gives all blocks. A partial edge block of s elements has
 * s - (M - N) slots (torch zeroes M - N of it, all when it is smaller). */
static int64_t block_max(const uint8_t *nz, const struct opass_view_map *map, int64_t br, int64_t bc,
			 uint64_t *ret_slots)
{
	int64_t best = 0, n, m = br * bc;
	uint64_t slots = 0;

	for (int64_t i0 = 0; i0 < map->rows; i0 += br)
		for (int64_t j0 = 0; j0 < map->cols; j0 += bc) {
			int64_t c = block_count(nz, map, i0, j0, br, bc, &n);

			if (n == m && c > best)
				best = c;
		}
	for (int64_t i0 = 0; i0 < map->rows; i0 += br)
		for (int64_t j0 = 0; j0 < map->cols; j0 += bc) {
			(void)block_count(nz, map, i0, j0, br, bc, &n);
			slots += (uint64_t)(n - (m - best) > 0 ? n - (m - best) : 0);
		}
	*ret_slots = slots;
	return best;
}

/* Does every zero sit in an all-zero r x c block (tiled from (0,0))? */
static bool block_pattern(const uint8_t *nz, const struct opass_view_map *map, int64_t br, int64_t bc)
{
	for (int64_t i0 = 0; i0 < map->rows; i0 += br) {
		for (int64_t j0 = 0; j0 < map->cols; j0 += bc) {
			int64_t c = 0, n = 0;

			for (int64_t i = i0; i < i0 + br && i < map->rows; i++)
				for (int64_t j = j0; j < j0 + bc && j < map->cols; j++, n++)
					c += nz[opass_view_offset(map, i, j)];
			if (c != 0 && c != n)
				return false;
		}
	}
	return true;
}

/*
 * The structure of the zeros: "dense", whole blocks ("1x4 blocks": every zero
 * sits in an all-zero block), N:M ("2:4 along input", "2:4 along output",
 * "2:4 in 2x2 blocks": at most N nonzeros in every group of M and at least
 * 95% of those N slots used, so that a merely sparse matrix is not called
 * N:M; partial groups at the edges hold at most their size), else
 * "unstructured".
 */
static void pattern_text(char *out, size_t size, const uint8_t *nz, const struct opass_view_map *map,
			 uint64_t numel, uint64_t nnz)
{
	/* N:M groups: along the input (1 x M), the output (M x 1), or square */
	static const struct {
		int64_t br, bc;
		const char *where;
	} nm[] = {
		{ 1, 4, "along input" }, { 1, 8, "along input" }, { 1, 16, "along input" },
		{ 4, 1, "along output" }, { 8, 1, "along output" }, { 16, 1, "along output" },
		{ 2, 2, "in 2x2 blocks" }, { 4, 4, "in 4x4 blocks" },
	};
	static const int64_t blocks[][2] = { { 1, 4 }, { 4, 1 }, { 2, 2 }, { 1, 8 }, { 8, 1 }, { 4, 4 } };

	if (nnz == numel) {
		snprintf(out, size, "dense");
		return;
	}
	for (size_t k = 0; nnz > 0 && k < sizeof(blocks) / sizeof(blocks[0]); k++) {
		if (block_pattern(nz, map, blocks[k][0], blocks[k][1])) {
			snprintf(out, size, "%" PRId64 "x%" PRId64 " blocks", blocks[k][0], blocks[k][1]);
			return;
		}
	}
	for (size_t k = 0; nnz > 0 && k < sizeof(nm) / sizeof(nm[0]); k++) {
		uint64_t slots;
		int64_t n = block_max(nz, map, nm[k].br, nm[k].bc, &slots), m = nm[k].br * nm[k].bc;

		if (n > 0 && n < m && nnz * 20 >= slots * 19) {
			snprintf(out, size, "%" PRId64 ":%" PRId64 " %s", n, m, nm[k].where);
			return;
		}
	}
	snprintf(out, size, "unstructured");
}

static struct row *row_new(struct inspect *in, const char *name, const char *alias)
{
	struct row *rows = realloc(in->rows, (in->n_rows + 1) * sizeof(*rows));
	struct row *row;

	if (!rows)
		return NULL;
	in->rows = rows;
	row = &rows[in->n_rows++];
	*row = (struct row){ .name = strdup(name), .alias = alias ? strdup(alias) : NULL };
	return row->name ? row : NULL;
}

/* Fill nnz/pattern from a nonzero bitmap in storage order. */
static void row_stats(struct row *row, const uint8_t *nz, const struct opass_view_map *map)
{
	row->nnz = 0;
	for (uint64_t i = 0; i < row->numel; i++)
		row->nnz += nz[i];
	pattern_text(row->pattern, sizeof(row->pattern), nz, map, row->numel, row->nnz);
}

static int row_dense(struct inspect *in, const char *name, const char *alias, const char *op,
		     const Onnx__TensorProto *t, const Onnx__TensorProto *mask,
		     const struct opass_view_map *map, const char *storage, struct onnxpass_error *err)
{
	struct row *row = row_new(in, name, alias);
	uint8_t *nz;
	int r;

	if (!row)
		return opass_error(err, -ENOMEM, "out of memory");
	r = opass_tensor_check(t, &row->numel, err);
	if (r < 0)
		return r;
	row->op = op;
	shape_text(row->shape, sizeof(row->shape), t->dims, t->n_dims);
	row->dtype = opass_dtype_name(t->data_type);
	row->storage = in->model->had_external && t->has_raw_data && t->raw_data.len >= 1024 ?
		       "external" : storage;
	row->bytes = row->numel * opass_dtype_size(t->data_type);
	nz = malloc(row->numel ? row->numel : 1);
	if (!nz)
		return opass_error(err, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < row->numel; i++)
		nz[i] = !opass_tensor_is_zero(t, i) && (!mask || mask->raw_data.data[i]);
	opass_filemap_release(&in->model->store.map, t);
	row_stats(row, nz, map);
	free(nz);
	return 0;
}

static int rows_weights(struct inspect *in, struct onnxpass_error *err)
{
	struct opass_weights *weights = NULL;
	int r = opass_weights_find(in->model->proto, &weights, err);

	for (size_t i = 0; r == 0 && i < weights->n; i++) {
		const struct opass_weight *w = &weights->items[i];
		struct opass_view_map map;

		r = opass_view_map_init(&map, w->view, OPASS_CONV_VIEW_OIHW, w->tensor, err);
		if (r == 0)
			r = row_dense(in, w->name, w->alias, w->op, w->tensor, NULL, &map,
				      w->constant ? "constant" : "initializer", err);
		if (r == 0 && w->note && !(in->rows[in->n_rows - 1].note = strdup(w->note)))
			r = opass_error(err, -ENOMEM, "out of memory");
	}
	opass_weights_free(weights);
	return r;
}

static int rows_groups(struct inspect *in, struct onnxpass_error *err)
{
	int r = 0;

	for (size_t i = 0; r == 0 && in->state && i < in->state->n_groups; i++) {
		const struct opass_group *g = &in->state->groups[i];

		r = row_dense(in, g->name, opass_json_string(g->json, "alias"),
			      opass_json_string(g->json, "op"), g->weight.tensor, g->mask, &g->map,
			      g->weight.node ? "constant" : "initializer", err);
	}
	return r;
}

/* The view a sparse initializer's consumer gives it (first consumer). */
static void sparse_view(const Onnx__GraphProto *g, const Onnx__SparseTensorProto *s,
			struct opass_view_map *map, const char **ret_op, char **ret_alias)
{
	const Onnx__TensorProto fake = { .dims = s->dims, .n_dims = s->n_dims };

	*ret_op = "-";
	*ret_alias = NULL;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *node = g->node[i];
		enum opass_view view = OPASS_VIEW_CONV;

		if (node->n_input < 2 || strcmp(node->input[1], s->values->name) != 0)
			continue;
		if (opass_node_is(node, "Gemm"))
			view = opass_node_attr_int(node, "transB", 0) ? OPASS_VIEW_AS_IS : OPASS_VIEW_TRANSPOSED;
		else if (opass_node_is(node, "MatMul"))
			view = OPASS_VIEW_TRANSPOSED;
		else if (!opass_node_is(node, "Conv"))
			continue;
		if (opass_view_map_init(map, view, OPASS_CONV_VIEW_OIHW, &fake, NULL) == 0) {
			*ret_op = node->op_type;
			*ret_alias = opass_weight_alias_full(s->values->name, node->name,
							     opass_node_is(node, "Gemm") && node->n_input > 2 ?
							     node->input[2] : NULL);
			return;
		}
	}
	map->view = OPASS_VIEW_AS_IS;
	map->rows = 1;
	map->cols = 0;
}

/* Mark the stored nonzero values of a sparse tensor (linear or [NNZ, rank]
 * coordinate indices) in a dense bitmap. */
static int sparse_bitmap(const Onnx__SparseTensorProto *s, uint64_t numel, uint64_t nnz,
			 uint8_t *nz, struct onnxpass_error *err)
{
	const Onnx__TensorProto *idx = s->indices;
	const char *name = s->values->name;
	uint64_t n_idx = 0;
	size_t rank;

	if (!idx || idx->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ||
	    opass_tensor_numel(idx, &n_idx, err) < 0)
		return opass_error(err, -EBADMSG, "sparse tensor '%s': indices missing or not INT64", name);
	rank = idx->n_dims == 2 ? s->n_dims : 1;
	if (n_idx != nnz * rank || (idx->has_raw_data ? idx->raw_data.len / 8 : idx->n_int64_data) != n_idx)
		return opass_error(err, -EBADMSG, "sparse tensor '%s': %" PRIu64 " indices for %" PRIu64
				   " values", name, n_idx, nnz);
	for (uint64_t k = 0; k < nnz; k++) {
		uint64_t lin = 0;

		for (size_t d = 0; d < rank; d++) {
			int64_t v;

			if (idx->has_raw_data)
				memcpy(&v, idx->raw_data.data + 8 * (k * rank + d), 8);
			else
				v = idx->int64_data[k * rank + d];
			if (v < 0 || (rank > 1 && v >= s->dims[d]))
				return opass_error(err, -EBADMSG, "sparse tensor '%s': index out of range", name);
			lin = rank > 1 ? lin * (uint64_t)s->dims[d] + (uint64_t)v : (uint64_t)v;
		}
		if (lin >= numel)
			return opass_error(err, -EBADMSG, "sparse tensor '%s': index out of range", name);
		nz[lin] = opass_tensor_get(s->values, k) != 0.0;
	}
	return 0;
}

static int row_sparse(struct inspect *in, const Onnx__SparseTensorProto *s, struct onnxpass_error *err)
{
	Onnx__TensorProto dense = { .dims = s->dims, .n_dims = s->n_dims };
	struct opass_view_map map;
	const char *op;
	uint64_t nnz_stored;
	struct row *row;
	char *alias;
	uint8_t *nz;
	int r;

	if (!s->values || !s->values->name)
		return opass_error(err, -EBADMSG, "sparse initializer without values or name");
	dense.name = s->values->name;
	sparse_view(in->model->proto->graph, s, &map, &op, &alias);
	row = row_new(in, s->values->name, alias);
	free(alias);
	if (!row)
		return opass_error(err, -ENOMEM, "out of memory");
	r = opass_tensor_numel(&dense, &row->numel, err);
	if (r == 0)
		r = opass_tensor_check(s->values, &nnz_stored, err);
	if (r < 0)
		return r;
	if (row->numel > OPASS_MAX_DENSE_ELEMENTS)
		return opass_error(err, -E2BIG, "sparse tensor '%s': dims claim %" PRIu64
				   " elements for %" PRIu64 " stored values (limit %" PRIu64 ")",
				   s->values->name, row->numel, nnz_stored, OPASS_MAX_DENSE_ELEMENTS);
	if (map.cols == 0)
		map.cols = (int64_t)row->numel;
	row->op = op;
	shape_text(row->shape, sizeof(row->shape), s->dims, s->n_dims);
	row->dtype = opass_dtype_name(s->values->data_type);
	row->storage = "sparse";
	row->bytes = nnz_stored * (opass_dtype_size(s->values->data_type) + 8);
	nz = calloc(row->numel ? row->numel : 1, 1);
	if (!nz)
		return opass_error(err, -ENOMEM, "out of memory");
	r = sparse_bitmap(s, row->numel, nnz_stored, nz, err);
	if (r == 0)
		row_stats(row, nz, &map);
	free(nz);
	return r;
}

static int rows_sparse(struct inspect *in, struct onnxpass_error *err)
{
	const Onnx__GraphProto *g = in->model->proto->graph;
	int r = 0;

	for (size_t i = 0; r == 0 && i < g->n_sparse_initializer; i++)
		r = row_sparse(in, g->sparse_initializer[i], err);
	return r;
}

/* An initializer of the main graph by name, or NULL. */
static const Onnx__TensorProto *initializer_get(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; name && i < g->n_initializer; i++)
		if (g->initializer[i]->name && strcmp(g->initializer[i]->name, name) == 0)
			return g->initializer[i];
	return NULL;
}

/* A weight rewritten to ai.onnx_pass::SparseMatMul (convert --format
 * ort-sparse): values / indices / row_ptr of B^T [N, K] in block rows. */
static int row_ort_sparse(struct inspect *in, const Onnx__NodeProto *node, struct onnxpass_error *err)
{
	const Onnx__GraphProto *g = in->model->proto->graph;
	const Onnx__TensorProto *t[3];
	int64_t k = opass_node_attr_int(node, "K", -1), n = opass_node_attr_int(node, "N", -1);
	int64_t br = opass_node_attr_int(node, "block_rows", 1), bc = opass_node_attr_int(node, "block_cols", 1);
	uint64_t stored, count;
	char *alias = opass_weight_alias_full(NULL, node->name, node->n_input > 4 ? node->input[4] : NULL);
	struct row *row;
	int r;

	for (size_t i = 0; i < 3; i++)
		t[i] = node->n_input > i + 1 ? initializer_get(g, node->input[i + 1]) : NULL;
	if (!t[0] || !t[1] || !t[2] || k < 0 || n < 0 || (n && (uint64_t)k > UINT64_MAX / (uint64_t)n)) {
		free(alias);
		return opass_error(err, -EBADMSG, "SparseMatMul '%s': weight arrays or K/N missing",
				   node->name ? node->name : "");
	}
	row = row_new(in, t[0]->name ? t[0]->name : "", alias);
	free(alias);
	if (!row)
		return opass_error(err, -ENOMEM, "out of memory");
	r = opass_tensor_check(t[0], &stored, err);
	if (r < 0)
		return r;
	row->op = "SparseMatMul";
	shape_text(row->shape, sizeof(row->shape), (const int64_t[]){ k, n }, 2);
	row->dtype = opass_dtype_name(t[0]->data_type);
	row->numel = (uint64_t)k * (uint64_t)n;
	row->nnz = opass_tensor_count_nonzero(t[0], stored);
	if (br == 1 && bc == 1)
		snprintf(row->pattern, sizeof(row->pattern), "CSR");
	else
		snprintf(row->pattern, sizeof(row->pattern), "BSR %" PRId64 "x%" PRId64, br, bc);
	row->storage = "ort-sparse";
	for (size_t i = 0; r == 0 && i < 3; i++) {
		r = opass_tensor_numel(t[i], &count, err);
		row->bytes += count * opass_dtype_size(t[i]->data_type);
	}
	return r;
}

static int rows_ort_sparse(struct inspect *in, struct onnxpass_error *err)
{
	const Onnx__GraphProto *g = in->model->proto->graph;
	int r = 0;

	for (size_t i = 0; r == 0 && i < g->n_node; i++) {
		const Onnx__NodeProto *node = g->node[i];

		if (node->domain && strcmp(node->domain, OPASS_ORT_DOMAIN) == 0 && node->op_type &&
		    strcmp(node->op_type, "SparseMatMul") == 0)
			r = row_ort_sparse(in, node, err);
	}
	return r;
}

/* --- output -------------------------------------------------------------- */

static double row_sparsity(const struct row *row)
{
	return row->numel ? 1.0 - (double)row->nnz / (double)row->numel : 0.0;
}

static int print_table(struct inspect *in, struct onnxpass_context *ctx)
{
	uint64_t numel = 0, nnz = 0, bytes = 0;
	int wn = 4, wa = 5;

	for (size_t i = 0; i < in->n_rows; i++) {
		int n = (int)strlen(in->rows[i].name), a = in->rows[i].alias ? (int)strlen(in->rows[i].alias) : 1;

		wn = n > wn ? n : wn;
		wa = a > wa ? a : wa;
	}
	onnxpass_context_print(ctx, "%-*s  %-*s  %-6s  %-20s  %-8s  %10s  %8s  %-18s  %-11s  %10s\n",
			       wn, "name", wa, "alias", "op", "shape", "dtype", "nonzeros", "sparsity",
			       "pattern", "storage", "bytes");
	for (size_t i = 0; i < in->n_rows; i++) {
		const struct row *row = &in->rows[i];

		onnxpass_context_print(ctx, "%-*s  %-*s  %-6s  %-20s  %-8s  %10" PRIu64 "  %7.2f%%  %-18s  %-11s  %10" PRIu64 "\n",
				       wn, row->name, wa, row->alias ? row->alias : "-", row->op,
				       row->shape, row->dtype, row->nnz, 100.0 * row_sparsity(row),
				       row->pattern, row->storage, row->bytes);
		numel += row->numel;
		nnz += row->nnz;
		bytes += row->bytes;
	}
	for (size_t i = 0; i < in->n_rows; i++)
		if (in->rows[i].note)
			onnxpass_context_print(ctx, "note: %s: %s\n", in->rows[i].name, in->rows[i].note);
	return onnxpass_context_print(ctx, "total: %zu weights, %" PRIu64 " values, %" PRIu64
				      " nonzeros, sparsity %.2f%%, %" PRIu64 " bytes\n",
				      in->n_rows, numel, nnz,
				      numel ? 100.0 * (1.0 - (double)nnz / (double)numel) : 0.0, bytes);
}

/* A JSON value the way Python prints it (lists as tuples, as torch shows). */
static void print_py(struct onnxpass_context *ctx, const cJSON *v)
{
	const cJSON *e;

	if (cJSON_IsArray(v)) {
		onnxpass_context_print(ctx, "(");
		cJSON_ArrayForEach(e, v) {
			print_py(ctx, e);
			onnxpass_context_print(ctx, "%s", e->next ? ", " : "");
		}
		onnxpass_context_print(ctx, ")");
	} else if (cJSON_IsString(v)) {
		onnxpass_context_print(ctx, "%s", v->valuestring);
	} else if (cJSON_IsNull(v)) {
		onnxpass_context_print(ctx, "None");
	} else if (cJSON_IsBool(v)) {
		onnxpass_context_print(ctx, "%s", cJSON_IsTrue(v) ? "True" : "False");
	} else if (cJSON_IsNumber(v)) {
		char text[32];

		/* the shortest text that reads back the same, as Python's repr */
		for (int digits = 15; digits <= 17; digits++) {
			snprintf(text, sizeof(text), "%.*g", digits, v->valuedouble);
			if (strtod(text, NULL) == v->valuedouble)
				break;
		}
		onnxpass_context_print(ctx, "%s", text);
	} else {
		char *text = cJSON_PrintUnformatted(v);

		onnxpass_context_print(ctx, "%s", text ? text : "?");
		free(text);
	}
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* torch BaseSparsifier.__repr__: groups with their keys sorted. */
static int print_groups(struct inspect *in, struct onnxpass_context *ctx)
{
	const struct opass_state *state = in->state;

	static const char *const classes[] = {
		[OPASS_SPARSIFIER_WEIGHT_NORM] = "WeightNormSparsifier",
		[OPASS_SPARSIFIER_NEARLY_DIAGONAL] = "NearlyDiagonalSparsifier",
		[OPASS_SPARSIFIER_WANDA] = "WandaSparsifier",
		[OPASS_SPARSIFIER_SPARSEGPT] = "SparseGPTSparsifier",
	};

	onnxpass_context_print(ctx, "\n%s (", classes[state->sparsifier]);
	for (size_t i = 0; i < state->n_groups; i++) {
		const struct opass_group *g = &state->groups[i];
		const cJSON *args = cJSON_GetObjectItemCaseSensitive(g->json, "args");
		const cJSON *keys[64], *e;
		size_t n = 0;

		onnxpass_context_print(ctx, "\n\tGroup %zu\n\t    module: %s(%s, view %s [%" PRId64 ", %" PRId64 "])\n",
				       i, opass_json_string(g->json, "op"), g->name,
				       opass_json_string(g->json, "view"), g->map.rows, g->map.cols);
		cJSON_ArrayForEach(e, args)
			if (n < 64)
				keys[n++] = e;
		qsort(keys, n, sizeof(keys[0]), key_cmp);
		for (size_t k = 0; k < n; k++) {
			onnxpass_context_print(ctx, "\t    %s: ", keys[k]->string);
			print_py(ctx, keys[k]);
			onnxpass_context_print(ctx, "\n");
		}
		onnxpass_context_print(ctx, "\t    tensor_fqn: %s\n", g->name);
		/* allocate: sensitivity (SPEC 12) chose this group's level */
		e = cJSON_GetObjectItemCaseSensitive(g->json, "allocated_sparsity_level");
		if (cJSON_IsNumber(e))
			onnxpass_context_print(ctx, "\t    allocated_sparsity_level: %.4g\n", e->valuedouble);
	}
	return onnxpass_context_print(ctx, ")\n");
}

static cJSON *report_json(const struct inspect *in)
{
	cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "weights");
	uint64_t numel = 0, nnz = 0, bytes = 0;
	cJSON *totals;

	for (size_t i = 0; list && i < in->n_rows; i++) {
		const struct row *row = &in->rows[i];
		cJSON *o = cJSON_CreateObject();

		cJSON_AddItemToArray(list, o);
		cJSON_AddStringToObject(o, "name", row->name);
		if (row->alias)
			cJSON_AddStringToObject(o, "alias", row->alias);
		else
			cJSON_AddNullToObject(o, "alias");
		cJSON_AddStringToObject(o, "op", row->op);
		cJSON_AddItemToObject(o, "shape", cJSON_Parse(row->shape));
		cJSON_AddStringToObject(o, "dtype", row->dtype);
		cJSON_AddNumberToObject(o, "numel", (double)row->numel);
		cJSON_AddNumberToObject(o, "nonzeros", (double)row->nnz);
		cJSON_AddNumberToObject(o, "sparsity", row_sparsity(row));
		cJSON_AddStringToObject(o, "pattern", row->pattern);
		cJSON_AddStringToObject(o, "storage", row->storage);
		cJSON_AddNumberToObject(o, "bytes", (double)row->bytes);
		if (row->note)
			cJSON_AddStringToObject(o, "note", row->note);
		numel += row->numel;
		nnz += row->nnz;
		bytes += row->bytes;
	}
	totals = cJSON_AddObjectToObject(root, "totals");
	cJSON_AddNumberToObject(totals, "weights", (double)in->n_rows);
	cJSON_AddNumberToObject(totals, "numel", (double)numel);
	cJSON_AddNumberToObject(totals, "nonzeros", (double)nnz);
	cJSON_AddNumberToObject(totals, "sparsity", numel ? 1.0 - (double)nnz / (double)numel : 0.0);
	cJSON_AddNumberToObject(totals, "bytes", (double)bytes);
	if (in->state)
		cJSON_AddItemToObject(root, "state", cJSON_Duplicate(in->state->root, true));
	return root;
}

static int print_json(struct inspect *in, struct onnxpass_context *ctx)
{
	cJSON *root = report_json(in);
	char *text = root ? cJSON_Print(root) : NULL;
	int r = text ? onnxpass_context_print(ctx, "%s\n", text) : -ENOMEM;

	free(text);
	cJSON_Delete(root);
	return r;
}

int opass_pass_inspect(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err)
{
	struct inspect in = { .model = model };
	struct opass_config *config = NULL;
	int r;

	r = opass_context_config(ctx, &config, err);
	if (r == 0)
		r = opass_model_validate(model->proto, err);
	if (r == 0 && opass_model_get_metadata(model->proto, OPASS_STATE_KEY))
		r = opass_state_load(model, &in.state, err);
	if (r == 0)
		r = rows_weights(&in, err);
	if (r == 0)
		r = rows_groups(&in, err);
	if (r == 0)
		r = rows_sparse(&in, err);
	if (r == 0)
		r = rows_ort_sparse(&in, err);
	if (r == 0 && opass_json_bool(config->options, "json", false))
		r = print_json(&in, ctx);
	else if (r == 0) {
		r = print_table(&in, ctx);
		if (r == 0 && in.state)
			r = print_groups(&in, ctx);
	}
	if (r == -ENOMEM)
		opass_error(err, r, "out of memory");
	for (size_t i = 0; i < in.n_rows; i++) {
		free(in.rows[i].name);
		free(in.rows[i].alias);
		free(in.rows[i].note);
	}
	free(in.rows);
	opass_state_free(in.state);
	opass_config_free(config);
	return r;
}
