/* SPDX-License-Identifier: MIT */
/* Graph index: what each name means in a (sub)graph scope, unique names,
 * and node/initializer splicing. */
#pragma once

#include <stdbool.h>

#include "filemap.h"
#include "onnx.pb-c.h"
#include "onnxpass/onnxpass.h"
#include "strmap.h"

enum opass_def_kind {
	OPASS_DEF_INITIALIZER, /* graph initializer */
	OPASS_DEF_CONSTANT,    /* output of a Constant node with a 'value' tensor */
	OPASS_DEF_NODE,        /* output of any other node */
	OPASS_DEF_INPUT,       /* graph input without initializer */
};

struct opass_def {
	enum opass_def_kind kind;
	Onnx__GraphProto *graph;
	Onnx__TensorProto *tensor; /* INITIALIZER, CONSTANT */
	Onnx__NodeProto *node;     /* CONSTANT, NODE: the producer */
};

/* The names defined in one graph, chained to the enclosing scopes. */
struct opass_scope {
	const struct opass_scope *parent;
	Onnx__GraphProto *graph;
	struct opass_strmap defs;
	struct opass_def *storage;
	unsigned depth;
};

int opass_scope_init(struct opass_scope *scope, Onnx__GraphProto *graph,
		     const struct opass_scope *parent, struct onnxpass_error *err);
void opass_scope_fini(struct opass_scope *scope);
/* The nearest definition of name, or NULL (undefined or empty name). */
const struct opass_def *opass_scope_lookup(const struct opass_scope *scope, const char *name);

/* Node helpers. */
bool opass_node_is(const Onnx__NodeProto *node, const char *op_type);
const Onnx__AttributeProto *opass_node_attr(const Onnx__NodeProto *node, const char *name);
int64_t opass_node_attr_int(const Onnx__NodeProto *node, const char *name, int64_t fallback);

/* Every name used in the model (values, nodes, initializers), to make new
 * names that collide with none. */
int opass_names_collect(Onnx__ModelProto *model, struct opass_strmap *ret_names);
/* base + suffix, or base + suffix + "_N", unused in names; the result is
 * added to names and returned malloc'd. */
int opass_names_make(struct opass_strmap *names, const char *base, const char *suffix, char **ret_name);

/* Splicing (everything heap-allocated; protobuf-c frees it). */
int opass_graph_insert_node(Onnx__GraphProto *graph, size_t index, Onnx__NodeProto *node);
int opass_graph_remove_node(Onnx__GraphProto *graph, const Onnx__NodeProto *node);
/* A node to insert after the node `after` of graph (NULL: at the head). */
struct opass_node_insert {
	Onnx__GraphProto *graph;
	const Onnx__NodeProto *after;
	Onnx__NodeProto *node;  /* set to NULL once the graph owns it */
	size_t seq;             /* set by opass_graphs_insert_nodes */
};
/* Insert every node in one pass per graph; nodes with the same anchor keep
 * their order in the array. Reorders the array. -ENOENT if an anchor is not
 * in its graph (those nodes stay with the caller). */
int opass_graphs_insert_nodes(struct opass_node_insert *inserts, size_t n);
/* The key of a pointer in an opass_strmap used as a set. */
void opass_ptr_key(char key[static 32], const void *ptr);
/* Remove and free, in one pass, the nodes and initializers whose addresses
 * are in marked (opass_ptr_key) and the inputs whose names are in
 * input_names (may be NULL). map: the model's mapped tensor bytes (NULL:
 * none), which are not freed. */
void opass_graph_remove_marked(Onnx__GraphProto *graph, const struct opass_filemap *map,
			       const struct opass_strmap *marked, const struct opass_strmap *input_names);
int opass_graph_add_initializer(Onnx__GraphProto *graph, Onnx__TensorProto *tensor);
int opass_graph_remove_initializer(Onnx__GraphProto *graph, const struct opass_filemap *map,
				   const char *name);
size_t opass_graph_node_index(const Onnx__GraphProto *graph, const Onnx__NodeProto *node);
/* A new node with inputs/outputs copied (n_inputs names, n_outputs names). */
Onnx__NodeProto *opass_node_new(const char *op_type, const char *name,
				const char *const *inputs, size_t n_inputs,
				const char *const *outputs, size_t n_outputs);
/* Add an INT attribute to a node. */
int opass_node_add_int_attr(Onnx__NodeProto *node, const char *name, int64_t value);
/* Replace a string in a char* array slot (frees the old one). */
int opass_string_replace(char **slot, const char *value);
