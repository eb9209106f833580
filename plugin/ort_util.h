/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the ONNX Runtime kernels of the library (the custom ops
 * in ort_ops.c and the execution provider in ort_ep*.c): a tensor's data and
 * shape, running the sparse kernels on ORT's intra-op threads with ORT's
 * allocator for scratch memory, and reading a graph's nodes and values.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <onnxruntime_c_api.h>

#include "sparse_kernels.h"

#define ORT_TENSOR_MAX_RANK 16

/* A tensor's data, element type and shape. */
struct ort_tensor {
	const void *data;
	ONNXTensorElementDataType type;
	size_t rank, numel;
	int64_t dims[ORT_TENSOR_MAX_RANK];
};

/* The tensor behind value (-> *ret only on success). */
OrtStatus *ort_tensor_get(const OrtApi *api, const OrtValue *value, struct ort_tensor *ret);

/* Input i of a kernel context, or NULL when the optional input is absent. */
OrtStatus *ort_input_get(const OrtApi *api, OrtKernelContext *ctx, size_t i,
			 const OrtValue **ret);

/* What opass_spmm_exec needs to run on a kernel context's threads. */
struct ort_exec {
	const OrtApi *api;
	OrtKernelContext *ctx;
	OrtAllocator *alloc;
};

/* Fill exec (parallel_for = ORT's intra-op pool of about `threads` threads,
 * scratch = ORT's allocator for cpu); ort_exec_end() releases the allocator. */
OrtStatus *ort_exec_begin(struct ort_exec *e, const OrtApi *api, OrtKernelContext *ctx,
			  const OrtMemoryInfo *cpu, unsigned threads, struct opass_spmm_exec *exec);
void ort_exec_end(struct ort_exec *e);

/* ---- reading a graph (OrtGraph API) ---- */

/* True when s is NULL (success); releases s otherwise. */
bool ort_status_ok(const OrtApi *api, OrtStatus *s);

/* A node's integer or float attribute, or the fallback when it is absent. */
int64_t ort_node_attr_int(const OrtApi *api, const OrtNode *node, const char *name,
			  int64_t fallback);
float ort_node_attr_float(const OrtApi *api, const OrtNode *node, const char *name,
			  float fallback);

/* An ints attribute's first n values (n_max at most; *ret_n = 0 when
 * absent), or false when unreadable. */
bool ort_node_attr_ints(const OrtApi *api, const OrtNode *node, const char *name,
			int64_t *out, size_t n_max, size_t *ret_n);

/* Element type and dims (-1: unknown) of a value; false when not a tensor. */
bool ort_value_shape(const OrtApi *api, const OrtValueInfo *vi,
		     ONNXTensorElementDataType *ret_type, int64_t dims[ORT_TENSOR_MAX_RANK],
		     size_t *ret_rank);

/* The constant initializer of element type `type` behind vi, or false. */
bool ort_value_constant_of(const OrtApi *api, const OrtValueInfo *vi,
			   ONNXTensorElementDataType type, struct ort_tensor *ret);
/* The constant float initializer behind vi, or false. */
bool ort_value_constant(const OrtApi *api, const OrtValueInfo *vi, struct ort_tensor *ret);
