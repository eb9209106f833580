/* SPDX-License-Identifier: MIT */
/* The in-memory model: the protobuf-c tree plus where it came from. */
#pragma once

#include <stdbool.h>

#include "onnx.pb-c.h"
#include "onnxpass/onnxpass.h"
#include "store.h"

struct onnxpass_model {
	Onnx__ModelProto *proto;
	char *base_dir;     /* folder external data is relative to, or NULL */
	bool had_external;  /* the input stored tensors in side files */
	struct opass_store store; /* large external tensors, mapped */
};

/* Call fn on every TensorProto of the model: initializers, sparse
 * initializers, Constant/attribute tensors, in every (sub)graph and function.
 * Stops at and returns the first non-zero return of fn. */
int opass_model_foreach_tensor(Onnx__ModelProto *proto,
			       int (*fn)(Onnx__TensorProto *tensor, void *userdata),
			       void *userdata);

/* The same without the values and indices of sparse initializers. */
int opass_model_foreach_dense_tensor(Onnx__ModelProto *proto,
				     int (*fn)(Onnx__TensorProto *tensor, void *userdata),
				     void *userdata);

/* Call fn on every graph (main graph first, then subgraphs depth-first). */
int opass_model_foreach_graph(Onnx__ModelProto *proto,
			      int (*fn)(Onnx__GraphProto *graph, void *userdata),
			      void *userdata);

/* metadata_props lookup/update (value NULL removes the key). */
const char *opass_model_get_metadata(const Onnx__ModelProto *proto, const char *key);
int opass_model_set_metadata(Onnx__ModelProto *proto, const char *key, const char *value);
