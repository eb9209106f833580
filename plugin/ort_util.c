/* SPDX-License-Identifier: MIT */
/* Tensor views and ORT-backed execution for the library's kernels (ort_util.h). */
#include "ort_util.h"

OrtStatus *ort_tensor_get(const OrtApi *api, const OrtValue *value, struct ort_tensor *ret)
{
	OrtTensorTypeAndShapeInfo *info = NULL;
	struct ort_tensor t = { 0 };
	OrtStatus *s;

	s = api->GetTensorTypeAndShape(value, &info);
	if (!s)
		s = api->GetTensorElementType(info, &t.type);
	if (!s)
		s = api->GetDimensionsCount(info, &t.rank);
	if (!s && t.rank > ORT_TENSOR_MAX_RANK)
		s = api->CreateStatus(ORT_INVALID_ARGUMENT, "tensor rank above 16");
	if (!s)
		s = api->GetDimensions(info, t.dims, t.rank);
	if (!s)
		s = api->GetTensorShapeElementCount(info, &t.numel);
	if (!s)
		s = api->GetTensorData(value, &t.data);
	api->ReleaseTensorTypeAndShapeInfo(info);
	if (!s)
		*ret = t;
	return s;
}

OrtStatus *ort_input_get(const OrtApi *api, OrtKernelContext *ctx, size_t i,
			 const OrtValue **ret)
{
	size_t n = 0;
	OrtStatus *s = api->KernelContext_GetInputCount(ctx, &n);

	*ret = NULL;
	if (!s && i < n)
		s = api->KernelContext_GetInput(ctx, i, ret);
	return s;
}

static void exec_parallel_for(void *userdata, void (*fn)(void *data, size_t i), size_t n,
			      void *data)
{
	struct ort_exec *e = userdata;
	OrtStatus *s = e->api->KernelContext_ParallelFor(e->ctx, fn, n, 0, data);

	if (!s)
		return;
	e->api->ReleaseStatus(s);
	for (size_t i = 0; i < n; i++)
		fn(data, i);
}

static void *exec_alloc(void *userdata, size_t size)
{
	struct ort_exec *e = userdata;

	return e->alloc->Alloc(e->alloc, size);
}

static void exec_release(void *userdata, void *p)
{
	struct ort_exec *e = userdata;

	e->alloc->Free(e->alloc, p);
}

OrtStatus *ort_exec_begin(struct ort_exec *e, const OrtApi *api, OrtKernelContext *ctx,
			  const OrtMemoryInfo *cpu, struct opass_spmm_exec *exec)
{
	OrtStatus *s;

	*e = (struct ort_exec){ .api = api, .ctx = ctx };
	s = api->KernelContext_GetAllocator(ctx, cpu, &e->alloc);
	if (s)
		return s;
	*exec = (struct opass_spmm_exec){ .parallel_for = exec_parallel_for, .ctx = e,
					  .alloc = exec_alloc, .release = exec_release };
	return NULL;
}

void ort_exec_end(struct ort_exec *e)
{
	if (e->alloc)
		e->api->ReleaseAllocator(e->alloc);
	e->alloc = NULL;
}
