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

/*
 * The compute of a Conv fused with the Add and / or Relu that follow it, or a
 * MatMul / Gemm fused with its Relu (GetCapability fuses them; ORT then calls
 * Compile): node is the Conv / MatMul / Gemm of the compiled graph, whose
 * weight (packed now) and bias (copied) are constant initializers ORT need
 * not keep; in_x and in_res are the fused node's inputs holding X (A) and the
 * Add's other operand (in_res -1: no Add). ep_fused_free accepts NULL.
 */
OrtStatus *ep_fused_new(const OrtApi *api, const OrtEpApi *ep_api, const OrtNode *node,
			enum ep_op op, size_t in_x, ptrdiff_t in_res, bool relu,
			OrtNodeComputeInfo **ret);
void ep_fused_free(OrtNodeComputeInfo *info);

/* Build the kernel registry (float MatMul and Gemm); states[] is filled and
 * must outlive the registry. */
OrtStatus *ep_kernel_registry_new(const OrtApi *api, const OrtEpApi *ep_api,
				  struct ep_kernel_state states[_EP_OP_MAX],
				  OrtKernelRegistry **ret_registry);
