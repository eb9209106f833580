/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

const char fuzz_config[] =
	"{\"defaults\": {\"sparsity_level\": 0.5, \"sparse_block_shape\": [1, 4],"
	" \"zeros_per_block\": 2}, \"options\": {\"threads\": 1, \"format\": \"coo\"}}";

/* Every built-in pass, in the orders the CLI runs them. */
static const char *const pass_lists[] = {
	"config",
	"inspect",
	"prepare,step,convert",
	"prepare,step,step,squash",
	"prepare,state-export,inspect",
	"step,inspect",
	"squash",
	"convert",
	"state-export",
	"state-load,inspect",
};

static int run_list(const uint8_t *data, size_t size, const char *base_dir,
		    struct onnxpass_registry *reg, const char *list, const char *config)
{
	struct onnxpass_model *model = NULL;
	struct onnxpass_error err = { 0 };
	char *report = NULL;
	void *out = NULL;
	size_t out_size = 0;
	int r;

	r = onnxpass_model_load_bytes(data, size, base_dir, &model, &err);
	if (r < 0)
		return r;
	r = onnxpass_registry_run(reg, model, list, config, &report, &err);
	if (r == 0)
		r = onnxpass_model_save_bytes(model, &out, &out_size, &err);
	onnxpass_free(out);
	onnxpass_free(report);
	onnxpass_model_free(model);
	return r;
}

int fuzz_run_lists(const uint8_t *data, size_t size, const char *base_dir, const char *config)
{
	struct onnxpass_registry *reg = NULL;
	int ok = 0;

	struct onnxpass_model *model = NULL;

	/* not a model: every list would fail the same way */
	if (onnxpass_model_load_bytes(data, size, base_dir, &model, NULL) < 0)
		return 0;
	onnxpass_model_free(model);
	if (onnxpass_registry_new(&reg, NULL) < 0)
		abort();
	for (size_t i = 0; i < sizeof(pass_lists) / sizeof(pass_lists[0]); i++)
		ok += run_list(data, size, base_dir, reg, pass_lists[i], config) == 0;
	onnxpass_registry_free(reg);
	return ok;
}

/* --- the small model ---------------------------------------------------------- */

static Onnx__TensorProto *weight(const char *name, int64_t rows, int64_t cols)
{
	Onnx__TensorProto *t = calloc(1, sizeof(*t));
	size_t n = (size_t)(rows * cols);

	onnx__tensor_proto__init(t);
	t->name = strdup(name);
	t->has_data_type = 1;
	t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
	t->n_dims = 2;
	t->dims = calloc(2, sizeof(*t->dims));
	t->dims[0] = rows;
	t->dims[1] = cols;
	t->n_float_data = n;
	t->float_data = calloc(n, sizeof(float));
	for (size_t i = 0; i < n; i++)
		t->float_data[i] = (float)((i * 7919) % 23) - 11.0f;
	return t;
}

static char **strv(const char *a, const char *b)
{
	char **v = calloc(2, sizeof(*v));

	v[0] = strdup(a);
	v[1] = b ? strdup(b) : NULL;
	return v;
}

static Onnx__NodeProto *node(const char *op, const char *name, const char *a, const char *b,
			     const char *out)
{
	Onnx__NodeProto *n = calloc(1, sizeof(*n));

	onnx__node_proto__init(n);
	n->op_type = strdup(op);
	n->name = strdup(name);
	n->input = strv(a, b);
	n->n_input = 2;
	n->output = strv(out, NULL);
	n->n_output = 1;
	return n;
}

static void node_add_trans_b(Onnx__NodeProto *n)
{
	Onnx__AttributeProto *a = calloc(1, sizeof(*a));

	onnx__attribute_proto__init(a);
	a->name = strdup("transB");
	a->has_type = 1;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
	a->has_i = 1;
	a->i = 1;
	n->n_attribute = 1;
	n->attribute = calloc(1, sizeof(*n->attribute));
	n->attribute[0] = a;
}

static Onnx__ValueInfoProto *value(const char *name)
{
	Onnx__ValueInfoProto *v = calloc(1, sizeof(*v));

	onnx__value_info_proto__init(v);
	v->name = strdup(name);
	return v;
}

Onnx__ModelProto *fuzz_model_new(size_t n_weights)
{
	Onnx__ModelProto *m = calloc(1, sizeof(*m));
	Onnx__GraphProto *g = calloc(1, sizeof(*g));
	Onnx__OperatorSetIdProto *opset = calloc(1, sizeof(*opset));

	onnx__model_proto__init(m);
	onnx__graph_proto__init(g);
	onnx__operator_set_id_proto__init(opset);
	m->has_ir_version = 1;
	m->ir_version = 7;
	opset->has_version = 1;
	opset->version = 13;
	m->n_opset_import = 1;
	m->opset_import = calloc(1, sizeof(*m->opset_import));
	m->opset_import[0] = opset;
	m->graph = g;
	g->name = strdup("g");
	g->node = calloc(n_weights + 1, sizeof(*g->node));
	g->initializer = calloc(n_weights + 1, sizeof(*g->initializer));
	for (size_t i = 0; i < n_weights; i++) {
		char w[32], in[32], out[32], name[48];
		bool gemm = i % 2 == 0;

		snprintf(w, sizeof(w), "w%zu", i);
		snprintf(in, sizeof(in), i ? "h%zu" : "x", i);
		snprintf(out, sizeof(out), "h%zu", i + 1);
		snprintf(name, sizeof(name), "/layer%zu/%s", i, gemm ? "Gemm" : "MatMul");
		g->node[g->n_node++] = node(gemm ? "Gemm" : "MatMul", name, in, w, out);
		if (gemm)
			node_add_trans_b(g->node[i]);
		g->initializer[g->n_initializer++] = weight(w, 8, 8);
	}
	g->n_input = 1;
	g->input = calloc(1, sizeof(*g->input));
	g->input[0] = value("x");
	g->n_output = 1;
	g->output = calloc(1, sizeof(*g->output));
	g->output[0] = value(g->n_node ? g->node[g->n_node - 1]->output[0] : "x");
	return m;
}

uint8_t *fuzz_model_pack(Onnx__ModelProto *m, size_t *ret_size)
{
	uint8_t *buf;

	*ret_size = onnx__model_proto__get_packed_size(m);
	buf = malloc(*ret_size ? *ret_size : 1);
	onnx__model_proto__pack(m, buf);
	onnx__model_proto__free_unpacked(m, NULL);
	return buf;
}

uint8_t *fuzz_small_model(size_t *ret_size)
{
	return fuzz_model_pack(fuzz_model_new(2), ret_size);
}
