/* SPDX-License-Identifier: MIT */
/*
 * The OnnxPassSparse ONNX Runtime execution provider (plugin EP library,
 * onnxruntime_ep_c_api.h): ORT loads libonnxpass.so with
 * RegisterExecutionProviderLibrary(), calls CreateEpFactories(), and the
 * application appends the OrtEpDevice named OnnxPassSparse (CPU) with
 * SessionOptionsAppendExecutionProvider_V2(). The EP claims the MatMul, Gemm
 * and Conv (2-D, group 1) nodes whose weight is a constant float initializer
 * and where the cost
 * model (opass_spmm_predict) says the sparse kernel is faster than ORT's
 * dense one; every other node stays with the CPU EP. A claimed Conv takes in
 * the Relu, Add, or Add and Relu after it, a claimed MatMul / Gemm its Relu
 * (as ORT's CPU EP would fuse them into its own Conv / Gemm), the
 * constant-shape Reshapes around it (ORT turns a MatMul + Add of more than
 * two dims into Reshape -> Gemm -> Reshape before it partitions the graph)
 * and a Transpose after those that its store can write (attention's heads):
 * those groups are fused nodes, compiled in Compile; the other claimed nodes
 * run kernels of the EP's registry. Both are in ort_ep_kernels.c.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxpass/ort.h"
#include "ort_ep.h"
#include "ort_util.h"
#include "sparse_kernels.h"

#define EP_VENDOR "onnx-pass"
#define EP_VERSION ONNXPASS_VERSION
#define EP_MAX_INPUTS 3
#define EP_MAX_OUTPUTS 8
#define EP_FUSED_MAX 5   /* nodes in a fused group */

struct ep_factory {
	OrtEpFactory base;         /* first: ORT's pointer is ours */
	const OrtApi *api;
	const OrtEpApi *ep_api;
	pthread_mutex_t lock;      /* registry */
	OrtKernelRegistry *registry;
	struct ep_kernel_state states[_EP_OP_MAX];
};

struct ep {
	OrtEp base;                /* first */
	struct ep_factory *factory;
	const OrtApi *api;
	const OrtEpApi *ep_api;
	bool claim_all;            /* option claim=all: skip the cost model */
	bool no_fuse;              /* option fuse=0: no Add / Relu fusions */
};

/* What GetCapability knows of a MatMul / Gemm node. */
struct ep_node {
	enum ep_op op;
	const OrtValueInfo *inputs[EP_MAX_INPUTS];
	size_t n_inputs;
	int64_t m;                 /* rows of A, -1 when not known */
	int64_t k, n, nonzero;
	int64_t c_in;              /* Conv: input channels (k = c_in * kh * kw) */
	bool conv;                 /* a Conv node, supported or not */
	bool packs;                /* Conv: packs its patches (opass_conv_packs) */
	bool supported;            /* an op, weight and shapes the kernels take */
};

/* ---- reading the graph --------------------------------------------------------- */

/* Is node an ONNX (default domain) operator of this type? */
static bool node_is(const OrtApi *api, const OrtNode *node, const char *op_type)
{
	const char *type = NULL, *domain = NULL;

	return ort_status_ok(api, api->Node_GetOperatorType(node, &type)) &&
	       ort_status_ok(api, api->Node_GetDomain(node, &domain)) && type &&
	       (!domain || !*domain || strcmp(domain, "ai.onnx") == 0) &&
	       strcmp(type, op_type) == 0;
}

static bool node_op(const OrtApi *api, const OrtNode *node, enum ep_op *ret)
{
	static const char *const names[_EP_OP_MAX] = { "MatMul", "Gemm", "Conv" };

	for (int op = 0; op < _EP_OP_MAX; op++)
		if (node_is(api, node, names[op])) {
			*ret = (enum ep_op)op;
			return true;
		}
	return false;
}

static int64_t count_nonzero(const float *v, size_t n)
{
	int64_t count = 0;

	for (size_t i = 0; i < n; i++)
		count += v[i] != 0.0f;
	return count;
}

/* ---- which nodes to claim --------------------------------------------------------- */

/* Rows of A (the product of all but its last axis), or -1. */
static bool node_rows(const OrtApi *api, struct ep_node *nd)
{
	ONNXTensorElementDataType type;
	int64_t dims[ORT_TENSOR_MAX_RANK];
	size_t rank = 0;

	nd->m = -1;
	if (!ort_value_shape(api, nd->inputs[0], &type, dims, &rank))
		return false;
	if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ||
	    (nd->op == EP_OP_GEMM && rank != 2) || (rank > 0 && dims[rank - 1] >= 0 &&
						    dims[rank - 1] != nd->k))
		return false;
	nd->m = rank > 0 ? 1 : -1;
	for (size_t d = 0; d + 1 < rank && nd->m >= 0; d++)
		nd->m = dims[d] >= 0 ? nd->m * dims[d] : -1;
	return true;
}

/* Gemm's C must be N values (any leading ones) or one, and beta 1. */
static bool gemm_bias_ok(const OrtApi *api, const OrtNode *node, const struct ep_node *nd)
{
	ONNXTensorElementDataType type;
	int64_t dims[ORT_TENSOR_MAX_RANK], numel = 1;
	size_t rank = 0;

	if (nd->n_inputs < 3 || !nd->inputs[2])
		return true;
	if (ort_node_attr_float(api, node, "beta", 1.0f) != 1.0f ||
	    !ort_value_shape(api, nd->inputs[2], &type, dims, &rank) ||
	    type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
		return false;
	for (size_t d = 0; d < rank; d++)
		numel = dims[d] >= 0 ? numel * dims[d] : -1;
	if (numel == 1)
		return true;
	return numel == nd->n && dims[rank - 1] == nd->n;
}

static bool matmul_read(const OrtApi *api, const OrtNode *node, struct ep_node *nd)
{
	bool trans_b = false;
	struct ort_tensor w;

	if (nd->op == EP_OP_GEMM) {
		if (ort_node_attr_int(api, node, "transA", 0) != 0)
			return false;
		trans_b = ort_node_attr_int(api, node, "transB", 0) != 0;
	}
	if (nd->n_inputs < 2 || !ort_value_constant(api, nd->inputs[1], &w) || w.rank != 2)
		return false;
	nd->k = w.dims[trans_b ? 1 : 0];
	nd->n = w.dims[trans_b ? 0 : 1];
	nd->nonzero = count_nonzero(w.data, w.numel);
	if (nd->op == EP_OP_GEMM && !gemm_bias_ok(api, node, nd))
		return false;
	return node_rows(api, nd);
}

/* A 2-D ints attribute (both values, or absent: ones); false when unreadable. */
static bool node_attr_pair(const OrtApi *api, const OrtNode *node, const char *name,
			   int64_t ret[2])
{
	int64_t v[2] = { 1, 1 };
	size_t n = 0;

	if (!ort_node_attr_ints(api, node, name, v, 2, &n) || (n != 0 && n != 2))
		return false;
	ret[0] = v[0];
	ret[1] = v[1];
	return true;
}

/* Output positions of a Conv, about N * ceil(H / stride) * ceil(W / stride) (the
 * cost model needs no more), or -1 when not known. */
static int64_t conv_rows(const OrtApi *api, const struct ep_node *nd, const int64_t strides[2])
{
	ONNXTensorElementDataType type;
	int64_t dims[ORT_TENSOR_MAX_RANK];
	size_t rank = 0;

	if (!ort_value_shape(api, nd->inputs[0], &type, dims, &rank) || rank != 4 ||
	    dims[0] < 0 || dims[2] < 0 || dims[3] < 0)
		return -1;
	return dims[0] * ((dims[2] + strides[0] - 1) / strides[0]) *
	       ((dims[3] + strides[1] - 1) / strides[1]);
}

/* Conv: 2-D (weight [c_out, c_in, kh, kw]), group 1, float input. */
static bool conv_read(const OrtApi *api, const OrtNode *node, struct ep_node *nd)
{
	ONNXTensorElementDataType type;
	int64_t dims[ORT_TENSOR_MAX_RANK], strides[2], dilations[2];
	struct ort_tensor w;
	bool have_strides;
	size_t rank = 0;

	if (ort_node_attr_int(api, node, "group", 1) != 1 || nd->n_inputs < 2 ||
	    !ort_value_constant(api, nd->inputs[1], &w) || w.rank != 4)
		return false;
	if (!ort_value_shape(api, nd->inputs[0], &type, dims, &rank) ||
	    type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || (rank != 0 && rank != 4))
		return false;
	if (nd->n_inputs > 2 && nd->inputs[2] &&
	    (!ort_value_shape(api, nd->inputs[2], &type, dims, &rank) ||
	     type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT))
		return false;
	nd->n = w.dims[0];
	nd->k = w.dims[1] * w.dims[2] * w.dims[3];
	nd->c_in = w.dims[1];
	nd->nonzero = count_nonzero(w.data, w.numel);
	/* unreadable strides: rows unknown; with dilations, packing assumed */
	have_strides = node_attr_pair(api, node, "strides", strides);
	nd->m = have_strides ? conv_rows(api, nd, strides) : -1;
	nd->packs = !have_strides || !node_attr_pair(api, node, "dilations", dilations) ||
		    opass_conv_packs(w.dims + 2, strides, dilations);
	return true;
}

static bool node_read(const OrtApi *api, const OrtNode *node, struct ep_node *nd)
{
	*nd = (struct ep_node){ 0 };
	if (!node_op(api, node, &nd->op) ||
	    !ort_status_ok(api, api->Node_GetNumInputs(node, &nd->n_inputs)) ||
	    nd->n_inputs > EP_MAX_INPUTS ||
	    !ort_status_ok(api, api->Node_GetInputs(node, nd->inputs, nd->n_inputs)))
		return false;
	nd->conv = nd->op == EP_OP_CONV;
	if (nd->conv)
		return conv_read(api, node, nd);
	return matmul_read(api, node, nd);
}

/* run_bytes: what a run of the graph touches (nodes_read);
 * chained: see convs_chained */
static bool node_wins(const struct ep_node *nd, int64_t run_bytes, bool chained)
{
	if (nd->op == EP_OP_CONV)
		return opass_spmm_predict_win_conv(OPASS_SPMM_ISA_AUTO, nd->m, nd->k, nd->n,
						   nd->nonzero, nd->c_in,
						   (nd->packs ? OPASS_CONV_PACKS : 0) |
						   (chained ? OPASS_CONV_CHAINED : 0));
	return opass_spmm_predict_win(OPASS_SPMM_ISA_AUTO, nd->m, nd->k, nd->n, nd->nonzero,
				      run_bytes, opass_spmm_cost_flags());
}

/* ---- fusing a claimed node with the Add and / or Relu after it ---------------------- */

/* The node that alone reads node's only output, when that output is not a
 * graph output (fusing them then hides nothing), or NULL. */
static const OrtNode *node_sole_consumer(const OrtApi *api, const OrtNode *node,
					 const OrtValueInfo **ret_out)
{
	const OrtValueInfo *out = NULL;
	const OrtNode *consumer = NULL;
	bool graph_output = true;
	int64_t index = 0;
	size_t n = 0;

	if (!ort_status_ok(api, api->Node_GetNumOutputs(node, &n)) || n != 1 ||
	    !ort_status_ok(api, api->Node_GetOutputs(node, &out, 1)) || !out ||
	    !ort_status_ok(api, api->ValueInfo_IsGraphOutput(out, &graph_output)) || graph_output ||
	    !ort_status_ok(api, api->ValueInfo_GetValueNumConsumers(out, &n)) || n != 1 ||
	    !ort_status_ok(api, api->ValueInfo_GetValueConsumers(out, &consumer, &index, 1)))
		return NULL;
	*ret_out = out;
	return consumer;
}

static bool value_name_is(const OrtApi *api, const OrtValueInfo *vi, const char *name)
{
	const char *s = NULL;

	return vi && ort_status_ok(api, api->GetValueInfoName(vi, &s)) && s &&
	       strcmp(s, name) == 0;
}

/* The Add's operand other than the value named y, or NULL. */
static const OrtValueInfo *add_other(const OrtApi *api, const OrtNode *add, const char *y)
{
	const OrtValueInfo *in[2] = { NULL };
	size_t n = 0;

	if (!ort_status_ok(api, api->Node_GetNumInputs(add, &n)) || n != 2 ||
	    !ort_status_ok(api, api->Node_GetInputs(add, in, 2)))
		return NULL;
	if (value_name_is(api, in[0], y) == value_name_is(api, in[1], y))
		return NULL;
	return value_name_is(api, in[0], y) ? in[1] : in[0];
}

/* A value's float tensor info, rank 4, or NULL. */
static const OrtTensorTypeAndShapeInfo *value_info4(const OrtApi *api, const OrtValueInfo *vi)
{
	const OrtTypeInfo *type = NULL;
	const OrtTensorTypeAndShapeInfo *info = NULL;
	ONNXTensorElementDataType elem;
	size_t rank = 0;

	if (!ort_status_ok(api, api->GetValueInfoTypeInfo(vi, &type)) ||
	    !ort_status_ok(api, api->CastTypeInfoToTensorInfo(type, &info)) || !info ||
	    !ort_status_ok(api, api->GetTensorElementType(info, &elem)) ||
	    elem != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ||
	    !ort_status_ok(api, api->GetDimensionsCount(info, &rank)) || rank != 4)
		return NULL;
	return info;
}

/* Are a and b float 4-D tensors of one shape: every dim known and equal, or
 * the same symbol (a batch of any size)? */
static bool values_same_shape(const OrtApi *api, const OrtValueInfo *a, const OrtValueInfo *b)
{
	const OrtTensorTypeAndShapeInfo *ia = value_info4(api, a), *ib = value_info4(api, b);
	const char *sa[4] = { NULL }, *sb[4] = { NULL };
	int64_t da[4], db[4];

	if (!ia || !ib || !ort_status_ok(api, api->GetDimensions(ia, da, 4)) ||
	    !ort_status_ok(api, api->GetDimensions(ib, db, 4)) ||
	    !ort_status_ok(api, api->GetSymbolicDimensions(ia, sa, 4)) ||
	    !ort_status_ok(api, api->GetSymbolicDimensions(ib, sb, 4)))
		return false;
	for (size_t d = 0; d < 4; d++) {
		bool known = da[d] > 0 && da[d] == db[d];
		bool symbol = da[d] < 0 && db[d] < 0 && sa[d] && sb[d] && *sa[d] &&
			      strcmp(sa[d], sb[d]) == 0;

		if (!known && !symbol)
			return false;
	}
	return true;
}

/* An Add the kernel can take in: its other operand computed (not an
 * initializer, which ORT would drop from the fused node's inputs) and of the
 * Conv output's shape (no broadcasting; the kernel checks it at run time). */
static bool add_fusable(const OrtApi *api, const OrtNode *add, const OrtValueInfo *y)
{
	const OrtValueInfo *other;
	const OrtValue *init = NULL;
	const char *name = NULL;

	return node_is(api, add, "Add") && ort_status_ok(api, api->GetValueInfoName(y, &name)) &&
	       name && (other = add_other(api, add, name)) != NULL &&
	       ort_status_ok(api, api->ValueInfo_GetInitializerValue(other, &init)) && !init &&
	       values_same_shape(api, y, other);
}

/* The Adds and Relus fused so far in one GetCapability (an Add after two
 * claimed Convs goes with the first). */
struct ep_fused_set {
	const OrtNode **nodes;
	size_t n;
};

static bool fused_has(const struct ep_fused_set *set, const OrtNode *node)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->nodes[i] == node)
			return true;
	return false;
}

/* Can a claimed node's inputs (as node_read got them) be a fused node's? ORT
 * drops constant initializers from those, so X (A) must not be one, and a
 * bias (Gemm's C, Conv's B) must be one, whose values the fused kernel
 * copies. */
static bool inputs_fusable(const OrtApi *api, const struct ep_node *nd)
{
	const OrtValueInfo *const *in = nd->inputs;
	const OrtValue *x = NULL, *bias = NULL;

	return nd->n_inputs >= 2 && in[0] &&
	       ort_status_ok(api, api->ValueInfo_GetInitializerValue(in[0], &x)) && !x &&
	       (nd->n_inputs < 3 || !in[2] ||
		(ort_status_ok(api, api->ValueInfo_GetInitializerValue(in[2], &bias)) && bias));
}

/* A Reshape (constant shape) not fused yet. */
static bool reshape_fusable(const OrtApi *api, const OrtNode *node, const struct ep_fused_set *set)
{
	struct ep_reshape r;

	return node && node_is(api, node, "Reshape") && !fused_has(set, node) &&
	       ep_reshape_read(api, node, &r);
}

/* The Reshape that alone gives a MatMul / Gemm its A, from a computed value
 * (ORT's MatMul + Add fusion puts one before and one after the Gemm it makes
 * of a MatMul of more than two dims), or NULL. */
static const OrtNode *reshape_before(const OrtApi *api, const OrtNode *node,
				     const struct ep_node *nd, const struct ep_fused_set *set)
{
	const OrtNode *pre = NULL;
	const OrtValueInfo *in[2] = { NULL }, *out = NULL;
	const OrtValue *init = NULL;

	/* reshape_fusable checked its two inputs */
	if (!ort_status_ok(api, api->ValueInfo_GetValueProducer(nd->inputs[0], &pre, NULL)) ||
	    !reshape_fusable(api, pre, set) || node_sole_consumer(api, pre, &out) != node ||
	    !ort_status_ok(api, api->Node_GetInputs(pre, in, 2)) || !in[0] ||
	    !ort_status_ok(api, api->ValueInfo_GetInitializerValue(in[0], &init)) || init)
		return NULL;
	return pre;
}

/* A Transpose's perm for an input of `rank` dims (absent: reversed); false
 * unless rank is 1 to EP_PERM_MAX. */
static bool transpose_perm(const OrtApi *api, const OrtNode *t, size_t rank,
			   int64_t perm[EP_PERM_MAX])
{
	size_t n = 0;

	if (rank < 1 || rank > EP_PERM_MAX ||
	    !ort_node_attr_ints(api, t, "perm", perm, EP_PERM_MAX, &n) || (n != 0 && n != rank))
		return false;
	for (size_t i = 0; n == 0 && i < rank; i++)
		perm[i] = (int64_t)(rank - 1 - i);
	return true;
}

/* A Transpose's input dims and perm. */
static bool transpose_read(const OrtApi *api, const OrtNode *t, int64_t dims[ORT_TENSOR_MAX_RANK],
			   size_t *ret_rank, int64_t perm[EP_PERM_MAX])
{
	const OrtValueInfo *in = NULL;
	ONNXTensorElementDataType type;
	size_t n = 0;

	return ort_status_ok(api, api->Node_GetNumInputs(t, &n)) && n == 1 &&
	       ort_status_ok(api, api->Node_GetInputs(t, &in, 1)) &&
	       ort_value_shape(api, in, &type, dims, ret_rank) &&
	       transpose_perm(api, t, *ret_rank, perm);
}

/* A Transpose of a claimed MatMul / Gemm's product (or of the Reshape after
 * it) that the kernel's store can write: known dims, each side of the
 * product at most two dims above 1 (ep_layout_make), as multi-head
 * attention's [batch, tokens, heads, head size] -> [batch, heads, tokens or
 * head size, head size or tokens]. */
static bool transpose_fusable(const OrtApi *api, const OrtNode *t, const struct ep_node *nd,
			      const struct ep_fused_set *set)
{
	int64_t dims[ORT_TENSOR_MAX_RANK], perm[EP_PERM_MAX], out[EP_PERM_MAX];
	struct opass_spmm_layout layout;
	size_t rank = 0;

	return t && node_is(api, t, "Transpose") && !fused_has(set, t) &&
	       transpose_read(api, t, dims, &rank, perm) && nd->m > 0 &&
	       ep_layout_make(dims, rank, perm, nd->m, nd->n, &layout, out);
}

/* The nodes to fuse with a claimed node: Conv -> Relu, Conv -> Add, Conv ->
 * Add -> Relu; MatMul / Gemm with the Reshape before it, the Reshape after
 * it, then a Transpose, and / or the Relu after those; each intermediate read
 * by the next node alone. group[0] is the claimed node; returns the group's
 * size (1: nothing to fuse). */
static size_t node_fusion(const OrtApi *api, const OrtNode *node, const struct ep_node *nd,
			  const struct ep_fused_set *set, const OrtNode *group[EP_FUSED_MAX])
{
	const OrtValueInfo *y = NULL, *sum = NULL;
	const OrtNode *next = node_sole_consumer(api, node, &y), *pre = NULL;
	size_t n = 1;

	group[0] = node;
	if (!inputs_fusable(api, nd))
		return 1;
	if (nd->op == EP_OP_CONV && next && !fused_has(set, next) && add_fusable(api, next, y)) {
		group[n++] = next;
		next = node_sole_consumer(api, next, &sum);
	}
	if (nd->op != EP_OP_CONV) {
		if ((pre = reshape_before(api, node, nd, set)) != NULL)
			group[n++] = pre;
		if (reshape_fusable(api, next, set)) {
			group[n++] = next;
			next = node_sole_consumer(api, next, &sum);
		}
		if (transpose_fusable(api, next, nd, set)) {
			group[n++] = next;
			next = node_sole_consumer(api, next, &sum);
		}
	}
	if (next && !fused_has(set, next) && node_is(api, next, "Relu"))
		group[n++] = next;
	return n;
}

static OrtStatus *node_claim(struct ep *ep, const OrtNode *node, const struct ep_node *nd,
			     struct ep_fused_set *set, OrtEpGraphSupportInfo *info)
{
	const OrtNodeFusionOptions options = { .ort_version_supported = ORT_API_VERSION,
					       .drop_constant_initializers = true };
	const OrtNode *group[EP_FUSED_MAX];
	size_t n = ep->no_fuse ? 1 : node_fusion(ep->api, node, nd, set, group);

	if (n == 1)
		return ep->ep_api->EpGraphSupportInfo_AddSingleNode(info, node);
	for (size_t i = 1; i < n; i++)
		set->nodes[set->n++] = group[i];
	return ep->ep_api->EpGraphSupportInfo_AddNodesToFuse(info, group, n, &options);
}

/* Input i of the fused node named like vi, or -1. */
static ptrdiff_t fused_input(const OrtApi *api, const OrtNode *fused, const OrtValueInfo *vi)
{
	const OrtValueInfo *in[8] = { NULL };
	const char *name = NULL;
	size_t n = 0;

	if (!vi || !ort_status_ok(api, api->GetValueInfoName(vi, &name)) || !name ||
	    !ort_status_ok(api, api->Node_GetNumInputs(fused, &n)) || n > 8 ||
	    !ort_status_ok(api, api->Node_GetInputs(fused, in, n)))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (value_name_is(api, in[i], name))
			return (ptrdiff_t)i;
	return -1;
}

/* A fused group's Reshapes: the one whose output is the main node's A goes
 * before it, the other after it. */
static bool fused_reshapes(const OrtApi *api, const OrtNode *const *reshapes, size_t n,
			   const OrtValueInfo *a, struct ep_fusion *how, const OrtValueInfo **ret_x)
{
	const char *a_name = NULL;

	if (!ort_status_ok(api, api->GetValueInfoName(a, &a_name)) || !a_name)
		return false;
	for (size_t i = 0; i < n; i++) {
		const OrtValueInfo *in[2] = { NULL }, *out = NULL;
		bool before;

		if (!ort_status_ok(api, api->Node_GetInputs(reshapes[i], in, 2)) ||
		    !ort_status_ok(api, api->Node_GetOutputs(reshapes[i], &out, 1)))
			return false;
		before = value_name_is(api, out, a_name);
		if (!ep_reshape_read(api, reshapes[i], before ? &how->before : &how->after))
			return false;
		if (before)
			*ret_x = in[0];
	}
	return true;
}

/* One fused group (node_fusion's) of a compiled graph. */
static OrtStatus *fused_compile(struct ep *ep, const OrtGraph *graph, const OrtNode *fused,
				OrtNodeComputeInfo **ret)
{
	const OrtApi *api = ep->api;
	const OrtNode *nodes[EP_FUSED_MAX] = { NULL }, *main = NULL, *add = NULL;
	const OrtNode *reshapes[2] = { NULL }, *transpose = NULL;
	int64_t t_dims[ORT_TENSOR_MAX_RANK];
	const OrtValueInfo *xwb[EP_MAX_INPUTS] = { NULL }, *x, *y = NULL, *res = NULL;
	struct ep_fusion how = { .in_res = -1 };
	const char *y_name = NULL;
	ptrdiff_t in_x;
	size_t n = 0, n_in = 0, n_reshapes = 0;
	enum ep_op op = EP_OP_CONV;

	if (!ort_status_ok(api, api->Graph_GetNumNodes(graph, &n)) || n < 2 || n > EP_FUSED_MAX ||
	    !ort_status_ok(api, api->Graph_GetNodes(graph, nodes, n)))
		return api->CreateStatus(ORT_FAIL, EP_NAME ": unexpected fused graph");
	for (size_t i = 0; i < n; i++) {
		if (node_op(api, nodes[i], &op))
			main = nodes[i];
		else if (node_is(api, nodes[i], "Add"))
			add = nodes[i];
		else if (node_is(api, nodes[i], "Reshape") && n_reshapes < 2)
			reshapes[n_reshapes++] = nodes[i];
		else if (node_is(api, nodes[i], "Transpose"))
			transpose = nodes[i];
		else
			how.relu = how.relu || node_is(api, nodes[i], "Relu");
	}
	if (!main || !ort_status_ok(api, api->Node_GetNumInputs(main, &n_in)) ||
	    n_in > EP_MAX_INPUTS || !ort_status_ok(api, api->Node_GetInputs(main, xwb, n_in)))
		return api->CreateStatus(ORT_FAIL, EP_NAME ": unexpected fused graph");
	x = xwb[0];
	if (add && ort_status_ok(api, api->Node_GetOutputs(main, &y, 1)) && y &&
	    ort_status_ok(api, api->GetValueInfoName(y, &y_name)) && y_name)
		res = add_other(api, add, y_name);
	if (n_reshapes &&
	    (op == EP_OP_CONV || !fused_reshapes(api, reshapes, n_reshapes, xwb[0], &how, &x)))
		return api->CreateStatus(ORT_FAIL, EP_NAME ": unexpected fused graph");
	if (transpose && (op == EP_OP_CONV || !transpose_read(api, transpose, t_dims, &how.perm_rank,
							      how.perm)))
		return api->CreateStatus(ORT_FAIL, EP_NAME ": unexpected fused graph");
	in_x = fused_input(api, fused, x);
	if (add)
		how.in_res = fused_input(api, fused, res);
	if (in_x < 0 || (add && (how.in_res < 0 || op != EP_OP_CONV)))
		return api->CreateStatus(ORT_FAIL, EP_NAME ": unexpected fused graph");
	how.in_x = (size_t)in_x;
	return ep_fused_new(api, ep->ep_api, main, op, &how, ret);
}

static OrtStatus *ORT_API_CALL ep_compile(OrtEp *this_ptr, const OrtGraph **graphs,
					 const OrtNode **fused_nodes, size_t count,
					 OrtNodeComputeInfo **infos, OrtNode **ep_context_nodes)
{
	struct ep *ep = (struct ep *)this_ptr;
	OrtStatus *s = NULL;

	(void)ep_context_nodes;
	for (size_t i = 0; i < count; i++)
		infos[i] = NULL;
	for (size_t i = 0; !s && i < count; i++)
		s = fused_compile(ep, graphs[i], fused_nodes[i], &infos[i]);
	for (size_t i = 0; s && i < count; i++) {
		ep_fused_free(infos[i]);
		infos[i] = NULL;
	}
	return s;
}

static void ORT_API_CALL ep_release_compute_infos(OrtEp *this_ptr, OrtNodeComputeInfo **infos,
						  size_t count)
{
	(void)this_ptr;
	for (size_t i = 0; i < count; i++)
		ep_fused_free(infos[i]);
}

/* Is every node reading v a MaxPool / AveragePool (which the CPU EP runs in
 * its blocked NCHWc layout)? */
static bool value_feeds_pools(const OrtApi *api, const OrtValueInfo *v)
{
	const OrtNode *consumers[EP_MAX_OUTPUTS] = { NULL };
	int64_t index[EP_MAX_OUTPUTS];
	bool graph_output = true;
	size_t n = 0;

	if (!ort_status_ok(api, api->ValueInfo_IsGraphOutput(v, &graph_output)) || graph_output ||
	    !ort_status_ok(api, api->ValueInfo_GetValueNumConsumers(v, &n)) || n == 0 ||
	    n > EP_MAX_OUTPUTS ||
	    !ort_status_ok(api, api->ValueInfo_GetValueConsumers(v, consumers, index, n)))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!node_is(api, consumers[i], "MaxPool") && !node_is(api, consumers[i], "AveragePool"))
			return false;
	return true;
}

/*
 * A CNN's stem: a Conv of the graph's input whose output (through its Relu)
 * only pooling nodes read. ORT's own NCHWc Conv reads a graph input as it is
 * and hands its pool the blocked layout, so claiming the Conv only moves the
 * layout reorder from the pool's small output to the Conv's full-size one:
 * ResNet-50 at batch 1 and 90 %, by ORT's profiler, ran the claimed 7x7 stem
 * at 0.63-0.70 ms (0.37 ms alone; its 3.2 MB of outputs are stored from
 * memory) plus a 0.18-0.26 ms reorder into the pool, against 0.64 ms on the
 * CPU EP (with the stem left to ORT: 0.81 ms for stem, pool and reorder,
 * against 1.02). The whole model moved within the noise: 14.0-14.8 ->
 * 13.6-13.7 ms in one series of processes, no difference in another.
 */
static bool conv_feeds_pools(const OrtApi *api, const OrtNode *node, const struct ep_node *nd)
{
	const OrtValueInfo *y = NULL, *relu_y = NULL;
	const OrtNode *next = node_sole_consumer(api, node, &y);
	bool required = false, optional = false;

	if (!ort_status_ok(api, api->ValueInfo_IsRequiredGraphInput(nd->inputs[0], &required)) ||
	    !ort_status_ok(api, api->ValueInfo_IsOptionalGraphInput(nd->inputs[0], &optional)) ||
	    !(required || optional))
		return false;
	if (next && node_is(api, next, "Relu"))
		return ort_status_ok(api, api->Node_GetOutputs(next, &relu_y, 1)) && relu_y &&
		       value_feeds_pools(api, relu_y);
	if (!ort_status_ok(api, api->Node_GetOutputs(node, &y, 1)) || !y)
		return false;
	return value_feeds_pools(api, y);
}

static OrtStatus *node_consider(struct ep *ep, const OrtNode *node, const struct ep_node *nd,
				int64_t run_bytes, bool chained, struct ep_fused_set *set,
				OrtEpGraphSupportInfo *info)
{
	const OrtKernelDef *def = NULL;
	OrtStatus *s;

	if (!nd->supported || (!ep->claim_all && !node_wins(nd, run_bytes, chained)))
		return NULL;
	if (!ep->claim_all && chained && nd->conv && conv_feeds_pools(ep->api, node, nd))
		return NULL;
	s = ep->ep_api->EpGraphSupportInfo_LookUpKernel(info, node, &def);
	if (s || !def)
		return s;
	return node_claim(ep, node, nd, set, info);
}

/* Bytes of a node's float outputs whose shapes are known. */
static int64_t node_output_bytes(const OrtApi *api, const OrtNode *node)
{
	const OrtValueInfo *outs[EP_MAX_OUTPUTS];
	int64_t dims[ORT_TENSOR_MAX_RANK], bytes = 0;
	ONNXTensorElementDataType type;
	size_t n = 0, rank;

	if (!ort_status_ok(api, api->Node_GetNumOutputs(node, &n)) || n > EP_MAX_OUTPUTS ||
	    !ort_status_ok(api, api->Node_GetOutputs(node, outs, n)))
		return 0;
	for (size_t i = 0; i < n; i++) {
		int64_t size = (int64_t)sizeof(float);

		if (!ort_value_shape(api, outs[i], &type, dims, &rank) ||
		    type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
			continue;
		/* unknown (symbolic) or absurd dims: not counted */
		for (size_t d = 0; d < rank && size > 0; d++)
			size = dims[d] < 0 || dims[d] > (INT64_MAX >> 20) / size ? 0 : size * dims[d];
		bytes += size;
	}
	return bytes;
}

/*
 * Reads every node; returns the bytes a run of the graph touches: the fp32
 * weights of the MatMul / Gemm / Conv nodes read and every node's float
 * outputs: beyond the cache, a weight comes from memory each run (the cost
 * model's STREAM_BYTES, sparse_kernels.c, which gives the measurements).
 */
static int64_t nodes_read(const OrtApi *api, const OrtNode **nodes, size_t n,
			  struct ep_node *nds)
{
	int64_t bytes = 0;

	for (size_t i = 0; i < n; i++) {
		nds[i].supported = node_read(api, nodes[i], &nds[i]);
		if (nds[i].supported)
			bytes += nds[i].k * nds[i].n * (int64_t)sizeof(float);
		bytes += node_output_bytes(api, nodes[i]);
	}
	return bytes;
}

/*
 * Are the graph's convs chained? When at least CHAINED_SHARE of its Conv
 * nodes (depthwise and other unsupported ones count against) win without
 * layout reorders, claiming those leaves ORT's NCHWc chain nothing to keep,
 * and each is judged without the reorders' cost (ResNet-50: yes; MobileNetV2,
 * a third of whose convs are depthwise: no).
 */
#define CHAINED_SHARE 0.9

static bool convs_chained(const struct ep_node *nds, size_t n)
{
	size_t convs = 0, wins = 0;

	for (size_t i = 0; i < n; i++) {
		convs += nds[i].conv;
		wins += nds[i].conv && nds[i].supported && node_wins(&nds[i], 0, true);
	}
	return convs > 0 && (double)wins >= CHAINED_SHARE * (double)convs;
}

static OrtStatus *ORT_API_CALL ep_get_capability(OrtEp *this_ptr, const OrtGraph *graph,
						OrtEpGraphSupportInfo *info)
{
	struct ep *ep = (struct ep *)this_ptr;
	struct ep_fused_set fused = { NULL, 0 };
	const OrtNode **nodes = NULL;
	struct ep_node *nds = NULL;
	int64_t run_bytes;
	bool chained;
	size_t n = 0;
	OrtStatus *s;

	s = ep->api->Graph_GetNumNodes(graph, &n);
	if (s || n == 0)
		return s;
	nodes = calloc(n, sizeof(*nodes));
	nds = calloc(n, sizeof(*nds));
	fused.nodes = calloc(n, sizeof(*fused.nodes));
	if (!nodes || !nds || !fused.nodes) {
		s = ep->api->CreateStatus(ORT_FAIL, EP_NAME ": out of memory");
		goto out;
	}
	s = ep->api->Graph_GetNodes(graph, nodes, n);
	if (s)
		goto out;
	run_bytes = nodes_read(ep->api, nodes, n, nds);
	chained = convs_chained(nds, n);
	for (size_t i = 0; !s && i < n; i++)
		s = node_consider(ep, nodes[i], &nds[i], run_bytes, chained, &fused, info);
out:
	free(fused.nodes);
	free(nds);
	free(nodes);
	return s;
}

/* ---- the EP ------------------------------------------------------------------------ */

static const char *ORT_API_CALL ep_get_name(const OrtEp *this_ptr)
{
	(void)this_ptr;
	return EP_NAME;
}

static OrtStatus *ORT_API_CALL ep_get_kernel_registry(OrtEp *this_ptr,
						     const OrtKernelRegistry **ret_registry)
{
	struct ep *ep = (struct ep *)this_ptr;
	struct ep_factory *f = ep->factory;
	OrtStatus *s = NULL;

	pthread_mutex_lock(&f->lock);
	if (!f->registry)
		s = ep_kernel_registry_new(f->api, f->ep_api, f->states, &f->registry);
	*ret_registry = s ? NULL : f->registry;
	pthread_mutex_unlock(&f->lock);
	return s;
}

/* ---- the factory --------------------------------------------------------------------- */

static const char *ORT_API_CALL factory_get_name(const OrtEpFactory *this_ptr)
{
	(void)this_ptr;
	return EP_NAME;
}

static const char *ORT_API_CALL factory_get_vendor(const OrtEpFactory *this_ptr)
{
	(void)this_ptr;
	return EP_VENDOR;
}

static uint32_t ORT_API_CALL factory_get_vendor_id(const OrtEpFactory *this_ptr)
{
	(void)this_ptr;
	return 0;
}

static const char *ORT_API_CALL factory_get_version(const OrtEpFactory *this_ptr)
{
	(void)this_ptr;
	return EP_VERSION;
}

/* One OrtEpDevice: the first CPU. */
static OrtStatus *ORT_API_CALL factory_get_devices(OrtEpFactory *this_ptr,
						  const OrtHardwareDevice *const *devices,
						  size_t n_devices, OrtEpDevice **ep_devices,
						  size_t max_ep_devices, size_t *ret_n)
{
	struct ep_factory *f = (struct ep_factory *)this_ptr;

	*ret_n = 0;
	for (size_t i = 0; i < n_devices && max_ep_devices > 0; i++) {
		OrtStatus *s;

		if (f->api->HardwareDevice_Type(devices[i]) != OrtHardwareDeviceType_CPU)
			continue;
		s = f->ep_api->CreateEpDevice(this_ptr, devices[i], NULL, NULL, &ep_devices[0]);
		if (s)
			return s;
		*ret_n = 1;
		break;
	}
	return NULL;
}

/* EP option KEY (SessionOptionsAppendExecutionProvider_V2, stored as session
 * config "ep.onnxpasssparse.KEY") into value; *ret_has = 0 when unset. */
static OrtStatus *ep_option(struct ep *ep, const OrtSessionOptions *options, const char *key,
			    char *value, size_t size, int *ret_has)
{
	const char *prefixes[] = { "ep.onnxpasssparse.", "ep." EP_NAME "." };
	char name[64];

	*ret_has = 0;
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t len = size;
		OrtStatus *s;

		snprintf(name, sizeof(name), "%s%s", prefixes[i], key);
		s = ep->api->HasSessionConfigEntry(options, name, ret_has);
		if (!s && *ret_has)
			s = ep->api->GetSessionConfigEntry(options, name, value, &len);
		if (s || *ret_has)
			return s;
	}
	return NULL;
}

/*
 * EP options: "claim": "auto" (default) claims the nodes the cost model
 * predicts a win for, "all" every node the kernels support (for benchmarks
 * of the cost model); "fuse": "1" (default) fuses a claimed Conv with the
 * Add and / or Relu after it and a claimed MatMul / Gemm with its Relu, "0"
 * leaves those to the CPU EP.
 */
static OrtStatus *ep_options_read(struct ep *ep, const OrtSessionOptions *options)
{
	char value[16];
	int has = 0;
	OrtStatus *s;

	s = ep_option(ep, options, "claim", value, sizeof(value), &has);
	if (!s && has && strcmp(value, "all") != 0 && strcmp(value, "auto") != 0)
		return ep->api->CreateStatus(ORT_INVALID_ARGUMENT, EP_NAME ": option claim "
					     "must be auto or all");
	ep->claim_all = !s && has && strcmp(value, "all") == 0;
	if (!s)
		s = ep_option(ep, options, "fuse", value, sizeof(value), &has);
	if (!s && has && strcmp(value, "0") != 0 && strcmp(value, "1") != 0)
		return ep->api->CreateStatus(ORT_INVALID_ARGUMENT, EP_NAME ": option fuse "
					     "must be 0 or 1");
	ep->no_fuse = !s && has && strcmp(value, "0") == 0;
	return s;
}

static OrtStatus *ORT_API_CALL factory_create_ep(OrtEpFactory *this_ptr,
						const OrtHardwareDevice *const *devices,
						const OrtKeyValuePairs *const *metadata,
						size_t n_devices, const OrtSessionOptions *options,
						const OrtLogger *logger, OrtEp **ret_ep)
{
	struct ep_factory *f = (struct ep_factory *)this_ptr;
	struct ep *ep;
	OrtStatus *s;

	(void)devices;
	(void)metadata;
	(void)logger;
	*ret_ep = NULL;
	if (n_devices != 1)
		return f->api->CreateStatus(ORT_INVALID_ARGUMENT, EP_NAME " runs on one CPU device");
	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return f->api->CreateStatus(ORT_FAIL, EP_NAME ": out of memory");
	ep->base = (OrtEp){ .ort_version_supported = ORT_API_VERSION, .GetName = ep_get_name,
			    .GetCapability = ep_get_capability,
			    .GetKernelRegistry = ep_get_kernel_registry, .Compile = ep_compile,
			    .ReleaseNodeComputeInfos = ep_release_compute_infos };
	ep->factory = f;
	ep->api = f->api;
	ep->ep_api = f->ep_api;
	s = ep_options_read(ep, options);
	if (s) {
		free(ep);
		return s;
	}
	*ret_ep = &ep->base;
	return NULL;
}

static void ORT_API_CALL factory_release_ep(OrtEpFactory *this_ptr, OrtEp *ep)
{
	(void)this_ptr;
	free(ep);
}

static OrtStatus *ORT_API_CALL factory_create_allocator(OrtEpFactory *this_ptr,
						       const OrtMemoryInfo *info,
						       const OrtKeyValuePairs *options,
						       OrtAllocator **ret)
{
	(void)this_ptr;
	(void)info;
	(void)options;
	*ret = NULL;  /* ORT's CPU allocator */
	return NULL;
}

static void ORT_API_CALL factory_release_allocator(OrtEpFactory *this_ptr, OrtAllocator *a)
{
	(void)this_ptr;
	(void)a;
}

static OrtStatus *ORT_API_CALL factory_create_data_transfer(OrtEpFactory *this_ptr,
							   OrtDataTransferImpl **ret)
{
	(void)this_ptr;
	*ret = NULL;  /* CPU memory only: nothing to copy */
	return NULL;
}

static bool ORT_API_CALL factory_is_stream_aware(const OrtEpFactory *this_ptr)
{
	(void)this_ptr;
	return false;
}

static OrtStatus *ORT_API_CALL factory_create_stream(OrtEpFactory *this_ptr,
						    const OrtMemoryDevice *device,
						    const OrtKeyValuePairs *options,
						    OrtSyncStreamImpl **ret)
{
	(void)this_ptr;
	(void)device;
	(void)options;
	*ret = NULL;
	return NULL;
}

static struct ep_factory *factory_free(struct ep_factory *f)
{
	if (!f)
		return NULL;
	if (f->registry)
		f->ep_api->ReleaseKernelRegistry(f->registry);
	pthread_mutex_destroy(&f->lock);
	free(f);
	return NULL;
}

static const OrtApi *factory_api(const OrtApiBase *base)
{
	for (uint32_t v = ORT_API_VERSION; v >= EP_MIN_API; v--) {
		const OrtApi *api = base->GetApi(v);

		if (api)
			return api;
	}
	return NULL;
}

ONNXPASS_EXPORT OrtStatus *CreateEpFactories(const char *registered_name,
					     const OrtApiBase *api_base,
					     const OrtLogger *logger, OrtEpFactory **factories,
					     size_t max_factories, size_t *ret_n)
{
	const OrtApi *api = api_base ? factory_api(api_base) : NULL;
	struct ep_factory *f;

	(void)registered_name;
	(void)logger;
	*ret_n = 0;
	if (!api)
		return NULL;  /* too old: no factory (and no API to report with) */
	if (max_factories < 1)
		return api->CreateStatus(ORT_INVALID_ARGUMENT, EP_NAME ": no room for a factory");
	f = calloc(1, sizeof(*f));
	if (!f)
		return api->CreateStatus(ORT_FAIL, EP_NAME ": out of memory");
	f->base = (OrtEpFactory){
		.ort_version_supported = ORT_API_VERSION,
		.GetName = factory_get_name, .GetVendor = factory_get_vendor,
		.GetSupportedDevices = factory_get_devices, .CreateEp = factory_create_ep,
		.ReleaseEp = factory_release_ep, .GetVendorId = factory_get_vendor_id,
		.GetVersion = factory_get_version, .CreateAllocator = factory_create_allocator,
		.ReleaseAllocator = factory_release_allocator,
		.CreateDataTransfer = factory_create_data_transfer,
		.IsStreamAware = factory_is_stream_aware,
		.CreateSyncStreamForDevice = factory_create_stream,
	};
	f->api = api;
	f->ep_api = api->GetEpApi();
	pthread_mutex_init(&f->lock, NULL);
	factories[0] = &f->base;
	*ret_n = 1;
	return NULL;
}

ONNXPASS_EXPORT OrtStatus *ReleaseEpFactory(OrtEpFactory *factory)
{
	factory_free((struct ep_factory *)factory);
	return NULL;
}
