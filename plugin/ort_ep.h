/* SPDX-License-Identifier: MIT */
/*
 * The OnnxPassSparse execution provider (ort_ep.c: factory, EP, which nodes
 * it claims; ort_ep_kernels.c: its kernel registry and kernels).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <onnxruntime_c_api.h> /* includes onnxruntime_ep_c_api.h (no include guard) */

#include "ort_util.h"

#define EP_NAME "OnnxPassSparse"
#define EP_MIN_API 24  /* kernel registries, OrtKernelImpl */

/* The plugin EP library's entry points, which ORT looks up by name
 * (RegisterExecutionProviderLibrary); exported from libonnxpass.so. */
OrtStatus *CreateEpFactories(const char *registered_name, const OrtApiBase *api_base,
			     const OrtLogger *logger, OrtEpFactory **factories,
			     size_t max_factories, size_t *ret_n);
OrtStatus *ReleaseEpFactory(OrtEpFactory *factory);

/* The operators the EP has kernels for. */
enum ep_op {
	EP_OP_MATMUL,
	EP_OP_GEMM,
	EP_OP_CONV,
	_EP_OP_MAX,
};

/* What a kernel is created with; owned by the factory, which outlives its kernels. */
struct ep_kernel_state {
	const OrtApi *api;
	const OrtEpApi *ep_api;
	enum ep_op op;
};

/* A Reshape fused before or after a MatMul / Gemm: its constant shape
 * (allowzero 0; rank 0: no Reshape). */
struct ep_reshape {
	size_t rank;
	int64_t shape[ORT_TENSOR_MAX_RANK];
};

/* Read a Reshape node's shape (a constant int64 initializer of 1 to
 * ORT_TENSOR_MAX_RANK values, allowzero 0); false when it is not one. */
bool ep_reshape_read(const OrtApi *api, const OrtNode *reshape, struct ep_reshape *ret);

#define EP_PERM_MAX 4

/* What a fused node holds besides its Conv / MatMul / Gemm. */
struct ep_fusion {
	size_t in_x;               /* the fused node's input holding X (A), or before's data */
	ptrdiff_t in_res;          /* the Add's other operand (-1: no Add) */
	bool relu;
	struct ep_reshape before;  /* MatMul / Gemm: the Reshape giving A */
	struct ep_reshape after;   /* MatMul / Gemm: the Reshape of Y */
	size_t perm_rank;          /* MatMul / Gemm: the Transpose after those (0: none) */
	int64_t perm[EP_PERM_MAX];
};

/* A product y [m, n] viewed as dims[rank] (the Reshape after it) and
 * transposed by perm: where its elements go (*ret) and the transposed dims
 * (out_dims[rank]); false unless rank <= EP_PERM_MAX, perm is a
 * permutation, the leading dims multiply to m and the others to n, and
 * each side has at most two dims above 1. */
bool ep_layout_make(const int64_t *dims, size_t rank, const int64_t *perm, int64_t m, int64_t n,
		    struct opass_spmm_layout *ret, int64_t *out_dims);

/*
 * The compute of a Conv fused with the Add and / or Relu that follow it, or a
 * MatMul / Gemm fused with the Reshapes around it, the Transpose after them
 * and / or its Relu
 * (GetCapability fuses them; ORT then calls Compile): node is the Conv /
 * MatMul / Gemm of the compiled graph, whose weight (packed now) and bias
 * (copied) are constant initializers ORT need not keep. ep_fused_free
 * accepts NULL.
 */
OrtStatus *ep_fused_new(const OrtApi *api, const OrtEpApi *ep_api, const OrtNode *node,
			enum ep_op op, const struct ep_fusion *how, OrtNodeComputeInfo **ret);
void ep_fused_free(OrtNodeComputeInfo *info);

/* Build the kernel registry (float MatMul and Gemm); states[] is filled and
 * must outlive the registry. */
OrtStatus *ep_kernel_registry_new(const OrtApi *api, const OrtEpApi *ep_api,
				  struct ep_kernel_state states[_EP_OP_MAX],
				  OrtKernelRegistry **ret_registry);
