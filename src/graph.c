/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "graph.h"
#include "filemap.h"
#include "proto_walk.h"

/* --- scopes ------------------------------------------------------------ */

static int scope_add(struct opass_scope *scope, size_t *n, const char *name,
		     struct opass_def def)
{
	if (!name || !*name)
		return 0;
	scope->storage[*n] = def;
	return opass_strmap_put(&scope->defs, name, &scope->storage[(*n)++]);
}

static bool node_is_constant_tensor(const Onnx__NodeProto *node)
{
	const Onnx__AttributeProto *a;

	if (!opass_node_is(node, "Constant") || node->n_output < 1)
		return false;
	a = opass_node_attr(node, "value");
	return a && a->t;
}

static int scope_fill(struct opass_scope *scope)
{
	Onnx__GraphProto *g = scope->graph;
	size_t n = 0;
	int r = 0;

	for (size_t i = 0; r == 0 && i < g->n_input; i++)
		r = scope_add(scope, &n, g->input[i]->name,
			      (struct opass_def){ .kind = OPASS_DEF_INPUT, .graph = g });
	for (size_t i = 0; r == 0 && i < g->n_initializer; i++)
		r = scope_add(scope, &n, g->initializer[i]->name,
			      (struct opass_def){ .kind = OPASS_DEF_INITIALIZER, .graph = g,
						  .tensor = g->initializer[i] });
	for (size_t i = 0; r == 0 && i < g->n_node; i++) {
		Onnx__NodeProto *node = g->node[i];

		if (node_is_constant_tensor(node)) {
			r = scope_add(scope, &n, node->output[0],
				      (struct opass_def){ .kind = OPASS_DEF_CONSTANT, .graph = g,
							  .node = node,
							  .tensor = opass_node_attr(node, "value")->t });
			continue;
		}
		for (size_t k = 0; r == 0 && k < node->n_output; k++)
			r = scope_add(scope, &n, node->output[k],
				      (struct opass_def){ .kind = OPASS_DEF_NODE, .graph = g,
							  .node = node });
	}
	return r;
}

int opass_scope_init(struct opass_scope *scope, Onnx__GraphProto *graph,
		     const struct opass_scope *parent, struct onnxpass_error *err)
{
	size_t total = graph->n_input + graph->n_initializer;

	*scope = (struct opass_scope){ .parent = parent, .graph = graph,
				       .depth = parent ? parent->depth + 1 : 0 };
	for (size_t i = 0; i < graph->n_node; i++)
		total += graph->node[i]->n_output;
	scope->storage = calloc(total ? total : 1, sizeof(*scope->storage));
	if (!scope->storage || scope_fill(scope) < 0) {
		opass_scope_fini(scope);
		return opass_error(err, -ENOMEM, "out of memory");
	}
	return 0;
}

void opass_scope_fini(struct opass_scope *scope)
{
	if (!scope)
		return;
	opass_strmap_fini(&scope->defs);
	free(scope->storage);
	scope->storage = NULL;
}

const struct opass_def *opass_scope_lookup(const struct opass_scope *scope, const char *name)
{
	void *v;

	if (!name || !*name)
		return NULL;
	for (; scope; scope = scope->parent)
		if (opass_strmap_get(&scope->defs, name, &v))
			return v;
	return NULL;
}

/* --- nodes ------------------------------------------------------------- */

bool opass_node_is(const Onnx__NodeProto *node, const char *op_type)
{
	bool onnx_domain = !node->domain || !*node->domain || strcmp(node->domain, "ai.onnx") == 0;

	return onnx_domain && node->op_type && strcmp(node->op_type, op_type) == 0;
}

const Onnx__AttributeProto *opass_node_attr(const Onnx__NodeProto *node, const char *name)
{
	for (size_t i = 0; i < node->n_attribute; i++)
		if (node->attribute[i]->name && strcmp(node->attribute[i]->name, name) == 0)
			return node->attribute[i];
	return NULL;
}

int64_t opass_node_attr_int(const Onnx__NodeProto *node, const char *name, int64_t fallback)
{
	const Onnx__AttributeProto *a = opass_node_attr(node, name);

	return a && a->has_i ? a->i : fallback;
}

/* --- names ------------------------------------------------------------- */

static int names_add(struct opass_strmap *names, const char *name)
{
	return (name && *name) ? opass_strmap_put(names, name, NULL) : 0;
}

static int names_add_values(struct opass_strmap *names, Onnx__ValueInfoProto **v, size_t n)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < n; i++)
		r = names_add(names, v[i]->name);
	return r;
}

static int names_graph(Onnx__GraphProto *g, void *userdata)
{
	struct opass_strmap *names = userdata;
	int r = names_add_values(names, g->input, g->n_input);

	if (r == 0)
		r = names_add_values(names, g->output, g->n_output);
	if (r == 0)
		r = names_add_values(names, g->value_info, g->n_value_info);
	for (size_t i = 0; r == 0 && i < g->n_initializer; i++)
		r = names_add(names, g->initializer[i]->name);
	for (size_t i = 0; r == 0 && i < g->n_sparse_initializer; i++)
		if (g->sparse_initializer[i]->values)
			r = names_add(names, g->sparse_initializer[i]->values->name);
	for (size_t i = 0; r == 0 && i < g->n_node; i++) {
		Onnx__NodeProto *node = g->node[i];

		r = names_add(names, node->name);
		for (size_t k = 0; r == 0 && k < node->n_input; k++)
			r = names_add(names, node->input[k]);
		for (size_t k = 0; r == 0 && k < node->n_output; k++)
			r = names_add(names, node->output[k]);
	}
	return r;
}

int opass_names_collect(Onnx__ModelProto *model, struct opass_strmap *ret_names)
{
	struct opass_strmap names = { 0 };
	int r = opass_proto_foreach_graph(model, names_graph, &names);

	if (r < 0) {
		opass_strmap_fini(&names);
		return r;
	}
	*ret_names = names;
	return 0;
}

int opass_names_make(struct opass_strmap *names, const char *base, const char *suffix, char **ret_name)
{
	char *name = NULL;
	int r;

	if (asprintf(&name, "%s%s", base, suffix) < 0)
		return -ENOMEM;
	for (unsigned i = 1; opass_strmap_get(names, name, NULL); i++) {
		free(name);
		if (asprintf(&name, "%s%s_%u", base, suffix, i) < 0)
			return -ENOMEM;
	}
	r = opass_strmap_put_copy(names, name, NULL);
	if (r < 0) {
		free(name);
		return r;
	}
	*ret_name = name;
	return 0;
}

/* --- splicing ---------------------------------------------------------- */

static int ptr_array_insert(void ***array, size_t *n, size_t index, void *item)
{
	void **a = realloc(*array, (*n + 1) * sizeof(*a));

	if (!a)
		return -ENOMEM;
	memmove(&a[index + 1], &a[index], (*n - index) * sizeof(*a));
	a[index] = item;
	*array = a;
	(*n)++;
	return 0;
}

static void ptr_array_remove(void **array, size_t *n, size_t index)
{
	memmove(&array[index], &array[index + 1], (*n - index - 1) * sizeof(*array));
	(*n)--;
}

int opass_graph_insert_node(Onnx__GraphProto *graph, size_t index, Onnx__NodeProto *node)
{
	return ptr_array_insert((void ***)&graph->node, &graph->n_node, index, node);
}

size_t opass_graph_node_index(const Onnx__GraphProto *graph, const Onnx__NodeProto *node)
{
	for (size_t i = 0; i < graph->n_node; i++)
		if (graph->node[i] == node)
			return i;
	return graph->n_node;
}

int opass_graph_remove_node(Onnx__GraphProto *graph, const Onnx__NodeProto *node)
{
	size_t i = opass_graph_node_index(graph, node);

	if (i == graph->n_node)
		return -ENOENT;
	onnx__node_proto__free_unpacked(graph->node[i], NULL);
	ptr_array_remove((void **)graph->node, &graph->n_node, i);
	return 0;
}

static int insert_cmp(const void *a, const void *b)
{
	const struct opass_node_insert *x = a, *y = b;
	uintptr_t gx = (uintptr_t)x->graph, gy = (uintptr_t)y->graph;
	uintptr_t ax = (uintptr_t)x->after, ay = (uintptr_t)y->after;

	if (gx != gy)
		return gx < gy ? -1 : 1;
	if (ax != ay)
		return ax < ay ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The first of the sorted inserts [0, n) anchored after node (n if none). */
static size_t insert_lower_bound(const struct opass_node_insert *ins, size_t n,
				 const Onnx__NodeProto *node)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if ((uintptr_t)ins[mid].after < (uintptr_t)node)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static size_t insert_emit(Onnx__NodeProto **out, size_t k, const struct opass_node_insert *ins,
			  size_t n, size_t from, const Onnx__NodeProto *after)
{
	for (size_t j = from; j < n && ins[j].after == after; j++)
		out[k++] = ins[j].node;
	return k;
}

/* The inserts of one graph, sorted by anchor then order. */
static int graph_insert_run(struct opass_node_insert *ins, size_t n)
{
	Onnx__GraphProto *graph = ins[0].graph;
	Onnx__NodeProto **out = malloc((graph->n_node + n) * sizeof(*out));
	size_t k;

	if (!out)
		return -ENOMEM;
	k = insert_emit(out, 0, ins, n, 0, NULL);
	for (size_t i = 0; i < graph->n_node; i++) {
		out[k++] = graph->node[i];
		k = insert_emit(out, k, ins, n, insert_lower_bound(ins, n, graph->node[i]),
				graph->node[i]);
	}
	if (k != graph->n_node + n) {
		free(out);
		return -ENOENT;
	}
	free(graph->node);
	graph->node = out;
	graph->n_node = k;
	for (size_t j = 0; j < n; j++)
		ins[j].node = NULL;
	return 0;
}

int opass_graphs_insert_nodes(struct opass_node_insert *inserts, size_t n)
{
	size_t start = 0;
	int r = 0;

	for (size_t i = 0; i < n; i++)
		inserts[i].seq = i;
	if (n)
		qsort(inserts, n, sizeof(*inserts), insert_cmp);
	for (size_t i = 1; r == 0 && i <= n; i++) {
		if (i < n && inserts[i].graph == inserts[start].graph)
			continue;
		r = graph_insert_run(&inserts[start], i - start);
		start = i;
	}
	return r;
}

void opass_ptr_key(char key[static 32], const void *ptr)
{
	snprintf(key, 32, "%p", ptr);
}

static bool ptr_marked(const struct opass_strmap *marked, const void *ptr)
{
	char key[32];

	opass_ptr_key(key, ptr);
	return opass_strmap_get(marked, key, NULL);
}

void opass_graph_remove_marked(Onnx__GraphProto *graph, const struct opass_filemap *map,
			       const struct opass_strmap *marked, const struct opass_strmap *input_names)
{
	size_t k = 0;

	for (size_t i = 0; i < graph->n_node; i++) {
		if (ptr_marked(marked, graph->node[i]))
			onnx__node_proto__free_unpacked(graph->node[i], NULL);
		else
			graph->node[k++] = graph->node[i];
	}
	graph->n_node = k;
	k = 0;
	for (size_t i = 0; i < graph->n_initializer; i++) {
		Onnx__TensorProto *t = graph->initializer[i];

		if (ptr_marked(marked, t)) {
			opass_filemap_detach(map, t);
			onnx__tensor_proto__free_unpacked(t, NULL);
		} else {
			graph->initializer[k++] = t;
		}
	}
	graph->n_initializer = k;
	k = 0;
	for (size_t i = 0; i < graph->n_input; i++) {
		Onnx__ValueInfoProto *v = graph->input[i];

		if (input_names && v->name && opass_strmap_get(input_names, v->name, NULL))
			onnx__value_info_proto__free_unpacked(v, NULL);
		else
			graph->input[k++] = v;
	}
	graph->n_input = k;
}

int opass_graph_add_initializer(Onnx__GraphProto *graph, Onnx__TensorProto *tensor)
{
	return ptr_array_insert((void ***)&graph->initializer, &graph->n_initializer,
				graph->n_initializer, tensor);
}

int opass_graph_remove_initializer(Onnx__GraphProto *graph, const struct opass_filemap *map,
				   const char *name)
{
	for (size_t i = 0; i < graph->n_initializer; i++) {
		if (graph->initializer[i]->name && strcmp(graph->initializer[i]->name, name) == 0) {
			opass_filemap_detach(map, graph->initializer[i]);
			onnx__tensor_proto__free_unpacked(graph->initializer[i], NULL);
			ptr_array_remove((void **)graph->initializer, &graph->n_initializer, i);
			return 0;
		}
	}
	return -ENOENT;
}

static char **strv_copy(const char *const *v, size_t n)
{
	char **copy = calloc(n ? n : 1, sizeof(*copy));

	for (size_t i = 0; copy && i < n; i++) {
		copy[i] = strdup(v[i]);
		if (!copy[i]) {
			while (i > 0)
				free(copy[--i]);
			free(copy);
			return NULL;
		}
	}
	return copy;
}

Onnx__NodeProto *opass_node_new(const char *op_type, const char *name,
				const char *const *inputs, size_t n_inputs,
				const char *const *outputs, size_t n_outputs)
{
	Onnx__NodeProto *node = malloc(sizeof(*node));

	if (!node)
		return NULL;
	onnx__node_proto__init(node);
	node->op_type = strdup(op_type);
	node->name = strdup(name);
	node->input = strv_copy(inputs, n_inputs);
	node->n_input = node->input ? n_inputs : 0;
	node->output = strv_copy(outputs, n_outputs);
	node->n_output = node->output ? n_outputs : 0;
	if (!node->op_type || !node->name || !node->input || !node->output) {
		onnx__node_proto__free_unpacked(node, NULL);
		return NULL;
	}
	return node;
}

int opass_node_add_int_attr(Onnx__NodeProto *node, const char *name, int64_t value)
{
	Onnx__AttributeProto *a = malloc(sizeof(*a));
	int r;

	if (!a)
		return -ENOMEM;
	onnx__attribute_proto__init(a);
	a->name = strdup(name);
	a->has_type = true;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
	a->has_i = true;
	a->i = value;
	r = a->name ? ptr_array_insert((void ***)&node->attribute, &node->n_attribute,
				       node->n_attribute, a) : -ENOMEM;
	if (r < 0)
		onnx__attribute_proto__free_unpacked(a, NULL);
	return r;
}

int opass_string_replace(char **slot, const char *value)
{
	char *copy = strdup(value);

	if (!copy)
		return -ENOMEM;
	free(*slot);
	*slot = copy;
	return 0;
}
