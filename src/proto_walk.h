/* SPDX-License-Identifier: MIT */
/* Walks over the protobuf tree of a model: every tensor, every graph. */
#pragma once

#include "onnx.pb-c.h"

/* Subgraphs (If/Loop/Scan bodies...) nested deeper than this are refused at
 * load time; every graph walk relies on it (main graph = level 1). */
#define OPASS_MAX_GRAPH_DEPTH 64

/* Call fn on every TensorProto of the model: initializers, sparse
 * initializers, Constant/attribute tensors, in every (sub)graph and function.
 * Stops at and returns the first non-zero return of fn. */
int opass_proto_foreach_tensor(Onnx__ModelProto *proto,
			       int (*fn)(Onnx__TensorProto *tensor, void *userdata),
			       void *userdata);

/* The same without the values and indices of sparse initializers. */
int opass_proto_foreach_dense_tensor(Onnx__ModelProto *proto,
				     int (*fn)(Onnx__TensorProto *tensor, void *userdata),
				     void *userdata);

/* Call fn on every graph (main graph first, then subgraphs depth-first). */
int opass_proto_foreach_graph(Onnx__ModelProto *proto,
			      int (*fn)(Onnx__GraphProto *graph, void *userdata),
			      void *userdata);
