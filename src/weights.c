/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "graph.h"
#include "proto_walk.h"
#include "strmap.h"
#include "tensor.h"
#include "weights.h"

/* Uses of one constant, collected during the walk. */
struct use_list {
	struct opass_use *items;
	size_t n;
	size_t cap;
};

struct find_ctx {
	struct opass_weights *out;
	size_t cap;
	size_t cap_skipped;
	struct opass_strmap weight_index; /* "%p" of tensor -> index + 1 */
	struct opass_strmap uses;         /* "%p" of tensor -> struct use_list */
	struct opass_strmap skip_index;   /* name -> NULL */
	struct opass_strmap *bias;        /* the current scope's bias_index */
	struct onnxpass_error *err;
};

const char *opass_view_name(enum opass_view view)
{
	switch (view) {
	case OPASS_VIEW_AS_IS: return "as_is";
	case OPASS_VIEW_TRANSPOSED: return "transposed";
	default: return "conv";
	}
}

static void ptr_key(char key[32], const void *p)
{
	snprintf(key, 32, "%p", p);
}

char *opass_alias_from_node_name(const char *node_name)
{
	char *out;
	const char *p, *last;
	size_t n_out = 0, prev = 0;

	if (!node_name || node_name[0] != '/')
		return NULL;
	last = strrchr(node_name, '/');
	out = calloc(1, strlen(node_name) + 1);
	if (!out)
		return NULL;
	/* out holds dot-joined components; prev is where the last one starts */
	for (p = node_name + 1; p < last; ) {
		size_t n = strcspn(p, "/");
		size_t prev_len = n_out - prev;

		if (n > 0) {
			if (n_out && n > prev_len && strncmp(p, out + prev, prev_len) == 0 &&
			    p[prev_len] == '.') {
				n_out = prev;
			} else if (n_out) {
				out[n_out++] = '.';
				prev = n_out;
			}
			memcpy(out + n_out, p, n);
			n_out += n;
			out[n_out] = '\0';
		}
		p += n + 1;
	}
	if (n_out == 0) {
		free(out);
		return NULL;
	}
	return out;
}

char *opass_weight_alias(const char *node_name)
{
	char *path = opass_alias_from_node_name(node_name), *alias = NULL;

	if (path && asprintf(&alias, "%s.weight", path) < 0)
		alias = NULL;
	free(path);
	return alias;
}

/* A torch parameter name: dotted, with nothing an exporter adds (onnx::, /). */
static bool name_is_fqn(const char *name)
{
	return name && name[0] && name[0] != '.' && strchr(name, '.') && !strchr(name, ':') &&
	       !strchr(name, '/');
}

static bool name_ends_with(const char *name, const char *suffix)
{
	size_t n = strlen(name), k = strlen(suffix);

	return n > k && strcmp(name + n - k, suffix) == 0;
}

char *opass_weight_alias_full(const char *name, const char *node_name, const char *bias)
{
	char *alias = NULL;

	if (name_is_fqn(name) && name_ends_with(name, "weight"))
		return strdup(name);
	if (name_is_fqn(bias) && name_ends_with(bias, "bias")) {
		if (asprintf(&alias, "%.*sweight", (int)(strlen(bias) - 4), bias) < 0)
			alias = NULL;
		return alias;
	}
	return opass_weight_alias(node_name);
}

static bool def_is_constant(const struct opass_def *def);

/* Index the Adds of the scope's graph that add a constant '...bias' to a
 * value: value -> bias name. */
static int bias_index(const struct opass_scope *scope, struct opass_strmap *ret)
{
	Onnx__GraphProto *g = scope->graph;

	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *node = g->node[i];

		if (!opass_node_is(node, "Add") || node->n_input != 2)
			continue;
		for (size_t k = 0; k < 2; k++) {
			const struct opass_def *def = opass_scope_lookup(scope, node->input[k]);

			if (def_is_constant(def) && name_ends_with(node->input[k], "bias") &&
			    opass_strmap_put(ret, node->input[1 - k], node->input[k]) < 0)
				return -ENOMEM;
		}
	}
	return 0;
}

static const char *weight_bias(const struct find_ctx *ctx, const Onnx__NodeProto *node)
{
	void *bias = NULL;

	if (opass_node_is(node, "Gemm") && node->n_input > 2)
		return node->input[2];
	if (node->n_output > 0 && ctx->bias && opass_strmap_get(ctx->bias, node->output[0], &bias))
		return bias;
	return NULL;
}

static int skip_add(struct find_ctx *ctx, const char *name, const char *op, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int skip_add(struct find_ctx *ctx, const char *name, const char *op, const char *fmt, ...)
{
	struct opass_weights *w = ctx->out;
	struct opass_skip *s;
	va_list ap;
	int r;

	if (!name || !*name || opass_strmap_get(&ctx->skip_index, name, NULL))
		return 0;
	if (w->n_skipped == ctx->cap_skipped) {
		size_t cap = ctx->cap_skipped ? 2 * ctx->cap_skipped : 16;

		s = realloc(w->skipped, cap * sizeof(*s));
		if (!s)
			return -ENOMEM;
		w->skipped = s;
		ctx->cap_skipped = cap;
	}
	s = &w->skipped[w->n_skipped];
	*s = (struct opass_skip){ .name = strdup(name), .op = op };
	va_start(ap, fmt);
	r = vasprintf(&s->reason, fmt, ap);
	va_end(ap);
	if (r < 0)
		s->reason = NULL;
	w->n_skipped++;
	if (!s->name || !s->reason)
		return -ENOMEM;
	return opass_strmap_put_copy(&ctx->skip_index, name, NULL);
}

static int uses_add(struct find_ctx *ctx, const Onnx__TensorProto *t, struct opass_use use)
{
	struct use_list *list = NULL;
	char key[32];

	ptr_key(key, t);
	if (!opass_strmap_get(&ctx->uses, key, (void **)&list)) {
		list = calloc(1, sizeof(*list));
		if (!list || opass_strmap_put_copy(&ctx->uses, key, list) < 0) {
			free(list);
			return -ENOMEM;
		}
	}
	if (list->n == list->cap) {
		size_t cap = list->cap ? 2 * list->cap : 4;
		struct opass_use *items = realloc(list->items, cap * sizeof(*items));

		if (!items)
			return -ENOMEM;
		list->items = items;
		list->cap = cap;
	}
	list->items[list->n++] = use;
	return 0;
}

/* The constant a weight slot reads, possibly through Transpose(perm=[1,0]). */
static const struct opass_def *weight_source(const struct opass_scope *scope, const char *name,
					     bool allow_transpose, bool *ret_via_transpose)
{
	const struct opass_def *def = opass_scope_lookup(scope, name);
	const Onnx__AttributeProto *perm;

	*ret_via_transpose = false;
	if (!def || def->kind == OPASS_DEF_INITIALIZER || def->kind == OPASS_DEF_CONSTANT)
		return def;
	if (!allow_transpose || def->kind != OPASS_DEF_NODE || !opass_node_is(def->node, "Transpose") ||
	    def->node->n_input < 1)
		return def;
	perm = opass_node_attr(def->node, "perm");
	if (!perm || perm->n_ints != 2 || perm->ints[0] != 1 || perm->ints[1] != 0)
		return def;
	def = opass_scope_lookup(scope, def->node->input[0]);
	if (def && (def->kind == OPASS_DEF_INITIALIZER || def->kind == OPASS_DEF_CONSTANT)) {
		*ret_via_transpose = true;
		return def;
	}
	return NULL;
}

static bool def_is_constant(const struct opass_def *def)
{
	return def && (def->kind == OPASS_DEF_INITIALIZER || def->kind == OPASS_DEF_CONSTANT);
}

static const char *def_name(const struct opass_def *def)
{
	return def->kind == OPASS_DEF_CONSTANT ? def->node->output[0] : def->tensor->name;
}

/* View and 2-D shape of a candidate; 1 if usable, 0 if skipped. */
static int weight_view(struct find_ctx *ctx, const Onnx__NodeProto *node, const char *op,
		       const Onnx__TensorProto *t, const char *name, bool via_transpose,
		       struct opass_weight *w)
{
	uint64_t numel;
	int r;

	if (!opass_dtype_is_float(t->data_type))
		return skip_add(ctx, name, op, "unsupported dtype %s", opass_dtype_name(t->data_type));
	r = opass_tensor_numel(t, &numel, ctx->err);
	if (r < 0)
		return r;
	if (strcmp(op, "Conv") == 0) {
		if (t->n_dims < 3)
			return skip_add(ctx, name, op, "rank %zu Conv weight (expected >= 3)", t->n_dims);
		w->view = OPASS_VIEW_CONV;
		w->rows = t->dims[0];
		w->cols = t->dims[0] ? (int64_t)(numel / (uint64_t)t->dims[0]) : 0;
		return 1;
	}
	if (t->n_dims != 2)
		return skip_add(ctx, name, op, "rank %zu weight (expected 2)", t->n_dims);
	if (strcmp(op, "Gemm") == 0)
		w->view = opass_node_attr_int(node, "transB", 0) ? OPASS_VIEW_AS_IS : OPASS_VIEW_TRANSPOSED;
	else
		w->view = OPASS_VIEW_TRANSPOSED;
	if (via_transpose)
		w->view = w->view == OPASS_VIEW_AS_IS ? OPASS_VIEW_TRANSPOSED : OPASS_VIEW_AS_IS;
	w->rows = t->dims[w->view == OPASS_VIEW_AS_IS ? 0 : 1];
	w->cols = t->dims[w->view == OPASS_VIEW_AS_IS ? 1 : 0];
	return 1;
}

static int weight_add(struct find_ctx *ctx, const struct opass_scope *scope,
		      const Onnx__NodeProto *node, const char *op,
		      const struct opass_def *def, bool via_transpose)
{
	struct opass_weights *out = ctx->out;
	struct opass_weight w = { 0 }, *existing;
	const char *name = def_name(def);
	void *index;
	char key[32];
	int r;

	r = weight_view(ctx, node, op, def->tensor, name, via_transpose, &w);
	if (r <= 0)
		return r;
	ptr_key(key, def->tensor);
	if (opass_strmap_get(&ctx->weight_index, key, &index)) {
		existing = &out->items[(size_t)index - 1];
		if (existing->view == w.view && strcmp(existing->op, op) == 0)
			return 0;
		if (existing->note)
			return 0;
		if (asprintf(&existing->note, "also read by %s '%s' with view %s; using the first (%s)",
			     op, node->name ? node->name : "", opass_view_name(w.view),
			     opass_view_name(existing->view)) < 0)
			existing->note = NULL;
		return 0;
	}
	if (out->n == ctx->cap) {
		size_t cap = ctx->cap ? 2 * ctx->cap : 16;
		struct opass_weight *items = realloc(out->items, cap * sizeof(*items));

		if (!items)
			return -ENOMEM;
		out->items = items;
		ctx->cap = cap;
	}
	w.name = strdup(name);
	w.alias = opass_weight_alias_full(name, node->name, weight_bias(ctx, node));
	w.op = op;
	w.module_type = strcmp(op, "Conv") == 0 ? "conv" : "linear";
	w.via_transpose = via_transpose;
	w.tensor = def->tensor;
	w.graph = def->graph;
	w.constant = def->kind == OPASS_DEF_CONSTANT ? def->node : NULL;
	for (const struct opass_scope *s = scope; s; s = s->parent)
		if (s->graph == def->graph)
			w.in_subgraph = s->parent != NULL;
	out->items[out->n++] = w;
	if (!w.name)
		return -ENOMEM;
	return opass_strmap_put_copy(&ctx->weight_index, key, (void *)(out->n));
}

static int node_candidate(struct find_ctx *ctx, const struct opass_scope *scope,
			  const Onnx__NodeProto *node)
{
	static const char *const ops[] = { "Gemm", "MatMul", "Conv" };
	const struct opass_def *def, *a;
	const char *op = NULL;
	bool via_transpose;

	for (size_t i = 0; i < 3; i++)
		if (opass_node_is(node, ops[i]))
			op = ops[i];
	if (!op || node->n_input < 2)
		return 0;
	def = weight_source(scope, node->input[1], strcmp(op, "Conv") != 0, &via_transpose);
	if (def_is_constant(def))
		return weight_add(ctx, scope, node, op, def, via_transpose);
	a = opass_scope_lookup(scope, node->input[0]);
	if (strcmp(op, "MatMul") == 0 && def_is_constant(a))
		return skip_add(ctx, def_name(a), op, "constant A (input 0) of MatMul");
	return 0;
}

static int walk_scope(struct find_ctx *ctx, const struct opass_scope *scope);

static int node_subgraphs(struct find_ctx *ctx, const struct opass_scope *scope,
			  const Onnx__NodeProto *node)
{
	for (size_t a = 0; a < node->n_attribute; a++) {
		const Onnx__AttributeProto *attr = node->attribute[a];
		size_t n = attr->n_graphs + (attr->g ? 1 : 0);

		for (size_t k = 0; k < n; k++) {
			Onnx__GraphProto *g = k < attr->n_graphs ? attr->graphs[k] : attr->g;
			struct opass_scope child;
			int r;

			if (scope->depth + 1 >= OPASS_MAX_GRAPH_DEPTH)
				return opass_error(ctx->err, -ELOOP, "subgraphs nested deeper than %d",
						   OPASS_MAX_GRAPH_DEPTH);
			r = opass_scope_init(&child, g, scope, ctx->err);
			if (r < 0)
				return r;
			r = walk_scope(ctx, &child);
			opass_scope_fini(&child);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static int walk_scope(struct find_ctx *ctx, const struct opass_scope *scope)
{
	Onnx__GraphProto *g = scope->graph;
	struct opass_strmap bias = { 0 }, *outer = ctx->bias;
	int r;

	r = bias_index(scope, &bias);
	ctx->bias = &bias;

	for (size_t i = 0; r == 0 && i < g->n_node; i++) {
		Onnx__NodeProto *node = g->node[i];

		for (size_t k = 0; r == 0 && k < node->n_input; k++) {
			const struct opass_def *def = opass_scope_lookup(scope, node->input[k]);

			if (def_is_constant(def))
				r = uses_add(ctx, def->tensor,
					     (struct opass_use){ .graph = g, .node = node, .input = k });
		}
		if (r == 0)
			r = node_candidate(ctx, scope, node);
		if (r == 0)
			r = node_subgraphs(ctx, scope, node);
		ctx->bias = &bias;
	}
	ctx->bias = outer;
	opass_strmap_fini(&bias);
	return r;
}

/* Attach uses, index the names; drop skip entries for constants that are
 * weights elsewhere. */
static int weights_finish(struct find_ctx *ctx)
{
	struct opass_weights *out = ctx->out;
	size_t kept = 0;

	for (size_t i = 0; i < out->n; i++)
		if (!opass_strmap_get(&out->by_name, out->items[i].name, NULL) &&
		    opass_strmap_put(&out->by_name, out->items[i].name, (void *)(uintptr_t)(i + 1)) < 0)
			return -ENOMEM;
	for (size_t i = 0; i < out->n; i++) {
		struct use_list *list;
		char key[32];

		ptr_key(key, out->items[i].tensor);
		if (opass_strmap_get(&ctx->uses, key, (void **)&list)) {
			out->items[i].uses = list->items;
			out->items[i].n_uses = list->n;
			list->items = NULL;
		}
	}
	for (size_t i = 0; i < out->n_skipped; i++) {
		if (opass_weights_get(out, out->skipped[i].name)) {
			free(out->skipped[i].name);
			free(out->skipped[i].reason);
			continue;
		}
		out->skipped[kept++] = out->skipped[i];
	}
	out->n_skipped = kept;
	return 0;
}

static void uses_free(struct opass_strmap *uses)
{
	for (size_t i = 0; i < uses->cap; i++) {
		struct use_list *list = uses->slots[i].value;

		if (uses->slots[i].key && list) {
			free(list->items);
			free(list);
		}
	}
	opass_strmap_fini(uses);
}

int opass_weights_find(Onnx__ModelProto *model, struct opass_weights **ret_weights,
		       struct onnxpass_error *err)
{
	struct find_ctx ctx = { .err = err };
	struct opass_scope scope;
	int r;

	ctx.out = calloc(1, sizeof(*ctx.out));
	if (!ctx.out)
		return opass_error(err, -ENOMEM, "out of memory");
	r = opass_scope_init(&scope, model->graph, NULL, err);
	if (r == 0) {
		r = walk_scope(&ctx, &scope);
		opass_scope_fini(&scope);
	}
	if (r == -ENOMEM)
		opass_error(err, r, "out of memory");
	if (r == 0 && weights_finish(&ctx) < 0)
		r = opass_error(err, -ENOMEM, "out of memory");
	uses_free(&ctx.uses);
	opass_strmap_fini(&ctx.weight_index);
	opass_strmap_fini(&ctx.skip_index);
	if (r < 0) {
		opass_weights_free(ctx.out);
		return r;
	}
	*ret_weights = ctx.out;
	return 0;
}

struct opass_weights *opass_weights_free(struct opass_weights *weights)
{
	if (!weights)
		return NULL;
	for (size_t i = 0; i < weights->n; i++) {
		free(weights->items[i].name);
		free(weights->items[i].alias);
		free(weights->items[i].note);
		free(weights->items[i].uses);
	}
	for (size_t i = 0; i < weights->n_skipped; i++) {
		free(weights->skipped[i].name);
		free(weights->skipped[i].reason);
	}
	opass_strmap_fini(&weights->by_name);
	free(weights->items);
	free(weights->skipped);
	free(weights);
	return NULL;
}

const struct opass_weight *opass_weights_get(const struct opass_weights *weights, const char *name)
{
	void *index;

	if (!opass_strmap_get(&weights->by_name, name, &index))
		return NULL;
	return &weights->items[(uintptr_t)index - 1];
}
