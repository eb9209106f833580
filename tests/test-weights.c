/* SPDX-License-Identifier: MIT */
/*
 * Weight discovery (SPEC 4): every generated model against the expectations
 * in manifest.json, the PyTorch alias rule, shared weights and subgraph
 * scoping (shadowed names).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "model.h"
#include "tensor.h"
#include "testlib.h"
#include "weights.h"

static const cJSON *item(const cJSON *object, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(object, key);
}

static const char *str(const cJSON *object, const char *key)
{
	const cJSON *v = item(object, key);

	ck_assert_msg(cJSON_IsString(v), "manifest: %s is not a string", key);
	return v->valuestring;
}

static double num(const cJSON *object, const char *key)
{
	const cJSON *v = item(object, key);

	ck_assert_msg(cJSON_IsNumber(v), "manifest: %s is not a number", key);
	return v->valuedouble;
}

static struct onnxpass_model *load_generated(const char *file)
{
	struct onnxpass_error err = { 0 };
	struct onnxpass_model *model = NULL;
	char *path = NULL;
	int r;

	ck_assert_int_ge(asprintf(&path, "%s/%s", test_models_dir, file), 0);
	r = onnxpass_model_load_file(path, &model, &err);
	ck_assert_msg(r == 0, "loading %s failed (%d): %s", path, r, err.message);
	free(path);
	return model;
}

static struct opass_weights *find_ok(Onnx__ModelProto *proto)
{
	struct onnxpass_error err = { 0 };
	struct opass_weights *weights = NULL;
	int r = opass_weights_find(proto, &weights, &err);

	ck_assert_msg(r == 0, "opass_weights_find failed (%d): %s", r, err.message);
	ck_assert_ptr_nonnull(weights);
	return weights;
}

/* --- manifest ------------------------------------------------------------- */

/* Element (0, j) of the 2-D view, read from the stored tensor. */
static double view_row0(const struct opass_weight *w, int64_t j)
{
	if (w->view == OPASS_VIEW_TRANSPOSED)
		return opass_tensor_get(w->tensor, (uint64_t)(j * w->tensor->dims[1]));
	return opass_tensor_get(w->tensor, (uint64_t)j);
}

static void assert_values(const char *model, const cJSON *e, const struct opass_weight *w,
			  bool approx)
{
	struct onnxpass_error err = { 0 };
	const cJSON *row0 = item(e, "view_row0"), *v;
	double sum = 0, want_sum = num(e, "sum_abs");
	uint64_t numel = 0;
	int64_t j = 0;

	ck_assert_msg(opass_tensor_check(w->tensor, &numel, &err) == 0, "%s: %s", model,
		      err.message);
	cJSON_ArrayForEach(v, row0) {
		double got = view_row0(w, j), want = v->valuedouble;
		double tol = approx ? 1e-5 * fabs(want) + 1e-7 : 0.0;

		ck_assert_msg(fabs(got - want) <= tol, "%s %s: view[0][%lld] = %.9g, expected %.9g",
			      model, w->name, (long long)j, got, want);
		j++;
	}
	ck_assert_int_eq(j, w->cols < 8 ? w->cols : 8);
	for (uint64_t i = 0; i < numel; i++)
		sum += fabs(opass_tensor_get(w->tensor, i));
	ck_assert_msg(fabs(sum - want_sum) <= (approx ? 1e-5 : 1e-9) * want_sum,
		      "%s %s: sum |w| = %.12g, expected %.12g", model, w->name, sum, want_sum);
}

static void assert_storage(const char *model, const char *storage, const struct opass_weight *w)
{
	const Onnx__TensorProto *t = w->tensor;

	/* external data is read into raw_data on load */
	if (strcmp(storage, "raw_data") == 0 || strcmp(storage, "external") == 0)
		ck_assert_msg(t->has_raw_data, "%s %s: not in raw_data", model, w->name);
	else if (strcmp(storage, "float_data") == 0)
		ck_assert_msg(!t->has_raw_data && t->n_float_data > 0, "%s %s", model, w->name);
	else if (strcmp(storage, "double_data") == 0)
		ck_assert_msg(!t->has_raw_data && t->n_double_data > 0, "%s %s", model, w->name);
	else if (strcmp(storage, "int32_data") == 0)
		ck_assert_msg(!t->has_raw_data && t->n_int32_data > 0, "%s %s", model, w->name);
	else
		ck_abort_msg("manifest: unknown storage %s", storage);
}

/* Is g the body (If branch, Loop/Scan body) of a node of op_type in parent? */
static bool is_body_of(const Onnx__GraphProto *parent, const Onnx__GraphProto *g,
		       const char *op_type)
{
	for (size_t i = 0; i < parent->n_node; i++) {
		const Onnx__NodeProto *n = parent->node[i];

		for (size_t a = 0; strcmp(n->op_type, op_type) == 0 && a < n->n_attribute; a++)
			if (n->attribute[a]->g == g)
				return true;
	}
	return false;
}

static void assert_location(const char *model, const cJSON *e, const struct opass_weight *w,
			    const Onnx__GraphProto *main_graph)
{
	const char *location = str(e, "location");
	const cJSON *subgraph = item(e, "subgraph");
	bool in_body = false;

	if (strcmp(location, "constant") == 0) {
		ck_assert_msg(w->constant, "%s %s: not found as a Constant", model, w->name);
		ck_assert_str_eq(w->constant->op_type, "Constant");
		ck_assert_str_eq(w->constant->output[0], w->name);
		ck_assert_int_eq(w->in_subgraph, w->graph != main_graph);
	} else {
		ck_assert_msg(!w->constant, "%s %s: found as a Constant", model, w->name);
		ck_assert_int_eq(w->in_subgraph, strcmp(location, "subgraph_initializer") == 0);
		ck_assert_int_eq(w->graph != main_graph, w->in_subgraph);
		if (strcmp(location, "initializer") != 0)
			ck_assert_str_eq(location, "subgraph_initializer");
	}
	for (size_t i = 0; i < w->n_uses; i++) {
		const struct opass_use *u = &w->uses[i];

		if (cJSON_IsString(subgraph))
			in_body = in_body || is_body_of(main_graph, u->graph, subgraph->valuestring);
		else
			ck_assert_msg(u->graph == main_graph, "%s %s: used in a subgraph", model, w->name);
	}
	ck_assert_msg(!cJSON_IsString(subgraph) || in_body, "%s %s: no use inside the %s body",
		      model, w->name, cJSON_IsString(subgraph) ? subgraph->valuestring : "");
}

/* Every use is a real node input slot that names the weight. */
static void assert_uses(const char *model, const struct opass_weight *w)
{
	for (size_t i = 0; i < w->n_uses; i++) {
		const struct opass_use *u = &w->uses[i];
		bool in_graph = false;

		for (size_t k = 0; k < u->graph->n_node; k++)
			in_graph = in_graph || u->graph->node[k] == u->node;
		ck_assert_msg(in_graph, "%s %s: use %zu is not a node of its graph", model, w->name, i);
		ck_assert_uint_lt(u->input, u->node->n_input);
		ck_assert_str_eq(u->node->input[u->input], w->name);
		if (w->via_transpose)
			ck_assert_str_eq(u->node->op_type, "Transpose");
	}
}

static void assert_weight(const char *model, const char *source, const cJSON *e,
			  const struct opass_weights *weights, const Onnx__GraphProto *main_graph)
{
	const char *name = str(e, "name"), *op = str(e, "op");
	const struct opass_weight *w = opass_weights_get(weights, name);
	const cJSON *alias = item(e, "alias"), *shape = item(e, "shape"), *d, *via, *conflict;
	size_t k = 0;

	ck_assert_msg(w, "%s: weight %s not found", model, name);
	if (cJSON_IsNull(alias))
		ck_assert_msg(!w->alias, "%s %s: alias %s, expected none", model, name, w->alias);
	else
		ck_assert_msg(w->alias && strcmp(w->alias, alias->valuestring) == 0,
			      "%s %s: alias %s, expected %s", model, name, w->alias ? w->alias : "(null)",
			      alias->valuestring);
	ck_assert_msg(strcmp(w->op, op) == 0, "%s %s: op %s, expected %s", model, name, w->op, op);
	ck_assert_str_eq(w->module_type, strcmp(op, "Conv") == 0 ? "conv" : "linear");
	ck_assert_msg(strcmp(opass_view_name(w->view), str(e, "view")) == 0,
		      "%s %s: view %s, expected %s", model, name, opass_view_name(w->view),
		      str(e, "view"));
	ck_assert_msg(w->rows == (int64_t)num(e, "rows") && w->cols == (int64_t)num(e, "cols"),
		      "%s %s: view %lldx%lld, expected %gx%g", model, name, (long long)w->rows,
		      (long long)w->cols, num(e, "rows"), num(e, "cols"));
	ck_assert_str_eq(opass_dtype_name(w->tensor->data_type), str(e, "dtype"));
	ck_assert_uint_eq(w->tensor->n_dims, (size_t)cJSON_GetArraySize(shape));
	cJSON_ArrayForEach(d, shape)
		ck_assert_int_eq(w->tensor->dims[k++], (int64_t)d->valuedouble);
	ck_assert_msg(w->n_uses == (size_t)num(e, "consumers"), "%s %s: %zu uses, expected %g",
		      model, name, w->n_uses, num(e, "consumers"));
	via = item(e, "via");
	ck_assert_int_eq(w->via_transpose,
			 cJSON_IsString(via) && strcmp(via->valuestring, "Transpose") == 0);
	conflict = item(e, "view_conflict");
	ck_assert_msg((w->note != NULL) == cJSON_IsTrue(conflict), "%s %s: note '%s'", model, name,
		      w->note ? w->note : "(none)");
	assert_storage(model, str(e, "storage"), w);
	assert_location(model, e, w, main_graph);
	assert_uses(model, w);
	assert_values(model, e, w, strcmp(source, "torch") == 0 && strcmp(op, "Conv") == 0);
}

/* Manifest reasons and a word the library's reason must contain. */
static const char *reason_word(const char *reason)
{
	if (strcmp(reason, "dtype") == 0)
		return "dtype";
	if (strcmp(reason, "constant_a") == 0)
		return "constant";
	if (strcmp(reason, "rank") == 0)
		return "rank";
	ck_abort_msg("manifest: unknown skip reason %s", reason);
	return NULL;
}

static void assert_skipped(const char *model, const cJSON *list,
			   const struct opass_weights *weights)
{
	const cJSON *e;

	ck_assert_msg(weights->n_skipped == (size_t)cJSON_GetArraySize(list),
		      "%s: %zu skipped, expected %d", model, weights->n_skipped,
		      cJSON_GetArraySize(list));
	cJSON_ArrayForEach(e, list) {
		const struct opass_skip *s = NULL;
		const char *word = reason_word(str(e, "reason"));

		for (size_t i = 0; i < weights->n_skipped; i++)
			if (strcmp(weights->skipped[i].name, str(e, "name")) == 0)
				s = &weights->skipped[i];
		ck_assert_msg(s, "%s: %s is not skipped", model, str(e, "name"));
		ck_assert_str_eq(s->op, str(e, "op"));
		ck_assert_msg(strstr(s->reason, word), "%s %s: reason '%s' lacks '%s'", model, s->name,
			      s->reason, word);
		if (strcmp(word, "dtype") == 0)
			ck_assert_msg(strstr(s->reason, str(e, "dtype")), "%s %s: reason '%s' lacks %s",
				      model, s->name, s->reason, str(e, "dtype"));
		ck_assert_ptr_null(opass_weights_get(weights, s->name));
	}
}

START_TEST(test_manifest)
{
	const cJSON *models = item(test_models_manifest, "models"), *entry;
	size_t n_models = 0;

	cJSON_ArrayForEach(entry, models) {
		struct onnxpass_model *model = load_generated(entry->string);
		struct opass_weights *weights = find_ok(model->proto);
		const cJSON *list = item(entry, "weights"), *e;

		ck_assert_msg(weights->n == (size_t)cJSON_GetArraySize(list),
			      "%s: %zu weights found, expected %d", entry->string, weights->n,
			      cJSON_GetArraySize(list));
		cJSON_ArrayForEach(e, list)
			assert_weight(entry->string, str(entry, "source"), e, weights,
				      model->proto->graph);
		assert_skipped(entry->string, item(entry, "skipped"), weights);
		opass_weights_free(weights);
		onnxpass_model_free(model);
		n_models++;
	}
	ck_assert_uint_ge(n_models, 8);
}
END_TEST

/* Discovery reads the model only: the serialised bytes do not change. */
START_TEST(test_find_changes_nothing)
{
	struct onnxpass_model *model = load_generated("edge_cases.onnx");
	struct onnxpass_error err = { 0 };
	size_t size_a = 0, size_b = 0;
	void *a = NULL, *b = NULL;

	ck_assert_int_eq(onnxpass_model_save_bytes(model, &a, &size_a, &err), 0);
	opass_weights_free(find_ok(model->proto));
	ck_assert_int_eq(onnxpass_model_save_bytes(model, &b, &size_b, &err), 0);
	ck_assert_uint_eq(size_a, size_b);
	ck_assert(memcmp(a, b, size_a) == 0);
	onnxpass_free(a);
	onnxpass_free(b);
	onnxpass_model_free(model);
}
END_TEST

/* --- aliases --------------------------------------------------------------- */

static void alias_is(const char *node_name, const char *want)
{
	char *got = opass_alias_from_node_name(node_name);

	if (!want)
		ck_assert_msg(!got, "alias of '%s' is '%s', expected none",
			      node_name ? node_name : "(null)", got);
	else
		ck_assert_msg(got && strcmp(got, want) == 0, "alias of '%s' is '%s', expected '%s'",
			      node_name ? node_name : "(null)", got ? got : "(null)", want);
	free(got);
}

START_TEST(test_alias)
{
	/* SPEC 4 */
	alias_is("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1");
	alias_is("/features/features.1/conv/conv.0/conv.0.0/Conv", "features.1.conv.0.0");
	alias_is("/fc1/Gemm", "fc1");
	alias_is("/attn/q_proj/MatMul", "attn.q_proj");
	alias_is("/layer1/layer1.0/downsample/downsample.0/Conv", "layer1.0.downsample.0");
	alias_is("/encoder/layer.0/attention/self/query/MatMul", "encoder.layer.0.attention.self.query");
	/* "ab" does not start with "a." */
	alias_is("/a/ab/Conv", "a.ab");
	alias_is("/blocks/blocks.10/blocks.10.0/Conv", "blocks.10.0");
	/* unscoped names */
	alias_is("Conv_12", NULL);
	alias_is("fc1_matmul", NULL);
	alias_is("", NULL);
	alias_is(NULL, NULL);
	alias_is("/Conv", NULL);
}
END_TEST

/* --- shared weights --------------------------------------------------------- */

START_TEST(test_shared_weight)
{
	struct onnxpass_model *model = load_generated("edge_cases.onnx");
	struct opass_weights *weights = find_ok(model->proto);
	const struct opass_weight *w = opass_weights_get(weights, "shared.w");
	size_t n_named = 0;

	ck_assert_ptr_nonnull(w);
	for (size_t i = 0; i < weights->n; i++)
		n_named += strcmp(weights->items[i].name, "shared.w") == 0;
	ck_assert_uint_eq(n_named, 1);
	ck_assert_uint_eq(w->n_uses, 2);
	ck_assert_str_eq(w->uses[0].node->name, "/shared_a/MatMul");
	ck_assert_str_eq(w->uses[1].node->name, "/shared_b/MatMul");
	ck_assert_uint_eq(w->uses[0].input, 1);
	ck_assert_uint_eq(w->uses[1].input, 1);
	/* alias from the first consumer in graph order */
	ck_assert_str_eq(w->alias, "shared_a.weight");
	ck_assert_ptr_null(w->note);
	/* consumers that disagree on the view: first wins, with a note */
	w = opass_weights_get(weights, "conflict.w");
	ck_assert_ptr_nonnull(w);
	ck_assert_uint_eq(w->n_uses, 2);
	ck_assert_str_eq(w->op, "MatMul");
	ck_assert_int_eq(w->view, OPASS_VIEW_TRANSPOSED);
	ck_assert_ptr_nonnull(w->note);
	ck_assert_ptr_nonnull(strstr(w->note, "conflict_gemm"));
	opass_weights_free(weights);
	onnxpass_model_free(model);
}
END_TEST

/* --- subgraph scopes (models built here) ----------------------------------- */

static char *xstrdup(const char *s)
{
	char *copy = strdup(s);

	ck_assert_ptr_nonnull(copy);
	return copy;
}

static void *array_push(void *array, size_t *n, void *item_ptr)
{
	void **a = realloc(array, (*n + 1) * sizeof(void *));

	ck_assert_ptr_nonnull(a);
	a[(*n)++] = item_ptr;
	return a;
}

static Onnx__TensorProto *tensor_new(const char *name, int64_t d0, int64_t d1, float base)
{
	Onnx__TensorProto *t = malloc(sizeof(*t));
	float *values;

	ck_assert_ptr_nonnull(t);
	onnx__tensor_proto__init(t);
	t->name = xstrdup(name);
	t->has_data_type = true;
	t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
	t->dims = malloc(2 * sizeof(*t->dims));
	values = malloc((size_t)(d0 * d1) * sizeof(float));
	ck_assert(t->dims && values);
	t->dims[0] = d0;
	t->dims[1] = d1;
	t->n_dims = 2;
	for (int64_t i = 0; i < d0 * d1; i++)
		values[i] = base + (float)i;
	t->has_raw_data = true;
	t->raw_data = (ProtobufCBinaryData){ .len = (size_t)(d0 * d1) * sizeof(float),
					     .data = (uint8_t *)values };
	return t;
}

static Onnx__NodeProto *node_new(const char *op, const char *name, const char *in0,
				 const char *in1, const char *out)
{
	Onnx__NodeProto *n = malloc(sizeof(*n));

	ck_assert_ptr_nonnull(n);
	onnx__node_proto__init(n);
	n->op_type = xstrdup(op);
	n->name = xstrdup(name);
	n->input = array_push(n->input, &n->n_input, xstrdup(in0));
	if (in1)
		n->input = array_push(n->input, &n->n_input, xstrdup(in1));
	n->output = array_push(n->output, &n->n_output, xstrdup(out));
	return n;
}

static void node_add_graph(Onnx__NodeProto *n, const char *attr_name, Onnx__GraphProto *g)
{
	Onnx__AttributeProto *a = malloc(sizeof(*a));

	ck_assert_ptr_nonnull(a);
	onnx__attribute_proto__init(a);
	a->name = xstrdup(attr_name);
	a->has_type = true;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
	a->g = g;
	n->attribute = array_push(n->attribute, &n->n_attribute, a);
}

static Onnx__GraphProto *graph_new(const char *name)
{
	Onnx__GraphProto *g = malloc(sizeof(*g));

	ck_assert_ptr_nonnull(g);
	onnx__graph_proto__init(g);
	g->name = xstrdup(name);
	return g;
}

static void graph_add_value(Onnx__ValueInfoProto ***list, size_t *n, const char *name)
{
	Onnx__ValueInfoProto *v = malloc(sizeof(*v));

	ck_assert_ptr_nonnull(v);
	onnx__value_info_proto__init(v);
	v->name = xstrdup(name);
	*list = array_push(*list, n, v);
}

static void graph_add_node(Onnx__GraphProto *g, Onnx__NodeProto *n)
{
	g->node = array_push(g->node, &g->n_node, n);
}

static void graph_add_init(Onnx__GraphProto *g, Onnx__TensorProto *t)
{
	g->initializer = array_push(g->initializer, &g->n_initializer, t);
}

/* Serialise and load back, as a model from a file would be. */
static struct onnxpass_model *model_finish(Onnx__GraphProto *graph)
{
	Onnx__ModelProto *proto = malloc(sizeof(*proto));
	struct onnxpass_error err = { 0 };
	struct onnxpass_model *model = NULL;
	size_t size;
	uint8_t *bytes;
	int r;

	ck_assert_ptr_nonnull(proto);
	onnx__model_proto__init(proto);
	proto->has_ir_version = true;
	proto->ir_version = 7;
	proto->graph = graph;
	size = onnx__model_proto__get_packed_size(proto);
	bytes = malloc(size);
	ck_assert_ptr_nonnull(bytes);
	onnx__model_proto__pack(proto, bytes);
	onnx__model_proto__free_unpacked(proto, NULL);
	r = onnxpass_model_load_bytes(bytes, size, NULL, &model, &err);
	ck_assert_msg(r == 0, "built model does not load: %s", err.message);
	free(bytes);
	return model;
}

/*
 * main:  initializer w [4,3]; MatMul(x, w) "/top/MatMul";
 *        If: then_branch has its own initializer w [4,5] and MatMul(x, w);
 *            else_branch uses the outer w;
 *        Loop: the body has an input named w (a loop-carried value, no weight)
 *              and MatMul(x, w); Scan: the body has a Constant named w [4,2].
 */
static struct onnxpass_model *build_shadow_model(void)
{
	Onnx__GraphProto *main_graph = graph_new("main"), *then_g = graph_new("then");
	Onnx__GraphProto *else_g = graph_new("else"), *body = graph_new("loop_body");
	Onnx__GraphProto *scan = graph_new("scan_body");
	Onnx__NodeProto *n, *constant;
	Onnx__AttributeProto *value;

	graph_add_value(&main_graph->input, &main_graph->n_input, "x");
	graph_add_value(&main_graph->input, &main_graph->n_input, "cond");
	graph_add_init(main_graph, tensor_new("w", 4, 3, 100.0f));
	graph_add_node(main_graph, node_new("MatMul", "/top/MatMul", "x", "w", "y_top"));

	graph_add_init(then_g, tensor_new("w", 4, 5, 200.0f));
	graph_add_node(then_g, node_new("MatMul", "/then/MatMul", "x", "w", "y_then"));
	graph_add_value(&then_g->output, &then_g->n_output, "y_then");
	graph_add_node(else_g, node_new("MatMul", "/else/MatMul", "x", "w", "y_else"));
	graph_add_value(&else_g->output, &else_g->n_output, "y_else");
	n = node_new("If", "if", "cond", NULL, "y_if");
	node_add_graph(n, "then_branch", then_g);
	node_add_graph(n, "else_branch", else_g);
	graph_add_node(main_graph, n);

	graph_add_value(&body->input, &body->n_input, "i");
	graph_add_value(&body->input, &body->n_input, "cond_in");
	graph_add_value(&body->input, &body->n_input, "w");
	graph_add_node(body, node_new("MatMul", "/loop/MatMul", "x", "w", "w_out"));
	n = node_new("Loop", "loop", "", "cond", "y_loop");
	node_add_graph(n, "body", body);
	graph_add_node(main_graph, n);

	constant = node_new("Constant", "/scan/Constant", "", NULL, "w");
	constant->n_input = 0;
	free(constant->input[0]);
	free(constant->input);
	constant->input = NULL;
	value = malloc(sizeof(*value));
	ck_assert_ptr_nonnull(value);
	onnx__attribute_proto__init(value);
	value->name = xstrdup("value");
	value->has_type = true;
	value->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
	value->t = tensor_new("w", 4, 2, 300.0f);
	constant->attribute = array_push(constant->attribute, &constant->n_attribute, value);
	graph_add_node(scan, constant);
	graph_add_node(scan, node_new("Gemm", "/scan/Gemm", "x", "w", "y_scan"));
	n = node_new("Scan", "scan", "x", NULL, "y_scan_all");
	node_add_graph(n, "body", scan);
	graph_add_node(main_graph, n);
	return model_finish(main_graph);
}

static const struct opass_weight *weight_in(const struct opass_weights *weights,
					   const Onnx__GraphProto *graph)
{
	const struct opass_weight *found = NULL;

	for (size_t i = 0; i < weights->n; i++) {
		if (weights->items[i].graph != graph)
			continue;
		ck_assert_msg(!found, "two weights in graph %s", graph->name);
		found = &weights->items[i];
	}
	ck_assert_msg(found, "no weight in graph %s", graph->name);
	return found;
}

START_TEST(test_subgraph_shadowing)
{
	struct onnxpass_model *model = build_shadow_model();
	struct opass_weights *weights = find_ok(model->proto);
	Onnx__GraphProto *main_graph = model->proto->graph;
	Onnx__GraphProto *then_g = main_graph->node[1]->attribute[0]->g;
	Onnx__GraphProto *else_g = main_graph->node[1]->attribute[1]->g;
	Onnx__GraphProto *body = main_graph->node[2]->attribute[0]->g;
	Onnx__GraphProto *scan = main_graph->node[3]->attribute[0]->g;
	const struct opass_weight *outer, *inner, *constant;

	ck_assert_uint_eq(weights->n, 3);
	outer = weight_in(weights, main_graph);
	inner = weight_in(weights, then_g);
	constant = weight_in(weights, scan);
	/* the outer w: read by /top/MatMul and by the else branch only */
	ck_assert_ptr_eq(outer->tensor, main_graph->initializer[0]);
	ck_assert(!outer->in_subgraph);
	ck_assert_int_eq(outer->rows, 3);
	ck_assert_int_eq(outer->cols, 4);
	ck_assert_uint_eq(outer->n_uses, 2);
	ck_assert_ptr_eq(outer->uses[0].graph, main_graph);
	ck_assert_ptr_eq(outer->uses[1].graph, else_g);
	ck_assert_str_eq(outer->alias, "top.weight");
	/* the then branch's own w */
	ck_assert_ptr_eq(inner->tensor, then_g->initializer[0]);
	ck_assert(inner->in_subgraph);
	ck_assert_int_eq(inner->rows, 5);
	ck_assert_int_eq(inner->cols, 4);
	ck_assert_uint_eq(inner->n_uses, 1);
	ck_assert_ptr_eq(inner->uses[0].graph, then_g);
	ck_assert_str_eq(inner->alias, "then.weight");
	/* the Scan body's Constant w, read by a Gemm (transB=0) */
	ck_assert_ptr_eq(constant->constant, scan->node[0]);
	ck_assert(constant->in_subgraph);
	ck_assert_int_eq(constant->view, OPASS_VIEW_TRANSPOSED);
	ck_assert_int_eq(constant->rows, 2);
	ck_assert_int_eq(constant->cols, 4);
	ck_assert_uint_eq(constant->n_uses, 1);
	ck_assert_ptr_eq(constant->uses[0].graph, scan);
	/* the Loop body's input w is no weight and no use of one */
	for (size_t i = 0; i < weights->n; i++)
		for (size_t k = 0; k < weights->items[i].n_uses; k++)
			ck_assert_ptr_ne(weights->items[i].uses[k].graph, body);
	ck_assert_uint_eq(weights->n_skipped, 0);
	opass_weights_free(weights);
	onnxpass_model_free(model);
}
END_TEST

/* A MatMul whose B is a graph input or a computed value is no candidate. */
START_TEST(test_non_constant_inputs)
{
	Onnx__GraphProto *g = graph_new("g");
	struct onnxpass_model *model;
	struct opass_weights *weights;

	graph_add_value(&g->input, &g->n_input, "x");
	graph_add_value(&g->input, &g->n_input, "b");
	graph_add_init(g, tensor_new("w", 4, 4, 1.0f));
	graph_add_node(g, node_new("MatMul", "/in/MatMul", "x", "b", "y0"));
	graph_add_node(g, node_new("Relu", "relu", "w", NULL, "w_relu"));
	graph_add_node(g, node_new("MatMul", "/computed/MatMul", "x", "w_relu", "y1"));
	/* an undefined name is no weight either */
	graph_add_node(g, node_new("Gemm", "/dangling/Gemm", "x", "nowhere", "y2"));
	model = model_finish(g);
	weights = find_ok(model->proto);
	ck_assert_uint_eq(weights->n, 0);
	ck_assert_uint_eq(weights->n_skipped, 0);
	opass_weights_free(weights);
	onnxpass_model_free(model);
}
END_TEST

Suite *test_suite(void)
{
	Suite *s = suite_create("weights");
	TCase *tc = tcase_create("core");

	test_models_want("");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_manifest);
	tcase_add_test(tc, test_find_changes_nothing);
	tcase_add_test(tc, test_alias);
	tcase_add_test(tc, test_shared_weight);
	tcase_add_test(tc, test_subgraph_shadowing);
	tcase_add_test(tc, test_non_constant_inputs);
	suite_add_tcase(s, tc);
	return s;
}
