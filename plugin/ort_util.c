/* SPDX-License-Identifier: MIT */
/* Tensor views, graph reading and ORT-backed execution for the library's kernels (ort_util.h). */
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
			  const OrtMemoryInfo *cpu, unsigned threads, struct opass_spmm_exec *exec)
{
	OrtStatus *s;

	*e = (struct ort_exec){ .api = api, .ctx = ctx };
	s = api->KernelContext_GetAllocator(ctx, cpu, &e->alloc);
	if (s)
		return s;
	*exec = (struct opass_spmm_exec){ .parallel_for = exec_parallel_for, .ctx = e,
					  .threads = threads, .alloc = exec_alloc,
					  .release = exec_release };
	return NULL;
}

void ort_exec_end(struct ort_exec *e)
{
	if (e->alloc)
		e->api->ReleaseAllocator(e->alloc);
	e->alloc = NULL;
}

/* ---- reading a graph (OrtGraph API) ---------------------------------------------- */

bool ort_status_ok(const OrtApi *api, OrtStatus *s)
{
	if (!s)
		return true;
	api->ReleaseStatus(s);
	return false;
}

int64_t ort_node_attr_int(const OrtApi *api, const OrtNode *node, const char *name,
			     int64_t fallback)
{
	const OrtOpAttr *attr = NULL;
	int64_t v = fallback;
	size_t len = 0;

	if (!ort_status_ok(api, api->Node_GetAttributeByName(node, name, &attr)) || !attr ||
	    !ort_status_ok(api, api->ReadOpAttr(attr, ORT_OP_ATTR_INT, &v, sizeof(v), &len)))
		return fallback;
	return v;
}

float ort_node_attr_float(const OrtApi *api, const OrtNode *node, const char *name,
			     float fallback)
{
	const OrtOpAttr *attr = NULL;
	float v = fallback;
	size_t len = 0;

	if (!ort_status_ok(api, api->Node_GetAttributeByName(node, name, &attr)) || !attr ||
	    !ort_status_ok(api, api->ReadOpAttr(attr, ORT_OP_ATTR_FLOAT, &v, sizeof(v), &len)))
		return fallback;
	return v;
}

bool ort_value_shape(const OrtApi *api, const OrtValueInfo *vi,
			ONNXTensorElementDataType *ret_type, int64_t dims[ORT_TENSOR_MAX_RANK],
			size_t *ret_rank)
{
	const OrtTypeInfo *type = NULL;
	const OrtTensorTypeAndShapeInfo *info = NULL;
	size_t rank = 0;

	if (!vi || !ort_status_ok(api, api->GetValueInfoTypeInfo(vi, &type)) ||
	    !ort_status_ok(api, api->CastTypeInfoToTensorInfo(type, &info)) || !info ||
	    !ort_status_ok(api, api->GetTensorElementType(info, ret_type)) ||
	    !ort_status_ok(api, api->GetDimensionsCount(info, &rank)) || rank > ORT_TENSOR_MAX_RANK ||
	    !ort_status_ok(api, api->GetDimensions(info, dims, rank)))
		return false;
	*ret_rank = rank;
	return true;
}

bool ort_value_constant_of(const OrtApi *api, const OrtValueInfo *vi,
			   ONNXTensorElementDataType type, struct ort_tensor *ret)
{
	const OrtValue *value = NULL;
	struct ort_tensor t;
	bool constant = false;

	if (!vi || !ort_status_ok(api, api->ValueInfo_IsConstantInitializer(vi, &constant)) ||
	    !constant || !ort_status_ok(api, api->ValueInfo_GetInitializerValue(vi, &value)) ||
	    !value || !ort_status_ok(api, ort_tensor_get(api, value, &t)) || t.type != type)
		return false;
	*ret = t;
	return true;
}

bool ort_value_constant(const OrtApi *api, const OrtValueInfo *vi, struct ort_tensor *ret)
{
	return ort_value_constant_of(api, vi, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ret);
}

bool ort_node_attr_ints(const OrtApi *api, const OrtNode *node, const char *name,
			   int64_t *out, size_t n_max, size_t *ret_n)
{
	const OrtOpAttr *attr = NULL;
	size_t len = 0;

	*ret_n = 0;
	if (!ort_status_ok(api, api->Node_GetAttributeByName(node, name, &attr)))
		return true;  /* absent */
	if (!attr)
		return true;
	if (!ort_status_ok(api, api->ReadOpAttr(attr, ORT_OP_ATTR_INTS, out, n_max * sizeof(*out),
					    &len)))
		return false;
	*ret_n = len / sizeof(*out);
	return true;
}
