/* SPDX-License-Identifier: MIT */
/*
 * ONNX Runtime custom ops of domain ai.onnx_pass, registered by
 * RegisterCustomOps() (RegisterCustomOpsLibrary_V2, Python's
 * SessionOptions.register_custom_ops_library("libonnxpass.so")).
 *
 * ai.onnx_pass::SparseMatMul (version 1): Y = A · B (+ C), B constant [K, N]
 * stored as block-sparse rows of B^T (see sparse_kernels.h):
 *
 *   inputs   A        float [..., K] (rank >= 1; rank 1 gives Y [N])
 *            values   float [nnzb * block_rows * block_cols]
 *            indices  int32 or int64 [nnzb]            block column of each block
 *            row_ptr  int32 or int64 [ceil(N / block_rows) + 1]
 *            C        float [N], [1, N] or one value   (optional bias, Gemm's C)
 *   attrs    K, N (required), block_rows, block_cols (default 1); alpha and beta,
 *            if given, must be 1
 *   output   Y        float [..., N]
 *
 * The weight inputs are read once at kernel creation when they are
 * initializers, else at every run. Work is split over ORT's intra-op thread
 * pool (KernelContext_ParallelFor).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <onnxruntime_c_api.h>

#include "onnxpass/ort.h"
#include "parallel.h"
#include "ort_util.h"
#include "sparse_kernels.h"

#define OPS_DOMAIN "ai.onnx_pass"
#define OPS_MIN_API 17  /* KernelContext_ParallelFor, KernelInfoGetConstantInput_tensor */
#define IN_A 0
#define IN_VALUES 1
#define IN_INDICES 2
#define IN_ROW_PTR 3
#define IN_BIAS 4

struct ops_kernel {
	const OrtApi *api;
	char name[128];
	int64_t n, k, br, bc;
	struct opass_spmm *spmm;   /* from initializers, or NULL: built at each run */
	OrtMemoryInfo *cpu;
	unsigned threads;          /* ORT's pool, which a kernel cannot ask: the online CPUs */
};

static OrtStatus *ops_status(const OrtApi *api, OrtErrorCode code, const char *node,
			     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static OrtStatus *ops_status(const OrtApi *api, OrtErrorCode code, const char *node,
			     const char *fmt, ...)
{
	char msg[ONNXPASS_ERROR_MAX];
	int len;
	va_list ap;

	len = snprintf(msg, sizeof(msg), "SparseMatMul '%s': ", node);
	va_start(ap, fmt);
	vsnprintf(msg + len, sizeof(msg) - (size_t)len, fmt, ap);
	va_end(ap);
	return api->CreateStatus(code, msg);
}

/* ---- the weight ---------------------------------------------------------- */

static bool is_index(ONNXTensorElementDataType type)
{
	return type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 ||
	       type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
}

static OrtStatus *weight_build(const struct ops_kernel *kernel, const OrtValue *const values[3],
			       struct opass_spmm **ret_spmm)
{
	const OrtApi *api = kernel->api;
	struct onnxpass_error err = { 0 };
	struct ort_tensor v, col, ptr;
	OrtStatus *s;

	s = ort_tensor_get(api, values[0], &v);
	if (!s)
		s = ort_tensor_get(api, values[1], &col);
	if (!s)
		s = ort_tensor_get(api, values[2], &ptr);
	if (s)
		return s;
	if (v.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || !is_index(col.type) ||
	    col.type != ptr.type)
		return ops_status(api, ORT_INVALID_ARGUMENT, kernel->name, "values must be float, "
				  "indices and row_ptr both int32 or both int64");
	if (opass_spmm_new(kernel->n, kernel->k, kernel->br, kernel->bc, v.data, v.numel,
			   col.data, col.numel, ptr.data, ptr.numel,
			   col.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, ret_spmm, &err) < 0)
		return ops_status(api, err.code == -ENOMEM ? ORT_FAIL : ORT_INVALID_ARGUMENT,
				  kernel->name, "%s", err.message);
	return NULL;
}

/* The weight from initializers, when all three are constant. */
static OrtStatus *weight_from_info(struct ops_kernel *kernel, const OrtKernelInfo *info)
{
	const OrtValue *values[3];

	for (size_t i = 0; i < 3; i++) {
		int is_constant = 0;
		OrtStatus *s = kernel->api->KernelInfoGetConstantInput_tensor(info, IN_VALUES + i,
									     &is_constant,
									     &values[i]);

		if (s || !is_constant)
			return s;
	}
	return weight_build(kernel, values, &kernel->spmm);
}

/* ---- kernel creation ------------------------------------------------------ */

static void ORT_API_CALL kernel_destroy(void *op_kernel)
{
	struct ops_kernel *kernel = op_kernel;

	if (!kernel)
		return;
	opass_spmm_free(kernel->spmm);
	if (kernel->cpu)
		kernel->api->ReleaseMemoryInfo(kernel->cpu);
	free(kernel);
}

static OrtStatus *attr_int(const OrtApi *api, const OrtKernelInfo *info, const char *name,
			   int64_t fallback, int64_t *ret)
{
	OrtStatus *s = api->KernelInfoGetAttribute_int64(info, name, ret);

	if (s && fallback >= 0) {
		api->ReleaseStatus(s);
		*ret = fallback;
		return NULL;
	}
	return s;
}

/* Gemm's alpha and beta are not supported: present, they must be 1. */
static OrtStatus *attrs_scale_check(const struct ops_kernel *kernel, const OrtKernelInfo *info)
{
	static const char *const names[] = { "alpha", "beta" };

	for (size_t i = 0; i < 2; i++) {
		float v = 1.0f;
		OrtStatus *s = kernel->api->KernelInfoGetAttribute_float(info, names[i], &v);

		if (s)
			kernel->api->ReleaseStatus(s);
		else if (v != 1.0f)
			return ops_status(kernel->api, ORT_INVALID_ARGUMENT, kernel->name,
					  "%s = %g is not supported (only 1)", names[i], (double)v);
	}
	return NULL;
}

static OrtStatus *kernel_attrs(struct ops_kernel *kernel, const OrtKernelInfo *info)
{
	const OrtApi *api = kernel->api;
	size_t len = sizeof(kernel->name), n_inputs = 0;
	OrtStatus *s;

	s = api->KernelInfo_GetNodeName(info, kernel->name, &len);
	if (s) {
		api->ReleaseStatus(s);
		snprintf(kernel->name, sizeof(kernel->name), "?");
	}
	s = attr_int(api, info, "N", -1, &kernel->n);
	if (!s)
		s = attr_int(api, info, "K", -1, &kernel->k);
	if (s) {
		api->ReleaseStatus(s);
		return ops_status(api, ORT_INVALID_ARGUMENT, kernel->name,
				  "attributes N and K (ints) are required");
	}
	s = attrs_scale_check(kernel, info);
	if (!s)
		s = attr_int(api, info, "block_rows", 1, &kernel->br);
	if (!s)
		s = attr_int(api, info, "block_cols", 1, &kernel->bc);
	if (!s)
		s = api->KernelInfo_GetInputCount(info, &n_inputs);
	if (!s && (n_inputs < 4 || n_inputs > 5))
		s = ops_status(api, ORT_INVALID_ARGUMENT, kernel->name,
			       "expects 4 or 5 inputs (A, values, indices, row_ptr[, C]), got %zu",
			       n_inputs);
	return s;
}

static OrtStatus *ORT_API_CALL kernel_create(const OrtCustomOp *op, const OrtApi *api,
					    const OrtKernelInfo *info, void **ret_kernel)
{
	struct ops_kernel *kernel = calloc(1, sizeof(*kernel));
	OrtStatus *s;

	(void)op;
	if (!kernel)
		return api->CreateStatus(ORT_FAIL, "SparseMatMul: out of memory");
	kernel->api = api;
	kernel->threads = opass_parallel_threads(0);
	s = kernel_attrs(kernel, info);
	if (!s)
		s = weight_from_info(kernel, info);
	if (!s)
		s = api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &kernel->cpu);
	if (s) {
		kernel_destroy(kernel);
		return s;
	}
	*ret_kernel = kernel;
	return NULL;
}

/* ---- compute ----------------------------------------------------------------- */

static OrtStatus *bias_check(const struct ops_kernel *kernel, const struct ort_tensor *c)
{
	if (c->type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
		return ops_status(kernel->api, ORT_INVALID_ARGUMENT, kernel->name,
				  "C must be float");
	if (c->numel == 1 || (c->numel == (size_t)kernel->n && c->dims[c->rank - 1] == kernel->n))
		return NULL;
	return ops_status(kernel->api, ORT_INVALID_ARGUMENT, kernel->name,
			  "C must have N = %lld elements along its last axis, or one",
			  (long long)kernel->n);
}

/* Y's shape: A's with the last axis K replaced by N (rank 1: [N]). */
static OrtStatus *output_make(const struct ops_kernel *kernel, OrtKernelContext *ctx,
			      const struct ort_tensor *a, float **ret_y, int64_t *ret_m)
{
	int64_t dims[ORT_TENSOR_MAX_RANK];
	OrtValue *out = NULL;
	OrtStatus *s;
	void *y;

	if (a->rank < 1 || a->dims[a->rank - 1] != kernel->k)
		return ops_status(kernel->api, ORT_INVALID_ARGUMENT, kernel->name,
				  "A must be [..., K] with K = %lld", (long long)kernel->k);
	memcpy(dims, a->dims, a->rank * sizeof(*dims));
	dims[a->rank - 1] = kernel->n;
	s = kernel->api->KernelContext_GetOutput(ctx, 0, dims, a->rank, &out);
	if (!s)
		s = kernel->api->GetTensorMutableData(out, &y);
	if (s)
		return s;
	*ret_y = y;
	*ret_m = kernel->k ? (int64_t)(a->numel / (size_t)kernel->k) : 1;
	for (size_t d = 0; !kernel->k && d + 1 < a->rank; d++)
		*ret_m *= a->dims[d];
	return NULL;
}

static OrtStatus *weight_for_run(const struct ops_kernel *kernel, OrtKernelContext *ctx,
				 struct opass_spmm **ret_spmm, struct opass_spmm **ret_owned)
{
	const OrtValue *values[3];
	OrtStatus *s = NULL;

	*ret_owned = NULL;
	if (kernel->spmm) {
		*ret_spmm = kernel->spmm;
		return NULL;
	}
	for (size_t i = 0; !s && i < 3; i++)
		s = ort_input_get(kernel->api, ctx, IN_VALUES + i, &values[i]);
	if (!s)
		s = weight_build(kernel, values, ret_owned);
	if (!s)
		*ret_spmm = *ret_owned;
	return s;
}

static OrtStatus *run(const struct ops_kernel *kernel, OrtKernelContext *ctx,
		      const struct opass_spmm *spmm, const struct ort_tensor *a,
		      const struct ort_tensor *c)
{
	struct opass_spmm_exec exec;
	struct ort_exec e;
	OrtStatus *s;
	int64_t m = 0;
	float *y = NULL;
	int r;

	s = output_make(kernel, ctx, a, &y, &m);
	if (!s)
		s = ort_exec_begin(&e, kernel->api, ctx, kernel->cpu, kernel->threads, &exec);
	if (s)
		return s;
	r = opass_spmm_run(spmm, a->data, m, c ? c->data : NULL, c ? c->numel : 0, y, &exec);
	ort_exec_end(&e);
	if (r < 0)
		return ops_status(kernel->api, ORT_FAIL, kernel->name, "%s", strerror(-r));
	return NULL;
}

static OrtStatus *ORT_API_CALL kernel_compute(void *op_kernel, OrtKernelContext *ctx)
{
	const struct ops_kernel *kernel = op_kernel;
	struct opass_spmm *spmm = NULL, *owned = NULL;
	struct ort_tensor a, c;
	const OrtValue *va, *vc;
	OrtStatus *s;

	s = ort_input_get(kernel->api, ctx, IN_A, &va);
	if (!s)
		s = ort_tensor_get(kernel->api, va, &a);
	if (!s)
		s = ort_input_get(kernel->api, ctx, IN_BIAS, &vc);
	if (!s && vc)
		s = ort_tensor_get(kernel->api, vc, &c);
	if (!s && vc)
		s = bias_check(kernel, &c);
	if (!s)
		s = weight_for_run(kernel, ctx, &spmm, &owned);
	if (!s)
		s = run(kernel, ctx, spmm, &a, vc ? &c : NULL);
	opass_spmm_free(owned);
	return s;
}

/* ---- the op's description ------------------------------------------------------ */

static const char *ORT_API_CALL op_name(const OrtCustomOp *op)
{
	(void)op;
	return "SparseMatMul";
}

static const char *ORT_API_CALL op_provider(const OrtCustomOp *op)
{
	(void)op;
	return NULL; /* CPU */
}

static ONNXTensorElementDataType ORT_API_CALL op_input_type(const OrtCustomOp *op, size_t i)
{
	(void)op;
	/* indices and row_ptr: int32 or int64, checked when the kernel is made */
	if (i == IN_INDICES || i == IN_ROW_PTR)
		return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
	return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

static size_t ORT_API_CALL op_input_count(const OrtCustomOp *op)
{
	(void)op;
	return 5;
}

static ONNXTensorElementDataType ORT_API_CALL op_output_type(const OrtCustomOp *op, size_t i)
{
	(void)op;
	(void)i;
	return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

static size_t ORT_API_CALL op_output_count(const OrtCustomOp *op)
{
	(void)op;
	return 1;
}

static OrtCustomOpInputOutputCharacteristic ORT_API_CALL op_input_kind(const OrtCustomOp *op,
								      size_t i)
{
	(void)op;
	return i == IN_BIAS ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
}

static OrtCustomOpInputOutputCharacteristic ORT_API_CALL op_output_kind(const OrtCustomOp *op,
								       size_t i)
{
	(void)op;
	(void)i;
	return INPUT_OUTPUT_REQUIRED;
}

static OrtMemType ORT_API_CALL op_input_memory(const OrtCustomOp *op, size_t i)
{
	(void)op;
	(void)i;
	return OrtMemTypeDefault;
}

static int ORT_API_CALL op_variadic_arity(const OrtCustomOp *op)
{
	(void)op;
	return 1;
}

static int ORT_API_CALL op_variadic_homogeneity(const OrtCustomOp *op)
{
	(void)op;
	return 1;
}

static int ORT_API_CALL op_start_version(const OrtCustomOp *op)
{
	(void)op;
	return 1;
}

static int ORT_API_CALL op_end_version(const OrtCustomOp *op)
{
	(void)op;
	return INT_MAX;
}

static OrtCustomOp sparse_matmul_op = {
	.CreateKernel = NULL,               /* V2 callbacks are used */
	.GetName = op_name,
	.GetExecutionProviderType = op_provider,
	.GetInputType = op_input_type,
	.GetInputTypeCount = op_input_count,
	.GetOutputType = op_output_type,
	.GetOutputTypeCount = op_output_count,
	.KernelCompute = NULL,
	.KernelDestroy = kernel_destroy,
	.GetInputCharacteristic = op_input_kind,
	.GetOutputCharacteristic = op_output_kind,
	.GetInputMemoryType = op_input_memory,
	.GetVariadicInputMinArity = op_variadic_arity,
	.GetVariadicInputHomogeneity = op_variadic_homogeneity,
	.GetVariadicOutputMinArity = op_variadic_arity,
	.GetVariadicOutputHomogeneity = op_variadic_homogeneity,
	.CreateKernelV2 = kernel_create,
	.KernelComputeV2 = kernel_compute,
	.GetStartVersion = op_start_version,
	.GetEndVersion = op_end_version,
};

/* ---- registration ------------------------------------------------------------ */

/* One domain for the process: ORT keeps pointers to it in every session
 * options it was added to, so it lives until exit. */
static pthread_mutex_t ops_lock = PTHREAD_MUTEX_INITIALIZER;
static OrtCustomOpDomain *ops_domain;

static const OrtApi *ops_api(const OrtApiBase *base, uint32_t *ret_version)
{
	for (uint32_t v = ORT_API_VERSION; v >= OPS_MIN_API; v--) {
		const OrtApi *api = base->GetApi(v);

		if (api) {
			*ret_version = v;
			return api;
		}
	}
	return NULL;
}

static OrtStatus *domain_get(const OrtApi *api, uint32_t version, OrtCustomOpDomain **ret)
{
	OrtCustomOpDomain *domain = NULL;
	OrtStatus *s = NULL;

	pthread_mutex_lock(&ops_lock);
	if (!ops_domain) {
		sparse_matmul_op.version = version;
		s = api->CreateCustomOpDomain(OPS_DOMAIN, &domain);
		if (!s)
			s = api->CustomOpDomain_Add(domain, &sparse_matmul_op);
		if (!s)
			ops_domain = domain;
		else if (domain)
			api->ReleaseCustomOpDomain(domain);
	}
	*ret = ops_domain;
	pthread_mutex_unlock(&ops_lock);
	return s;
}

ONNXPASS_EXPORT OrtStatus *ORT_API_CALL RegisterCustomOps(OrtSessionOptions *options,
							  const OrtApiBase *api_base)
{
	OrtCustomOpDomain *domain = NULL;
	const OrtApi *api;
	uint32_t version = 0;
	OrtStatus *s;

	if (!api_base)
		return NULL; /* nothing to report an error with; ORT always passes it */
	api = ops_api(api_base, &version);
	if (!api)
		return api_base->GetApi(1)->CreateStatus(ORT_NOT_IMPLEMENTED, "onnx-pass custom ops "
							 "need ONNX Runtime API version 17 or newer");
	if (!options)
		return api->CreateStatus(ORT_INVALID_ARGUMENT, "RegisterCustomOps: no session options");
	s = domain_get(api, version, &domain);
	if (!s)
		s = api->AddCustomOpDomain(options, domain);
	return s;
}
