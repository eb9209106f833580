/* SPDX-License-Identifier: MIT */
/*
 * convert --format ort-sparse: sparse MatMul / Gemm weights for ONNX Runtime
 * with onnx-pass's custom ops (plugin/ort_ops.c, loaded from libonnxpass.so).
 *
 * Before:  A ─► MatMul(A, W [K, N]) ─► Y        (or Gemm(A, W, C; transB))
 * After:   A ─► ai.onnx_pass::SparseMatMul(A, W_values, W_indices, W_row_ptr[, C];
 *                                          K, N, block_rows, block_cols) ─► Y
 *
 * W_* hold B^T [N, K] in block-sparse rows (CSR for 1x1 blocks), indices
 * INT32. The block shape is the cheapest of 1x1, 1x4 and 4x1 by the kernels'
 * measured cost per stored element (a stored block keeps its zeros), so full
 * 1x4 or 4x1 blocks give BSR and unstructured zeros CSR. The dense W is
 * removed when nothing else reads it; opset ai.onnx_pass 1 is imported.
 *
 * Conditions: W is a float32 rank-2 initializer of the main graph, neither a
 * graph input nor output, with at least min_sparsity zeros; a consumer is
 * rewritten when it is a main-graph MatMul reading W as B, or a Gemm with
 * transA = 0, alpha = 1 and no C, or beta = 1 and C an initializer of N
 * elements along its last axis (or of one). Consumers that disagree with the
 * first on W's orientation, and all other weights, stay dense.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "filemap.h"
#include "graph.h"
#include "ort_sparse.h"
#include "sparse_kernels.h"
#include "tensor.h"

#define DT_FLOAT ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT

/* Run time per stored element relative to CSR, measured with the AVX-512
 * kernels (M = 128, K = N = 768, 50-90 % zeros): 4x1 blocks load each packed
 * row of A once for 4 outputs. */
static const struct {
	int64_t br, bc;
	double cost;
} block_shapes[] = {
	{ 1, 1, 1.0 },
	{ 1, 4, 0.9 },
	{ 4, 1, 0.45 },
};

struct rewrite {
	const struct opass_filemap *map; /* where the model's tensors may be mapped */
	const struct opass_weight *w;
	bool stored_nk;         /* W is [N, K] (Gemm transB = 1), else [K, N] */
	int64_t n, k;
	bool *eligible;         /* per use */
	size_t n_eligible;
	struct opass_bsr *bsr;
	char *names[3];         /* values, indices, row_ptr */
};

static bool name_is(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static const Onnx__TensorProto *initializer_find(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_initializer; i++)
		if (name_is(g->initializer[i]->name, name))
			return g->initializer[i];
	return NULL;
}

static bool attr_float_is(const Onnx__NodeProto *node, const char *name, float value)
{
	const Onnx__AttributeProto *a = opass_node_attr(node, name);

	return !a || a->f == value;
}

/* Gemm's C: none, or beta = 1 and an initializer of N (or 1) elements. */
static bool gemm_bias_ok(const Onnx__GraphProto *g, const Onnx__NodeProto *node, int64_t n)
{
	const Onnx__TensorProto *c;
	uint64_t numel;

	if (node->n_input < 3 || !node->input[2] || !node->input[2][0])
		return true;
	if (!attr_float_is(node, "beta", 1.0f))
		return false;
	c = initializer_find(g, node->input[2]);
	if (!c || c->data_type != DT_FLOAT || opass_tensor_numel(c, &numel, NULL) < 0)
		return false;
	return numel == 1 || (numel == (uint64_t)n && c->dims[c->n_dims - 1] == n);
}

/* 0: the use reads W as [K, N], 1: as [N, K], -1: not rewritable. */
static int use_orientation(const Onnx__GraphProto *g, const struct opass_weight *w,
			   const struct opass_use *use)
{
	const Onnx__NodeProto *node = use->node;
	int nk;

	if (use->graph != g || use->input != 1 || node->n_output != 1)
		return -1;
	if (opass_node_is(node, "MatMul"))
		return node->n_input == 2 ? 0 : -1;
	if (!opass_node_is(node, "Gemm") || opass_node_attr_int(node, "transA", 0) != 0 ||
	    !attr_float_is(node, "alpha", 1.0f))
		return -1;
	nk = opass_node_attr_int(node, "transB", 0) != 0;
	return gemm_bias_ok(g, node, w->tensor->dims[nk ? 0 : 1]) ? nk : -1;
}

static bool weight_eligible(const Onnx__ModelProto *model, const struct opass_weight *w)
{
	const Onnx__GraphProto *g = model->graph;

	if (w->graph != g || w->constant || w->in_subgraph || !w->tensor ||
	    w->tensor->data_type != DT_FLOAT || w->tensor->n_dims != 2)
		return false;
	for (size_t i = 0; i < g->n_input; i++)
		if (name_is(g->input[i]->name, w->name))
			return false;
	for (size_t i = 0; i < g->n_output; i++)
		if (name_is(g->output[i]->name, w->name))
			return false;
	return true;
}

/* Which uses to rewrite; rw->n_eligible stays 0 when W stays dense. */
static int rewrite_plan(const Onnx__ModelProto *model, double min_sparsity, struct rewrite *rw,
			struct onnxpass_error *err)
{
	const struct opass_weight *w = rw->w;
	uint64_t numel, nnz;
	size_t n = 0;
	int r, first = -1;

	if (!weight_eligible(model, w))
		return 0;
	r = opass_tensor_check(w->tensor, &numel, err);
	if (r < 0)
		return r;
	nnz = opass_tensor_count_nonzero(w->tensor, numel);
	opass_filemap_release(rw->map, w->tensor);
	if (numel == 0 || 1.0 - (double)nnz / (double)numel < min_sparsity)
		return 0;
	rw->eligible = calloc(w->n_uses + 1, sizeof(*rw->eligible));
	if (!rw->eligible)
		return opass_error(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < w->n_uses; i++) {
		int o = use_orientation(model->graph, w, &w->uses[i]);

		if (first < 0)
			first = o;
		rw->eligible[i] = o >= 0 && o == first;
		n += rw->eligible[i];
	}
	rw->stored_nk = first == 1;
	rw->n = w->tensor->dims[rw->stored_nk ? 0 : 1];
	rw->k = w->tensor->dims[rw->stored_nk ? 1 : 0];
	rw->n_eligible = n;
	return 0;
}

/* Bytes of the three arrays (INT32 indices) for this many blocks. */
static uint64_t bsr_bytes(int64_t n, int64_t br, int64_t bc, int64_t blocks)
{
	return (uint64_t)blocks * (uint64_t)(br * bc) * 4 + (uint64_t)blocks * 4 +
	       (uint64_t)((n + br - 1) / br + 1) * 4;
}

/* The block shape with the lowest estimated cost among those smaller than
 * the dense weight; false when none is (the weight stays dense). */
static bool block_choose(const float *bt, int64_t n, int64_t k, int64_t *ret_br, int64_t *ret_bc)
{
	double best = -1;

	for (size_t i = 0; i < sizeof(block_shapes) / sizeof(block_shapes[0]); i++) {
		int64_t blocks, nonzero, br = block_shapes[i].br, bc = block_shapes[i].bc;
		double cost;

		opass_bsr_count(bt, n, k, br, bc, &blocks, &nonzero);
		if (bsr_bytes(n, br, bc, blocks) >= (uint64_t)(n * k) * 4)
			continue;
		cost = (double)(blocks * br * bc) * block_shapes[i].cost;
		if (best < 0 || cost < best) {
			best = cost;
			*ret_br = br;
			*ret_bc = bc;
		}
	}
	return best >= 0;
}

static int rewrite_build(struct rewrite *rw, struct onnxpass_error *err)
{
	const Onnx__TensorProto *t = rw->w->tensor;
	int64_t n = rw->n, k = rw->k, br = 1, bc = 1;
	float *bt = malloc((size_t)(n * k + 1) * sizeof(*bt));
	int r;

	if (!bt)
		return opass_error(err, -ENOMEM, "out of memory");
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < k; j++)
			bt[i * k + j] = (float)opass_tensor_get(t, (uint64_t)(rw->stored_nk ?
									  i * k + j : j * n + i));
	opass_filemap_release(rw->map, t);
	r = 0;
	if (block_choose(bt, n, k, &br, &bc))
		r = opass_bsr_from_dense(bt, n, k, br, bc, &rw->bsr, err);
	else
		rw->n_eligible = 0;   /* never stored bigger than dense */
	free(bt);
	return r;
}
static void index_store(uint8_t *out, const int64_t *v, int64_t n, bool index64)
{
	for (int64_t i = 0; i < n; i++) {
		int32_t v32 = (int32_t)v[i];

		if (index64)
			memcpy(out + 8 * i, &v[i], 8);
		else
			memcpy(out + 4 * i, &v32, 4);
	}
}

/* The three initializers, appended to the main graph. */
static int tensors_add(Onnx__GraphProto *g, const struct rewrite *rw)
{
	const struct opass_bsr *b = rw->bsr;
	int64_t n_rows = (b->n + b->br - 1) / b->br + 1, n_values = b->n_blocks * b->br * b->bc;
	bool index64 = b->n_blocks > INT32_MAX;
	int32_t it = index64 ? ONNX__TENSOR_PROTO__DATA_TYPE__INT64 : ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
	size_t i = 0;
	Onnx__TensorProto *t[3] = {
		opass_tensor_new(rw->names[0], DT_FLOAT, (const int64_t[]){ n_values }, 1),
		opass_tensor_new(rw->names[1], it, (const int64_t[]){ b->n_blocks }, 1),
		opass_tensor_new(rw->names[2], it, (const int64_t[]){ n_rows }, 1),
	};

	if (t[0] && t[1] && t[2]) {
		memcpy(t[0]->raw_data.data, b->values, (size_t)n_values * sizeof(float));
		index_store(t[1]->raw_data.data, b->col, b->n_blocks, index64);
		index_store(t[2]->raw_data.data, b->row_ptr, n_rows, index64);
		while (i < 3 && opass_graph_add_initializer(g, t[i]) == 0)
			i++;
	}
	if (i == 3)
		return 0;
	for (; i < 3; i++)
		if (t[i])
			onnx__tensor_proto__free_unpacked(t[i], NULL);
	return -ENOMEM;
}

static void attributes_clear(Onnx__NodeProto *node)
{
	for (size_t i = 0; i < node->n_attribute; i++)
		onnx__attribute_proto__free_unpacked(node->attribute[i], NULL);
	free(node->attribute);
	node->attribute = NULL;
	node->n_attribute = 0;
}

/* New input list: A, values, indices, row_ptr[, C]; old names freed. */
static int node_inputs_set(Onnx__NodeProto *node, const struct rewrite *rw)
{
	bool bias = opass_node_is(node, "Gemm") && node->n_input >= 3 && node->input[2] &&
		    node->input[2][0];
	size_t n = bias ? 5 : 4;
	char **in = calloc(n, sizeof(*in));

	for (size_t i = 0; in && i < 3; i++) {
		in[1 + i] = strdup(rw->names[i]);
		if (!in[1 + i]) {
			for (size_t j = 1; j <= i; j++)
				free(in[j]);
			free(in);
			in = NULL;
		}
	}
	if (!in)
		return -ENOMEM;
	in[0] = node->input[0];
	if (bias)
		in[4] = node->input[2];
	for (size_t i = 1; i < node->n_input; i++)
		if (!(bias && i == 2))
			free(node->input[i]);
	free(node->input);
	node->input = in;
	node->n_input = n;
	return 0;
}

static int node_rewrite(Onnx__NodeProto *node, const struct rewrite *rw)
{
	const struct opass_bsr *b = rw->bsr;
	int r;

	r = node_inputs_set(node, rw);
	if (r == 0)
		r = opass_string_replace(&node->op_type, "SparseMatMul");
	if (r == 0)
		r = opass_string_replace(&node->domain, OPASS_ORT_DOMAIN);
	if (r < 0)
		return r;
	attributes_clear(node);
	r = opass_node_add_int_attr(node, "K", rw->k);
	if (r == 0)
		r = opass_node_add_int_attr(node, "N", rw->n);
	if (r == 0)
		r = opass_node_add_int_attr(node, "block_rows", b->br);
	if (r == 0)
		r = opass_node_add_int_attr(node, "block_cols", b->bc);
	return r;
}

/* Build the BSR and name the initializers; the model is not changed. */
static int rewrite_prepare(const Onnx__ModelProto *model, double min_sparsity,
			   struct opass_strmap *names, struct rewrite *rw,
			   struct onnxpass_error *err)
{
	static const char *const suffix[3] = { "_values", "_indices", "_row_ptr" };
	int r;

	r = rewrite_plan(model, min_sparsity, rw, err);
	if (r < 0 || rw->n_eligible == 0)
		return r;
	r = rewrite_build(rw, err);
	if (r < 0 || rw->n_eligible == 0)
		return r;
	for (size_t i = 0; r == 0 && i < 3; i++)
		if (opass_names_make(names, rw->w->name, suffix[i], &rw->names[i]) < 0)
			r = opass_error(err, -ENOMEM, "out of memory");
	return r;
}

/* Rewrite the weight's nodes; a dense weight no node reads any more goes
 * into unused (removed by the caller, all at once). */
static int rewrite_apply(Onnx__ModelProto *model, const struct rewrite *rw,
			 struct opass_strmap *unused)
{
	const struct opass_weight *w = rw->w;
	char key[32];
	int r;

	r = tensors_add(model->graph, rw);
	for (size_t i = 0; r == 0 && i < w->n_uses; i++)
		if (rw->eligible[i])
			r = node_rewrite(w->uses[i].node, rw);
	opass_ptr_key(key, w->tensor);
	if (r == 0 && rw->n_eligible == w->n_uses)
		r = opass_strmap_put_copy(unused, key, NULL);
	return r;
}

static void rewrite_fini(struct rewrite *rw)
{
	free(rw->eligible);
	opass_bsr_free(rw->bsr);
	for (size_t i = 0; i < 3; i++)
		free(rw->names[i]);
}

static int opset_import_add(Onnx__ModelProto *model)
{
	Onnx__OperatorSetIdProto *op, **list;

	for (size_t i = 0; i < model->n_opset_import; i++)
		if (name_is(model->opset_import[i]->domain, OPASS_ORT_DOMAIN))
			return 0;
	op = malloc(sizeof(*op));
	list = realloc(model->opset_import, (model->n_opset_import + 1) * sizeof(*list));
	if (list)
		model->opset_import = list;
	if (!op || !list) {
		free(op);
		return -ENOMEM;
	}
	onnx__operator_set_id_proto__init(op);
	op->domain = strdup(OPASS_ORT_DOMAIN);
	op->has_version = true;
	op->version = 1;
	if (!op->domain) {
		free(op);
		return -ENOMEM;
	}
	list[model->n_opset_import++] = op;
	return 0;
}

/* Two phases: every weight is read and every name made (the name map borrows
 * the model's strings) before the model changes. */
int opass_ort_sparse_apply(Onnx__ModelProto *model, const struct opass_state *state,
			   double min_sparsity, struct onnxpass_error *err)
{
	struct opass_weights *weights = NULL;
	struct opass_strmap names = { 0 };
	struct opass_strmap unused = { 0 };
	struct rewrite *rw;
	size_t n = state->n_groups, done = 0;
	int r;

	rw = calloc(n + 1, sizeof(*rw));
	if (!rw)
		return opass_error(err, -ENOMEM, "out of memory");
	r = opass_weights_find(model, &weights, err);
	if (r == 0 && opass_names_collect(model, &names) < 0)
		r = opass_error(err, -ENOMEM, "out of memory");
	for (size_t i = 0; r == 0 && i < n; i++) {
		rw[i].map = opass_state_filemap(state);
		rw[i].w = opass_weights_get(weights, state->groups[i].name);
		if (rw[i].w)
			r = rewrite_prepare(model, min_sparsity, &names, &rw[i], err);
	}
	opass_strmap_fini(&names);
	for (size_t i = 0; r == 0 && i < n; i++) {
		if (rw[i].n_eligible == 0)
			continue;
		if (rewrite_apply(model, &rw[i], &unused) < 0)
			r = opass_error(err, -ENOMEM, "%s: out of memory", rw[i].w->name);
		done++;
	}
	if (r == 0)
		opass_graph_remove_marked(model->graph, opass_state_filemap(state), &unused, NULL);
	opass_strmap_fini(&unused);
	if (r == 0 && done > 0 && opset_import_add(model) < 0)
		r = opass_error(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		rewrite_fini(&rw[i]);
	free(rw);
	opass_weights_free(weights);
	return r;
}
