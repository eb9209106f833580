/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>

#include "proto_walk.h"

struct walk {
	int (*tensor_fn)(Onnx__TensorProto *tensor, void *userdata);
	int (*graph_fn)(Onnx__GraphProto *graph, void *userdata);
	void *userdata;
	bool skip_sparse;
};

static int walk_graph(Onnx__GraphProto *graph, struct walk *w, unsigned depth);

static int walk_tensor(Onnx__TensorProto *t, struct walk *w)
{
	return (t && w->tensor_fn) ? w->tensor_fn(t, w->userdata) : 0;
}

static int walk_nodes(Onnx__NodeProto **nodes, size_t n_nodes, struct walk *w, unsigned depth)
{
	for (size_t i = 0; i < n_nodes; i++) {
		Onnx__NodeProto *node = nodes[i];

		for (size_t a = 0; a < node->n_attribute; a++) {
			Onnx__AttributeProto *attr = node->attribute[a];
			int r = walk_tensor(attr->t, w);

			for (size_t k = 0; r == 0 && k < attr->n_tensors; k++)
				r = walk_tensor(attr->tensors[k], w);
			if (r == 0 && attr->g)
				r = walk_graph(attr->g, w, depth + 1);
			for (size_t k = 0; r == 0 && k < attr->n_graphs; k++)
				r = walk_graph(attr->graphs[k], w, depth + 1);
			if (r)
				return r;
		}
	}
	return 0;
}

static int walk_graph(Onnx__GraphProto *graph, struct walk *w, unsigned depth)
{
	int r = 0;

	/* the wire check bounds loaded models; this guards models built in memory */
	if (depth >= OPASS_MAX_GRAPH_DEPTH)
		return -ELOOP;
	if (w->graph_fn) {
		r = w->graph_fn(graph, w->userdata);
		if (r)
			return r;
	}
	for (size_t i = 0; r == 0 && i < graph->n_initializer; i++)
		r = walk_tensor(graph->initializer[i], w);
	for (size_t i = 0; r == 0 && !w->skip_sparse && i < graph->n_sparse_initializer; i++) {
		r = walk_tensor(graph->sparse_initializer[i]->values, w);
		if (r == 0)
			r = walk_tensor(graph->sparse_initializer[i]->indices, w);
	}
	return r ? r : walk_nodes(graph->node, graph->n_node, w, depth);
}

static int walk_model(Onnx__ModelProto *proto, struct walk *w)
{
	int r = proto->graph ? walk_graph(proto->graph, w, 0) : 0;

	for (size_t i = 0; r == 0 && i < proto->n_functions; i++)
		r = walk_nodes(proto->functions[i]->node, proto->functions[i]->n_node, w, 0);
	for (size_t i = 0; r == 0 && i < proto->n_training_info; i++) {
		Onnx__TrainingInfoProto *ti = proto->training_info[i];

		if (ti->initialization)
			r = walk_graph(ti->initialization, w, 0);
		if (r == 0 && ti->algorithm)
			r = walk_graph(ti->algorithm, w, 0);
	}
	return r;
}

int opass_proto_foreach_tensor(Onnx__ModelProto *proto,
			       int (*fn)(Onnx__TensorProto *tensor, void *userdata),
			       void *userdata)
{
	struct walk w = { .tensor_fn = fn, .userdata = userdata };

	return walk_model(proto, &w);
}

int opass_proto_foreach_dense_tensor(Onnx__ModelProto *proto,
				     int (*fn)(Onnx__TensorProto *tensor, void *userdata),
				     void *userdata)
{
	struct walk w = { .tensor_fn = fn, .userdata = userdata, .skip_sparse = true };

	return walk_model(proto, &w);
}

int opass_proto_foreach_graph(Onnx__ModelProto *proto,
			      int (*fn)(Onnx__GraphProto *graph, void *userdata),
			      void *userdata)
{
	struct walk w = { .graph_fn = fn, .userdata = userdata };

	return walk_model(proto, &w);
}
