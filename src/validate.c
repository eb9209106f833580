/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "error.h"
#include "proto_walk.h"
#include "strmap.h"
#include "validate.h"

/* What defines a name, stored as the map value. */
enum {
	DEF_INPUT = 1,
	DEF_INITIALIZER = 2,
	DEF_NODE = 3, /* DEF_NODE + node index */
};

/* The names one graph defines, chained to the enclosing graphs'. */
struct vscope {
	const struct vscope *parent;
	Onnx__GraphProto *graph;
	struct opass_strmap defs;
	struct onnxpass_error *err;
};

/* Producer -> consumer edges between the nodes of one graph (CSR). */
struct edges {
	size_t *start;  /* per node: first edge, n + 1 entries */
	size_t *to;
	size_t *indegree;
	size_t *queue;
};

static const char *gname(const Onnx__GraphProto *g)
{
	return g->name && *g->name ? g->name : "(unnamed)";
}

static const char *nname(const Onnx__NodeProto *n)
{
	return n->name && *n->name ? n->name : (n->op_type ? n->op_type : "?");
}

static uintptr_t def_get(const struct vscope *s, const char *name)
{
	void *v = NULL;

	return opass_strmap_get(&s->defs, name, &v) ? (uintptr_t)v : 0;
}

static bool defined(const struct vscope *s, const char *name)
{
	for (; s; s = s->parent)
		if (def_get(s, name))
			return true;
	return false;
}

static int def_put(struct vscope *s, const char *name, uintptr_t def)
{
	return opass_strmap_put(&s->defs, name, (void *)def) < 0 ?
	       opass_error(s->err, -ENOMEM, "out of memory") : 0;
}

static int defs_inputs(struct vscope *s)
{
	Onnx__GraphProto *g = s->graph;
	int r = 0;

	for (size_t i = 0; r == 0 && i < g->n_input; i++)
		if (g->input[i]->name && *g->input[i]->name)
			r = def_put(s, g->input[i]->name, DEF_INPUT);
	return r;
}

static int def_initializer(struct vscope *s, const char *name)
{
	if (!name || !*name)
		return 0;
	if (def_get(s, name) == DEF_INITIALIZER)
		return opass_error(s->err, -EBADMSG, "graph '%s': two initializers named '%s'",
				   gname(s->graph), name);
	return def_put(s, name, DEF_INITIALIZER);
}

static int defs_initializers(struct vscope *s)
{
	Onnx__GraphProto *g = s->graph;
	int r = 0;

	for (size_t i = 0; r == 0 && i < g->n_initializer; i++)
		r = def_initializer(s, g->initializer[i]->name);
	for (size_t i = 0; r == 0 && i < g->n_sparse_initializer; i++)
		if (g->sparse_initializer[i]->values)
			r = def_initializer(s, g->sparse_initializer[i]->values->name);
	return r;
}

static int defs_nodes(struct vscope *s)
{
	Onnx__GraphProto *g = s->graph;

	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *node = g->node[i];

		for (size_t k = 0; k < node->n_output; k++) {
			const char *out = node->output[k];
			uintptr_t prev;
			int r;

			if (!*out)
				continue;
			prev = def_get(s, out);
			if (prev >= DEF_NODE)
				return opass_error(s->err, -EBADMSG,
						   "graph '%s': value '%s' is produced by two nodes ('%s' and '%s')",
						   gname(g), out, nname(g->node[prev - DEF_NODE]), nname(node));
			if (prev)
				return opass_error(s->err, -EBADMSG,
						   "graph '%s': node '%s' produces '%s', which is also a graph %s",
						   gname(g), nname(node), out,
						   prev == DEF_INPUT ? "input" : "initializer");
			r = def_put(s, out, DEF_NODE + i);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* Edges from producers to consumers of this graph; dangling inputs fail. */
static int edges_build(const struct vscope *s, struct edges *e)
{
	Onnx__GraphProto *g = s->graph;
	size_t n = g->n_node, total = 0;

	e->start = calloc(n + 1, sizeof(*e->start));
	e->indegree = calloc(n + 1, sizeof(*e->indegree));
	e->queue = calloc(n + 1, sizeof(*e->queue));
	for (size_t i = 0; i < n; i++)
		total += g->node[i]->n_input;
	e->to = calloc(total + 1, sizeof(*e->to));
	if (!e->start || !e->indegree || !e->queue || !e->to)
		return opass_error(s->err, -ENOMEM, "out of memory");
	/* count per producer, then place: e->start[p + 1] is p's count first */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			const Onnx__NodeProto *node = g->node[i];

			for (size_t k = 0; k < node->n_input; k++) {
				const char *in = node->input[k];
				uintptr_t def = *in ? def_get(s, in) : 0;

				if (*in && !def && !defined(s->parent, in))
					return opass_error(s->err, -EBADMSG,
							   "graph '%s': node '%s' reads '%s', which nothing defines",
							   gname(g), nname(node), in);
				if (def < DEF_NODE)
					continue;
				if (pass == 0) {
					e->start[def - DEF_NODE + 1]++;
				} else {
					e->to[e->queue[def - DEF_NODE]++] = i;
					e->indegree[i]++;
				}
			}
		}
		if (pass == 0) {
			for (size_t i = 0; i < n; i++) {
				e->start[i + 1] += e->start[i];
				e->queue[i] = e->start[i]; /* fill cursor */
			}
		}
	}
	return 0;
}

/* Kahn's algorithm: every node is reached unless there is a cycle. */
static int edges_check_acyclic(const struct vscope *s, struct edges *e)
{
	Onnx__GraphProto *g = s->graph;
	size_t head = 0, tail = 0;

	for (size_t i = 0; i < g->n_node; i++)
		if (e->indegree[i] == 0)
			e->queue[tail++] = i;
	while (head < tail) {
		size_t p = e->queue[head++];

		for (size_t k = e->start[p]; k < e->start[p + 1]; k++)
			if (--e->indegree[e->to[k]] == 0)
				e->queue[tail++] = e->to[k];
	}
	for (size_t i = 0; tail < g->n_node && i < g->n_node; i++)
		if (e->indegree[i])
			return opass_error(s->err, -EBADMSG, "graph '%s' has a cycle (through node '%s')",
					   gname(g), nname(g->node[i]));
	return 0;
}

static void edges_free(struct edges *e)
{
	free(e->start);
	free(e->to);
	free(e->indegree);
	free(e->queue);
}

static int graph_validate(Onnx__GraphProto *g, const struct vscope *parent, unsigned depth,
			  struct onnxpass_error *err);

static int subgraphs_validate(const struct vscope *s, unsigned depth)
{
	Onnx__GraphProto *g = s->graph;
	int r = 0;

	for (size_t i = 0; r == 0 && i < g->n_node; i++) {
		const Onnx__NodeProto *node = g->node[i];

		for (size_t a = 0; r == 0 && a < node->n_attribute; a++) {
			const Onnx__AttributeProto *attr = node->attribute[a];

			if (attr->g)
				r = graph_validate(attr->g, s, depth + 1, s->err);
			for (size_t k = 0; r == 0 && k < attr->n_graphs; k++)
				r = graph_validate(attr->graphs[k], s, depth + 1, s->err);
		}
	}
	return r;
}

static int outputs_validate(const struct vscope *s)
{
	Onnx__GraphProto *g = s->graph;

	for (size_t i = 0; i < g->n_output; i++) {
		const char *name = g->output[i]->name;

		if (name && *name && !defined(s, name))
			return opass_error(s->err, -EBADMSG, "graph '%s': output '%s' is defined nowhere",
					   gname(g), name);
	}
	return 0;
}

static int graph_validate(Onnx__GraphProto *g, const struct vscope *parent, unsigned depth,
			  struct onnxpass_error *err)
{
	struct vscope s = { .parent = parent, .graph = g, .err = err };
	struct edges e = { 0 };
	int r;

	if (depth >= OPASS_MAX_GRAPH_DEPTH)
		return opass_error(err, -E2BIG, "subgraphs nested deeper than %d", OPASS_MAX_GRAPH_DEPTH);
	r = defs_inputs(&s);
	if (r == 0)
		r = defs_initializers(&s);
	if (r == 0)
		r = defs_nodes(&s);
	if (r == 0)
		r = edges_build(&s, &e);
	if (r == 0)
		r = outputs_validate(&s);
	if (r == 0)
		r = edges_check_acyclic(&s, &e);
	edges_free(&e);
	if (r == 0)
		r = subgraphs_validate(&s, depth);
	opass_strmap_fini(&s.defs);
	return r;
}

int opass_model_validate(Onnx__ModelProto *model, struct onnxpass_error *err)
{
	if (!model->graph)
		return opass_error(err, -EBADMSG, "model has no graph");
	return graph_validate(model->graph, NULL, 0, err);
}
