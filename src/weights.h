/* SPDX-License-Identifier: MIT */
/* Weight discovery (SPEC 4): the constants used as Linear/Conv weights,
 * their 2-D view, tensor_fqn and PyTorch alias; skipped candidates. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "onnx.pb-c.h"
#include "strmap.h"
#include "onnxpass/onnxpass.h"

enum opass_view {
	OPASS_VIEW_AS_IS,      /* [out, in] as stored */
	OPASS_VIEW_TRANSPOSED, /* stored [in, out]: the view is its transpose */
	OPASS_VIEW_CONV,       /* [O, I/g, k...]: flattened after O */
};

/* A node input slot that reads the weight. */
struct opass_use {
	Onnx__GraphProto *graph;
	Onnx__NodeProto *node;
	size_t input;
};

struct opass_weight {
	char *name;                /* tensor_fqn: initializer or Constant output name */
	char *alias;               /* PyTorch name from the consumer's scope, or NULL */
	const char *op;            /* "Gemm", "MatMul", "Conv" */
	const char *module_type;   /* "linear", "conv" */
	enum opass_view view;
	bool via_transpose;        /* read through Transpose(perm=[1,0]) */
	int64_t rows, cols;        /* the 2-D view */
	Onnx__TensorProto *tensor;
	Onnx__GraphProto *graph;   /* the graph that defines it */
	Onnx__NodeProto *constant; /* its Constant node, or NULL for an initializer */
	bool in_subgraph;          /* defined in a subgraph */
	char *note;                /* e.g. consumers disagree on the view */
	struct opass_use *uses;    /* every node input that reads it */
	size_t n_uses;
};

struct opass_skip {
	char *name;
	const char *op;
	char *reason;
};

struct opass_weights {
	struct opass_weight *items;
	size_t n;
	struct opass_strmap by_name;  /* name -> index + 1 (the first of a name) */
	struct opass_skip *skipped;
	size_t n_skipped;
};

int opass_weights_find(Onnx__ModelProto *model, struct opass_weights **ret_weights,
		       struct onnxpass_error *err);
struct opass_weights *opass_weights_free(struct opass_weights *weights);
const struct opass_weight *opass_weights_get(const struct opass_weights *weights, const char *name);

const char *opass_view_name(enum opass_view view);

/* PyTorch module path from a scoped node name ("/a/a.0/conv/Conv" ->
 * "a.0.conv"), malloc'd; NULL if the name is not scoped. */
char *opass_alias_from_node_name(const char *node_name);

/* The weight alias of a consumer node: module path + ".weight", or NULL
 * (unscoped name, or out of memory). */
char *opass_weight_alias(const char *node_name);

/* The PyTorch name of weight name read by node node_name whose output gets
 * the bias bias (may be NULL): name itself when it is one ("a.b.weight",
 * "attn.in_proj_weight"); else the bias's name with "bias" made "weight"
 * (so MultiheadAttention's in_proj_bias gives in_proj_weight); else
 * opass_weight_alias(node_name). malloc'd, or NULL. */
char *opass_weight_alias_full(const char *name, const char *node_name, const char *bias);
