/* SPDX-License-Identifier: MIT */
/*
 * Kernels of the OnnxPassSparse execution provider: MatMul, Gemm and Conv
 * (2-D, NCHW, group 1) whose weight (input 1) is a constant float
 * initializer, computed by the sparse kernels (sparse_kernels.h) on ORT's
 * intra-op threads.
 *
 * The weight is packed into the kernel's sparse format once, in
 * PrePackWeight at session creation (ORT may then free the dense copy); with a
 * prepacked-weights container (CreateSessionWithPrepackedWeightsContainer)
 * the packed weight is one flat buffer that sessions share. When ORT does not
 * prepack (session.disable_prepacking), the first run packs it.
 * GetCapability (ort_ep.c) claims only nodes these kernels handle: MatMul
 * with a 2-D weight, Gemm with transA = 0, beta = 1 and a bias C of N
 * elements or one, Conv with a 4-D weight and group = 1.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ort_ep.h"
#include "parallel.h"
#include "ort_util.h"
#include "sparse_kernels.h"

#define IN_A 0
#define IN_W 1
#define IN_C 2

/* Conv attributes; auto_pad SAME_* pads are computed per input size. */
enum conv_pad {
	CONV_PAD_EXPLICIT,
	CONV_PAD_SAME_UPPER,
	CONV_PAD_SAME_LOWER,
};

struct ep_conv_attrs {
	enum conv_pad auto_pad;
	int64_t strides[2], pads[4], dilations[2];
	int64_t c_in, kernel[2];   /* from the weight */
};

struct ep_kernel {
	OrtKernelImpl impl;        /* first: ORT hands back &impl */
	const OrtApi *api;
	const OrtEpApi *ep_api;
	enum ep_op op;
	char name[128];
	bool trans_b;
	float alpha;
	struct ep_conv_attrs conv;
	OrtMemoryInfo *cpu;
	unsigned threads;          /* ORT's pool, which a kernel cannot ask: the online CPUs */
	pthread_mutex_t lock;      /* the weight, when packed at the first run */
	struct opass_spmm *spmm;
	int64_t n, k;
	/* a node fused with what follows it (ep_fused_new): where its inputs
	 * are, its Relu and Reshapes, and the bias, copied from its initializer
	 * (ORT drops the constant inputs) */
	bool fused, relu;
	size_t in_x;
	ptrdiff_t in_res;
	struct ep_reshape before, after;
	size_t perm_rank;          /* the fused Transpose (0: none) */
	int64_t perm[EP_PERM_MAX];
	float *bias;
	size_t n_bias;
	/* a conv's weight offsets in the padded copy of x, made at the first
	 * run of an input size (in_h x in_w) and kept for it (under lock) */
	int32_t *conv_offsets;
	int64_t offsets_h, offsets_w;
	bool offsets_tried;
};

static OrtStatus *kernel_status(const struct ep_kernel *kernel, OrtErrorCode code,
				const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static OrtStatus *kernel_status(const struct ep_kernel *kernel, OrtErrorCode code,
				const char *fmt, ...)
{
	char msg[ONNXPASS_ERROR_MAX];
	int len;
	va_list ap;

	len = snprintf(msg, sizeof(msg), EP_NAME " '%s': ", kernel->name);
	va_start(ap, fmt);
	vsnprintf(msg + len, sizeof(msg) - (size_t)len, fmt, ap);
	va_end(ap);
	return kernel->api->CreateStatus(code, msg);
}

/* ---- the weight ------------------------------------------------------------ */

/* B^T [n, k] (times alpha) of a MatMul / Gemm weight; malloc'd. */
static float *weight_transposed(const struct ep_kernel *kernel, const struct ort_tensor *w,
				int64_t n, int64_t k)
{
	const float *src = w->data;
	float *bt = malloc((size_t)(n * k + 1) * sizeof(float));

	if (!bt)
		return NULL;
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < k; j++)
			bt[i * k + j] = kernel->alpha * (kernel->trans_b ? src[i * k + j] :
							   src[j * n + i]);
	return bt;
}

/* A Conv weight [c_out, c_in, kh, kw] is B^T [c_out, c_in * kh * kw] as it is. */
static OrtStatus *conv_weight_pack(struct ep_kernel *kernel, const struct ort_tensor *w,
				   struct opass_spmm **ret_spmm)
{
	struct onnxpass_error err = { 0 };
	int64_t n, k;

	if (w->type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || w->rank != 4)
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "the weight must be a 4-D "
				     "float tensor");
	n = w->dims[0];
	k = w->dims[1] * w->dims[2] * w->dims[3];
	if (opass_spmm_from_dense(w->data, n, k, 1, 1, ret_spmm, &err) < 0)
		return kernel_status(kernel, ORT_FAIL, "%s", err.message);
	opass_spmm_one_row_drop(*ret_spmm);
	kernel->n = n;
	kernel->k = k;
	kernel->conv.c_in = w->dims[1];
	kernel->conv.kernel[0] = w->dims[2];
	kernel->conv.kernel[1] = w->dims[3];
	return NULL;
}

static OrtStatus *weight_pack(struct ep_kernel *kernel, const OrtValue *value,
			      struct opass_spmm **ret_spmm)
{
	struct onnxpass_error err = { 0 };
	struct ort_tensor w;
	OrtStatus *s;
	int64_t n, k;
	float *bt;
	int r;

	s = ort_tensor_get(kernel->api, value, &w);
	if (s)
		return s;
	if (kernel->op == EP_OP_CONV)
		return conv_weight_pack(kernel, &w, ret_spmm);
	if (w.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || w.rank != 2)
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "the weight must be a 2-D "
				     "float tensor");
	n = w.dims[kernel->trans_b ? 0 : 1];
	k = w.dims[kernel->trans_b ? 1 : 0];
	bt = weight_transposed(kernel, &w, n, k);
	if (!bt)
		return kernel_status(kernel, ORT_FAIL, "out of memory");
	r = opass_spmm_from_dense(bt, n, k, 1, 1, ret_spmm, &err);
	free(bt);
	if (r < 0)
		return kernel_status(kernel, ORT_FAIL, "%s", err.message);
	kernel->n = n;
	kernel->k = k;
	return NULL;
}

/* Sharing mode: the packed weight as one flat buffer of ORT's allocator, handed
 * to the cache; ORT then gives every kernel with the same weight the cached
 * buffer in SetSharedPrePackedWeight. */
static OrtStatus *weight_share(struct ep_kernel *kernel, const struct opass_spmm *spmm,
			       OrtAllocator *allocator, OrtSharedPrePackedWeightCache *cache)
{
	size_t size = opass_spmm_flat_size(spmm);
	void *buf = allocator->Alloc(allocator, size);
	OrtStatus *s;

	if (!buf)
		return kernel_status(kernel, ORT_FAIL, "out of memory");
	opass_spmm_flat_write(spmm, buf);
	s = kernel->ep_api->SharedPrePackedWeightCache_StoreWeightData(cache, &buf, &size, 1);
	if (s)
		allocator->Free(allocator, buf);
	return s;
}

static OrtStatus *ORT_API_CALL kernel_prepack(OrtKernelImpl *impl, const OrtValue *tensor,
					     int input_index, OrtAllocator *allocator,
					     OrtSharedPrePackedWeightCache *cache, bool *is_packed)
{
	struct ep_kernel *kernel = (struct ep_kernel *)impl;
	struct opass_spmm *spmm = NULL;
	OrtStatus *s;

	*is_packed = false;
	if (input_index != IN_W || kernel->spmm)
		return NULL;
	s = weight_pack(kernel, tensor, &spmm);
	if (!s && cache && allocator) {
		s = weight_share(kernel, spmm, allocator, cache);
		if (!s) {
			*is_packed = true;   /* the shared buffer arrives in set_shared */
			opass_spmm_free(spmm);
			return NULL;
		}
		kernel->api->ReleaseStatus(s);  /* not shared: keep our own copy */
		s = NULL;
	}
	if (s)
		return s;
	kernel->spmm = spmm;
	*is_packed = true;
	return NULL;
}

static OrtStatus *ORT_API_CALL kernel_set_shared(OrtKernelImpl *impl,
						const void *const *buffers, const size_t *sizes,
						size_t n_buffers, int input_index)
{
	struct ep_kernel *kernel = (struct ep_kernel *)impl;
	struct opass_spmm *spmm = NULL;

	if (input_index != IN_W || n_buffers != 1 ||
	    opass_spmm_flat_view(buffers[0], sizes[0], &spmm) < 0)
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "unexpected shared weight");
	opass_spmm_free(kernel->spmm);
	kernel->spmm = spmm;
	return NULL;
}

/* The packed weight; packed from the input at the first run when ORT did not
 * prepack it. */
static OrtStatus *weight_get(struct ep_kernel *kernel, OrtKernelContext *ctx,
			     const struct opass_spmm **ret)
{
	const OrtValue *value = NULL;
	OrtStatus *s = NULL;

	pthread_mutex_lock(&kernel->lock);
	if (!kernel->spmm)
		s = ort_input_get(kernel->api, ctx, IN_W, &value);
	if (!s && !kernel->spmm)
		s = weight_pack(kernel, value, &kernel->spmm);
	pthread_mutex_unlock(&kernel->lock);
	if (!s)
		*ret = kernel->spmm;
	return s;
}

/* ---- compute --------------------------------------------------------------------- */

/* ONNX's Reshape (allowzero 0) of a tensor of dims in[in_rank] to r's shape,
 * into out[r->rank]: a 0 keeps the input's dim, one -1 takes what is left. */
static bool reshape_resolve(const struct ep_reshape *r, const int64_t *in, size_t in_rank,
			    int64_t *out)
{
	int64_t numel = 1, known = 1;
	ptrdiff_t infer = -1;

	for (size_t d = 0; d < in_rank; d++)
		numel *= in[d];
	for (size_t d = 0; d < r->rank; d++) {
		int64_t v = r->shape[d] == 0 && d < in_rank ? in[d] : r->shape[d];

		if (v == -1 && infer < 0) {
			infer = (ptrdiff_t)d;
			continue;
		}
		if (v < 0 || (r->shape[d] == 0 && d >= in_rank) || (v > 0 && known > INT64_MAX / v))
			return false;
		out[d] = v;
		known *= v;
	}
	if (infer < 0)
		return known == numel;
	if (known == 0 || numel % known)
		return false;
	out[infer] = numel / known;
	return true;
}

/* One side of a layout: the dims [d0, d1) of size above 1 (at most two),
 * the inner one's count and stride, the outer one's stride. */
static bool layout_side(const int64_t *dims, const int64_t *stride, size_t d0, size_t d1,
			int64_t *ret_count, int64_t *ret_inner, int64_t *ret_outer)
{
	size_t axes[EP_PERM_MAX], n = 0;

	for (size_t d = d0; d < d1; d++)
		if (dims[d] > 1)
			axes[n++] = d;
	if (n > 2)
		return false;
	*ret_count = n ? dims[axes[n - 1]] : 1;
	*ret_inner = n ? stride[axes[n - 1]] : 0;
	*ret_outer = n == 2 ? stride[axes[0]] : 0;
	return true;
}

bool ep_layout_make(const int64_t *dims, size_t rank, const int64_t *perm, int64_t m, int64_t n,
		    struct opass_spmm_layout *ret, int64_t *out_dims)
{
	int64_t stride[EP_PERM_MAX], inner = 1, rows = 1;
	bool seen[EP_PERM_MAX] = { false };
	size_t split = 0;

	if (rank < 1 || rank > EP_PERM_MAX || m < 1 || n < 1)
		return false;
	for (size_t i = 0; i < rank; i++) {
		if (perm[i] < 0 || perm[i] >= (int64_t)rank || seen[perm[i]] || dims[perm[i]] < 1)
			return false;
		seen[perm[i]] = true;
		out_dims[i] = dims[perm[i]];
	}
	for (size_t i = rank; i-- > 0;) {
		stride[perm[i]] = inner;
		inner *= out_dims[i];
	}
	while (split < rank && rows < m)
		rows *= dims[split++];
	return rows == m && inner == m * n &&
	       layout_side(dims, stride, 0, split, &ret->rows, &ret->row, &ret->row_group) &&
	       layout_side(dims, stride, split, rank, &ret->cols, &ret->col, &ret->col_group);
}

/* Y's dims before a fused Transpose: A's (reshaped first when a Reshape is
 * fused before the node) with N for K, or those of the Reshape fused after
 * it; and A's rows, the product of all but its last axis. */
static OrtStatus *output_dims(const struct ep_kernel *kernel, const struct ort_tensor *a,
			      int64_t dims[ORT_TENSOR_MAX_RANK], size_t *ret_rank, int64_t *ret_m)
{
	int64_t y[ORT_TENSOR_MAX_RANK], m = 1;
	size_t rank = a->rank;

	memcpy(y, a->dims, a->rank * sizeof(*y));
	if (kernel->before.rank && !reshape_resolve(&kernel->before, a->dims, a->rank, y))
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "the Reshape before the node "
				     "does not fit its input");
	rank = kernel->before.rank ? kernel->before.rank : rank;
	if (a->type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || rank < 1 || y[rank - 1] != kernel->k ||
	    (kernel->op == EP_OP_GEMM && rank != 2))
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "A must be float [..., K] "
				     "with K = %lld", (long long)kernel->k);
	for (size_t d = 0; d + 1 < rank; d++)
		m *= y[d];
	y[rank - 1] = kernel->n;
	if (kernel->after.rank && !reshape_resolve(&kernel->after, y, rank, dims))
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "the Reshape after the node "
				     "does not fit its output");
	if (!kernel->after.rank)
		memcpy(dims, y, rank * sizeof(*y));
	*ret_rank = kernel->after.rank ? kernel->after.rank : rank;
	*ret_m = m;
	return NULL;
}

/* The output (transposed when a Transpose is fused: its layout in *layout,
 * else layout->rows is 0) and A's rows. */
static OrtStatus *output_make(const struct ep_kernel *kernel, OrtKernelContext *ctx,
			      const struct ort_tensor *a, float **ret_y, int64_t *ret_m,
			      struct opass_spmm_layout *layout)
{
	int64_t dims[ORT_TENSOR_MAX_RANK], out[EP_PERM_MAX], m = 1;
	OrtValue *value = NULL;
	size_t rank = 0;
	OrtStatus *s;
	void *y;

	*layout = (struct opass_spmm_layout){ 0 };
	s = output_dims(kernel, a, dims, &rank, &m);
	if (!s && kernel->perm_rank) {
		if (rank != kernel->perm_rank || m < 1 ||
		    !ep_layout_make(dims, rank, kernel->perm, m, kernel->n, layout, out))
			return kernel_status(kernel, ORT_INVALID_ARGUMENT, "the Transpose after the "
					     "node does not fit its output");
		memcpy(dims, out, rank * sizeof(*out));
	}
	if (!s)
		s = kernel->api->KernelContext_GetOutput(ctx, 0, dims, rank, &value);
	if (!s)
		s = kernel->api->GetTensorMutableData(value, &y);
	if (s)
		return s;
	*ret_y = y;
	*ret_m = m;
	return NULL;
}

/* A bias the kernels take: float, N values (along its last axis) or one. */
static bool bias_ok(const struct ep_kernel *kernel, const struct ort_tensor *c)
{
	return c->type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT &&
	       (c->numel == 1 || (c->rank >= 1 && c->numel == (size_t)kernel->n &&
				  c->dims[c->rank - 1] == kernel->n));
}

/* Gemm's C: N values (any leading ones) or one. */
static OrtStatus *bias_get(const struct ep_kernel *kernel, OrtKernelContext *ctx,
			   const float **ret_bias, size_t *ret_n)
{
	const OrtValue *value = NULL;
	struct ort_tensor c;
	OrtStatus *s;

	*ret_bias = kernel->bias;
	*ret_n = kernel->n_bias;
	if (kernel->op == EP_OP_MATMUL || kernel->fused)
		return NULL;
	s = ort_input_get(kernel->api, ctx, IN_C, &value);
	if (s || !value)
		return s;
	s = ort_tensor_get(kernel->api, value, &c);
	if (s)
		return s;
	if (!bias_ok(kernel, &c))
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "the bias must be float with "
				     "N elements or one");
	*ret_bias = c.data;
	*ret_n = c.numel;
	return NULL;
}

static OrtStatus *matmul_compute(struct ep_kernel *kernel, OrtKernelContext *ctx,
				 const struct opass_spmm *spmm)
{
	const float *bias = NULL;
	const OrtValue *va = NULL;
	struct opass_spmm_layout layout;
	struct opass_spmm_exec exec;
	struct ort_tensor a;
	struct ort_exec e;
	size_t n_bias = 0;
	int64_t m = 0;
	float *y = NULL;
	OrtStatus *s;
	int r;

	s = ort_input_get(kernel->api, ctx, kernel->in_x, &va);
	if (!s && !va)
		s = kernel_status(kernel, ORT_INVALID_ARGUMENT, "A is missing");
	if (!s)
		s = ort_tensor_get(kernel->api, va, &a);
	if (!s)
		s = bias_get(kernel, ctx, &bias, &n_bias);
	if (!s)
		s = output_make(kernel, ctx, &a, &y, &m, &layout);
	if (!s)
		s = ort_exec_begin(&e, kernel->api, ctx, kernel->cpu, kernel->threads, &exec);
	if (s)
		return s;
	r = opass_spmm_run_layout(spmm, a.data, m, bias, n_bias, kernel->relu,
				  layout.rows ? &layout : NULL, y, &exec);
	ort_exec_end(&e);
	if (r < 0)
		return kernel_status(kernel, ORT_FAIL, "%s", strerror(-r));
	return NULL;
}

/* Padding before and after along one axis (auto_pad SAME_*: as ONNX defines it). */
static void conv_pads(const struct ep_conv_attrs *cv, int axis, int64_t in, int64_t *ret_begin,
		      int64_t *ret_end)
{
	int64_t stride = cv->strides[axis], out, total;

	if (cv->auto_pad == CONV_PAD_EXPLICIT) {
		*ret_begin = cv->pads[axis];
		*ret_end = cv->pads[axis + 2];
		return;
	}
	out = (in + stride - 1) / stride;
	total = (out - 1) * stride + cv->dilations[axis] * (cv->kernel[axis] - 1) + 1 - in;
	total = total > 0 ? total : 0;
	*ret_begin = cv->auto_pad == CONV_PAD_SAME_UPPER ? total / 2 : total - total / 2;
	*ret_end = total - *ret_begin;
}

/* The convolution's geometry for input x [N, C, H, W]. */
static OrtStatus *conv_geometry(const struct ep_kernel *kernel, const struct ort_tensor *x,
				struct opass_conv *ret)
{
	const struct ep_conv_attrs *a = &kernel->conv;
	struct opass_conv cv = { 0 };
	int64_t pad_end[2];

	if (x->type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || x->rank != 4 || x->dims[1] != a->c_in)
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "X must be float [N, %lld, H, W]",
				     (long long)a->c_in);
	cv = (struct opass_conv){ .c_in = a->c_in, .in_h = x->dims[2], .in_w = x->dims[3],
				  .kernel_h = a->kernel[0], .kernel_w = a->kernel[1],
				  .stride_h = a->strides[0], .stride_w = a->strides[1],
				  .dilation_h = a->dilations[0], .dilation_w = a->dilations[1] };
	conv_pads(a, 0, cv.in_h, &cv.pad_top, &pad_end[0]);
	conv_pads(a, 1, cv.in_w, &cv.pad_left, &pad_end[1]);
	cv.out_h = opass_conv_output_size(cv.in_h, cv.kernel_h, cv.stride_h, cv.pad_top, pad_end[0],
					  cv.dilation_h);
	cv.out_w = opass_conv_output_size(cv.in_w, cv.kernel_w, cv.stride_w, cv.pad_left,
					  pad_end[1], cv.dilation_w);
	if (cv.out_h < 0 || cv.out_w < 0)
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "the kernel does not fit the "
				     "padded input");
	*ret = cv;
	return NULL;
}

/* A fused Add's other operand: shaped as the output (no broadcasting). */
static OrtStatus *residual_get(const struct ep_kernel *kernel, OrtKernelContext *ctx,
			       const int64_t dims[4], const float **ret)
{
	const OrtValue *value = NULL;
	struct ort_tensor t;
	OrtStatus *s;

	*ret = NULL;
	if (kernel->in_res < 0)
		return NULL;
	s = ort_input_get(kernel->api, ctx, (size_t)kernel->in_res, &value);
	if (!s && !value)
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "the fused Add has no operand");
	if (!s)
		s = ort_tensor_get(kernel->api, value, &t);
	if (s)
		return s;
	if (t.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || t.rank != 4 ||
	    memcmp(t.dims, dims, 4 * sizeof(*dims)) != 0)
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "the fused Add's other operand "
				     "must be float and shaped as the Conv's output");
	*ret = t.data;
	return NULL;
}

/* The weight offsets for cv: those of the first input size run (made now
 * when this is it), else NULL (opass_spmm_run_conv then makes its own; also
 * when this conv packs its patches or memory runs out). */
static const int32_t *conv_offsets_get(struct ep_kernel *kernel, const struct opass_spmm *spmm,
				       const struct opass_conv *cv)
{
	const int32_t *off = NULL;

	pthread_mutex_lock(&kernel->lock);
	if (!kernel->offsets_tried) {
		kernel->offsets_tried = true;
		kernel->offsets_h = cv->in_h;
		kernel->offsets_w = cv->in_w;
		if (opass_conv_offsets_new(spmm, cv, &kernel->conv_offsets) < 0)
			kernel->conv_offsets = NULL;
	}
	if (kernel->offsets_h == cv->in_h && kernel->offsets_w == cv->in_w)
		off = kernel->conv_offsets;
	pthread_mutex_unlock(&kernel->lock);
	return off;
}

static OrtStatus *conv_run(struct ep_kernel *kernel, OrtKernelContext *ctx,
			   const struct opass_spmm *spmm, const struct ort_tensor *x,
			   const struct opass_conv *geometry)
{
	int64_t dims[4] = { x->dims[0], kernel->n, geometry->out_h, geometry->out_w };
	struct opass_conv cv = *geometry;
	const float *bias = NULL;
	struct opass_spmm_exec exec;
	OrtValue *out = NULL;
	struct ort_exec e;
	size_t n_bias = 0;
	void *y = NULL;
	OrtStatus *s;
	int r;

	cv.relu = kernel->relu;
	cv.offsets = conv_offsets_get(kernel, spmm, &cv);
	s = bias_get(kernel, ctx, &bias, &n_bias);
	if (!s)
		s = residual_get(kernel, ctx, dims, &cv.residual);
	if (!s)
		s = kernel->api->KernelContext_GetOutput(ctx, 0, dims, 4, &out);
	if (!s)
		s = kernel->api->GetTensorMutableData(out, &y);
	if (!s)
		s = ort_exec_begin(&e, kernel->api, ctx, kernel->cpu, kernel->threads, &exec);
	if (s)
		return s;
	r = opass_spmm_run_conv(spmm, &cv, x->data, x->dims[0], bias, n_bias, y, &exec);
	ort_exec_end(&e);
	if (r < 0)
		return kernel_status(kernel, ORT_FAIL, "%s", strerror(-r));
	return NULL;
}

static OrtStatus *conv_compute(struct ep_kernel *kernel, OrtKernelContext *ctx,
			       const struct opass_spmm *spmm)
{
	const OrtValue *vx = NULL;
	struct opass_conv cv;
	struct ort_tensor x;
	OrtStatus *s;

	s = ort_input_get(kernel->api, ctx, kernel->in_x, &vx);
	if (!s && !vx)
		s = kernel_status(kernel, ORT_INVALID_ARGUMENT, "X is missing");
	if (!s)
		s = ort_tensor_get(kernel->api, vx, &x);
	if (!s)
		s = conv_geometry(kernel, &x, &cv);
	if (!s)
		s = conv_run(kernel, ctx, spmm, &x, &cv);
	return s;
}

static OrtStatus *ORT_API_CALL kernel_compute(OrtKernelImpl *impl, OrtKernelContext *ctx)
{
	struct ep_kernel *kernel = (struct ep_kernel *)impl;
	const struct opass_spmm *spmm = NULL;
	OrtStatus *s;

	s = weight_get(kernel, ctx, &spmm);
	if (!s && kernel->op == EP_OP_CONV)
		s = conv_compute(kernel, ctx, spmm);
	else if (!s)
		s = matmul_compute(kernel, ctx, spmm);
	return s;
}

/* ---- creation ---------------------------------------------------------------------- */

static void ORT_API_CALL kernel_release(OrtKernelImpl *impl)
{
	struct ep_kernel *kernel = (struct ep_kernel *)impl;

	if (!kernel)
		return;
	opass_spmm_free(kernel->spmm);
	free(kernel->conv_offsets);
	if (kernel->cpu)
		kernel->api->ReleaseMemoryInfo(kernel->cpu);
	pthread_mutex_destroy(&kernel->lock);
	free(kernel->bias);
	free(kernel);
}

/* Where a kernel's attributes come from: ORT's kernel info (a registry
 * kernel) or the graph's node (a fused one). */
struct attr_src {
	const OrtApi *api;
	const OrtKernelInfo *info;
	const OrtNode *node;
};

static int64_t attr_int(const struct attr_src *a, const char *name, int64_t fallback)
{
	int64_t v = fallback;
	OrtStatus *s;

	if (a->node)
		return ort_node_attr_int(a->api, a->node, name, fallback);
	s = a->api->KernelInfoGetAttribute_int64(a->info, name, &v);
	return ort_status_ok(a->api, s) ? v : fallback;
}

static float attr_float(const struct attr_src *a, const char *name, float fallback)
{
	float v = fallback;
	OrtStatus *s;

	if (a->node)
		return ort_node_attr_float(a->api, a->node, name, fallback);
	s = a->api->KernelInfoGetAttribute_float(a->info, name, &v);
	return ort_status_ok(a->api, s) ? v : fallback;
}

/* An ints attribute of exactly n values, or the fallback when absent. */
static bool attr_ints(const struct attr_src *a, const char *name, int64_t *out, size_t n,
		      int64_t fallback)
{
	int64_t v[8];
	size_t size = 8;

	if (a->node) {
		if (!ort_node_attr_ints(a->api, a->node, name, v, 8, &size))
			return false;
	} else if (!ort_status_ok(a->api, a->api->KernelInfoGetAttributeArray_int64(a->info, name,
										     v, &size))) {
		size = 0;
	}
	if (size == 0)
		for (size_t i = 0; i < n; i++)
			out[i] = fallback;
	else if (size == n)
		memcpy(out, v, n * sizeof(*v));
	return size == 0 || size == n;
}

/* A string attribute into buf (size bytes), or false when absent or longer. */
static bool attr_string(const struct attr_src *a, const char *name, char *buf, size_t size)
{
	const OrtOpAttr *attr = NULL;
	size_t len = 0;

	if (!a->node)
		return ort_status_ok(a->api, a->api->KernelInfoGetAttribute_string(a->info, name, buf,
										    &size));
	if (!ort_status_ok(a->api, a->api->Node_GetAttributeByName(a->node, name, &attr)) || !attr ||
	    !ort_status_ok(a->api, a->api->ReadOpAttr(attr, ORT_OP_ATTR_STRING, buf, size - 1,
						      &len)))
		return false;
	buf[len] = '\0';
	return true;
}

static OrtStatus *conv_attrs(struct ep_kernel *kernel, const struct attr_src *src)
{
	struct ep_conv_attrs *cv = &kernel->conv;
	char pad[16] = "NOTSET";

	if (!attr_string(src, "auto_pad", pad, sizeof(pad)))
		strcpy(pad, "NOTSET");
	cv->auto_pad = strcmp(pad, "SAME_UPPER") == 0 ? CONV_PAD_SAME_UPPER :
		       strcmp(pad, "SAME_LOWER") == 0 ? CONV_PAD_SAME_LOWER : CONV_PAD_EXPLICIT;
	if (attr_int(src, "group", 1) != 1 ||
	    !attr_ints(src, "strides", cv->strides, 2, 1) ||
	    !attr_ints(src, "dilations", cv->dilations, 2, 1) ||
	    !attr_ints(src, "pads", cv->pads, 4, 0))
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "only 2-D convolutions with "
				     "group = 1");
	if (strcmp(pad, "VALID") == 0)
		memset(cv->pads, 0, sizeof(cv->pads));
	return NULL;
}

static OrtStatus *kernel_attrs(struct ep_kernel *kernel, const struct attr_src *src)
{
	kernel->alpha = 1.0f;
	if (kernel->op == EP_OP_CONV)
		return conv_attrs(kernel, src);
	if (kernel->op != EP_OP_GEMM)
		return NULL;
	kernel->trans_b = attr_int(src, "transB", 0) != 0;
	kernel->alpha = attr_float(src, "alpha", 1.0f);
	if (attr_int(src, "transA", 0) != 0 || attr_float(src, "beta", 1.0f) != 1.0f)
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "transA and beta != 1 are not "
				     "supported");
	return NULL;
}

static struct ep_kernel *kernel_alloc(const OrtApi *api, const OrtEpApi *ep_api, enum ep_op op)
{
	struct ep_kernel *kernel = calloc(1, sizeof(*kernel));

	if (!kernel)
		return NULL;
	kernel->impl = (OrtKernelImpl){ .ort_version_supported = ORT_API_VERSION,
					.Compute = kernel_compute, .Release = kernel_release,
					.PrePackWeight = kernel_prepack,
					.SetSharedPrePackedWeight = kernel_set_shared };
	kernel->api = api;
	kernel->ep_api = ep_api;
	kernel->op = op;
	kernel->in_x = IN_A;
	kernel->in_res = -1;
	kernel->threads = opass_parallel_threads(0);
	pthread_mutex_init(&kernel->lock, NULL);
	return kernel;
}

static OrtStatus *ORT_API_CALL kernel_create(void *state, const OrtKernelInfo *info,
					    OrtKernelImpl **ret_kernel)
{
	const struct ep_kernel_state *st = state;
	const struct attr_src src = { .api = st->api, .info = info };
	size_t len;
	struct ep_kernel *kernel;
	OrtStatus *s;

	*ret_kernel = NULL;
	kernel = kernel_alloc(st->api, st->ep_api, st->op);
	if (!kernel)
		return st->api->CreateStatus(ORT_FAIL, EP_NAME ": out of memory");
	len = sizeof(kernel->name);
	if (!ort_status_ok(st->api, st->api->KernelInfo_GetNodeName(info, kernel->name, &len)))
		snprintf(kernel->name, sizeof(kernel->name), "?");
	s = kernel_attrs(kernel, &src);
	if (!s)
		s = st->api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &kernel->cpu);
	if (s) {
		kernel_release(&kernel->impl);
		return s;
	}
	*ret_kernel = &kernel->impl;
	return NULL;
}

/* ---- a node fused with the Add and / or Relu after it ------------------------------ */

struct ep_fused {
	OrtNodeComputeInfo info;   /* first: ORT hands back &info */
	struct ep_kernel *kernel;
};

static OrtStatus *ORT_API_CALL fused_create_state(OrtNodeComputeInfo *this_ptr,
						 OrtNodeComputeContext *ctx, void **ret_state)
{
	(void)ctx;
	*ret_state = ((struct ep_fused *)this_ptr)->kernel;
	return NULL;
}

static OrtStatus *ORT_API_CALL fused_compute(OrtNodeComputeInfo *this_ptr, void *state,
					    OrtKernelContext *ctx)
{
	(void)this_ptr;
	return kernel_compute(&((struct ep_kernel *)state)->impl, ctx);
}

static void ORT_API_CALL fused_release_state(OrtNodeComputeInfo *this_ptr, void *state)
{
	(void)this_ptr;
	(void)state;
}

void ep_fused_free(OrtNodeComputeInfo *info)
{
	struct ep_fused *f = (struct ep_fused *)info;

	if (!f)
		return;
	if (f->kernel)
		kernel_release(&f->kernel->impl);
	free(f);
}

/* The node's weight, packed, and its bias (Conv's B, Gemm's C), copied: N
 * values (Gemm: along its last axis) or one. */
static OrtStatus *fused_constants(struct ep_kernel *kernel, const OrtNode *node)
{
	const OrtApi *api = kernel->api;
	const OrtValueInfo *inputs[3] = { NULL };
	const OrtValue *w = NULL;
	struct ort_tensor b;
	size_t n = 0;
	OrtStatus *s;

	s = api->Node_GetNumInputs(node, &n);
	if (!s && (n < 2 || n > 3))
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "2 or 3 inputs expected");
	if (!s)
		s = api->Node_GetInputs(node, inputs, n);
	if (!s)
		s = api->ValueInfo_GetInitializerValue(inputs[1], &w);
	if (!s && !w)
		s = kernel_status(kernel, ORT_INVALID_ARGUMENT, "the weight is not an initializer");
	if (!s)
		s = weight_pack(kernel, w, &kernel->spmm);
	if (s || n < 3 || !inputs[2])
		return s;
	if (!ort_value_constant(api, inputs[2], &b) || !bias_ok(kernel, &b))
		return kernel_status(kernel, ORT_INVALID_ARGUMENT, "the bias must be a constant "
				     "float initializer of N elements or one");
	kernel->bias = malloc(b.numel * sizeof(float));
	if (!kernel->bias)
		return kernel_status(kernel, ORT_FAIL, "out of memory");
	memcpy(kernel->bias, b.data, b.numel * sizeof(float));
	kernel->n_bias = b.numel;
	return NULL;
}

bool ep_reshape_read(const OrtApi *api, const OrtNode *reshape, struct ep_reshape *ret)
{
	const OrtValueInfo *in[2] = { NULL };
	struct ort_tensor shape;
	size_t n = 0;

	if (ort_node_attr_int(api, reshape, "allowzero", 0) != 0 ||
	    !ort_status_ok(api, api->Node_GetNumInputs(reshape, &n)) || n != 2 ||
	    !ort_status_ok(api, api->Node_GetInputs(reshape, in, 2)) ||
	    !ort_value_constant_of(api, in[1], ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, &shape) ||
	    shape.rank != 1 || shape.numel < 1 || shape.numel > ORT_TENSOR_MAX_RANK)
		return false;
	ret->rank = shape.numel;
	memcpy(ret->shape, shape.data, shape.numel * sizeof(*ret->shape));
	return true;
}

OrtStatus *ep_fused_new(const OrtApi *api, const OrtEpApi *ep_api, const OrtNode *node,
			enum ep_op op, const struct ep_fusion *how, OrtNodeComputeInfo **ret)
{
	const struct attr_src src = { .api = api, .node = node };
	struct ep_fused *f = calloc(1, sizeof(*f));
	const char *name = NULL;
	OrtStatus *s = NULL;

	if (f)
		f->kernel = kernel_alloc(api, ep_api, op);
	if (!f || !f->kernel) {
		ep_fused_free(f ? &f->info : NULL);
		return api->CreateStatus(ORT_FAIL, EP_NAME ": out of memory");
	}
	f->info = (OrtNodeComputeInfo){ .ort_version_supported = ORT_API_VERSION,
					.CreateState = fused_create_state, .Compute = fused_compute,
					.ReleaseState = fused_release_state };
	f->kernel->fused = true;
	f->kernel->relu = how->relu;
	f->kernel->in_x = how->in_x;
	f->kernel->in_res = how->in_res;
	f->kernel->before = how->before;
	f->kernel->after = how->after;
	f->kernel->perm_rank = how->perm_rank;
	memcpy(f->kernel->perm, how->perm, sizeof(how->perm));
	if (ort_status_ok(api, api->Node_GetName(node, &name)) && name)
		snprintf(f->kernel->name, sizeof(f->kernel->name), "%s", name);
	s = kernel_attrs(f->kernel, &src);
	if (!s)
		s = fused_constants(f->kernel, node);
	if (!s)
		s = api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &f->kernel->cpu);
	if (s) {
		ep_fused_free(&f->info);
		return s;
	}
	*ret = &f->info;
	return NULL;
}

/* ---- the registry ------------------------------------------------------------------- */

/* Since-version ranges: the versions of the op whose semantics the kernels
 * implement (ORT matches an end of INT_MAX only to the first version). */
static const struct ep_kernel_def {
	const char *type;
	enum ep_op op;
	int since, until;
} ep_kernel_defs[] = {
	{ "MatMul", EP_OP_MATMUL, 1, 13 },
	{ "Gemm", EP_OP_GEMM, 1, 13 },
	{ "Conv", EP_OP_CONV, 1, 22 },
};

static OrtStatus *kernel_def_add(const OrtEpApi *ep_api, OrtKernelRegistry *registry,
				 const struct ep_kernel_def *def, struct ep_kernel_state *state)
{
	OrtKernelDefBuilder *builder = NULL;
	OrtKernelDef *kernel_def = NULL;
	const OrtDataType *t = NULL;
	OrtStatus *s;

	s = ep_api->GetTensorDataType(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &t);
	if (!s)
		s = ep_api->CreateKernelDefBuilder(&builder);
	if (!s)
		s = ep_api->KernelDefBuilder_SetOperatorType(builder, def->type);
	if (!s)
		s = ep_api->KernelDefBuilder_SetDomain(builder, "");
	if (!s)
		s = ep_api->KernelDefBuilder_SetSinceVersion(builder, def->since, def->until);
	if (!s)
		s = ep_api->KernelDefBuilder_SetExecutionProvider(builder, EP_NAME);
	if (!s)
		s = ep_api->KernelDefBuilder_AddTypeConstraint(builder, "T", &t, 1);
	if (!s)
		s = ep_api->KernelDefBuilder_Build(builder, &kernel_def);
	if (!s)
		s = ep_api->KernelRegistry_AddKernel(registry, kernel_def, kernel_create, state);
	if (kernel_def)
		ep_api->ReleaseKernelDef(kernel_def);
	if (builder)
		ep_api->ReleaseKernelDefBuilder(builder);
	return s;
}

OrtStatus *ep_kernel_registry_new(const OrtApi *api, const OrtEpApi *ep_api,
				  struct ep_kernel_state states[_EP_OP_MAX],
				  OrtKernelRegistry **ret_registry)
{
	OrtKernelRegistry *registry = NULL;
	OrtStatus *s;

	for (int op = 0; op < _EP_OP_MAX; op++)
		states[op] = (struct ep_kernel_state){ .api = api, .ep_api = ep_api,
						       .op = (enum ep_op)op };
	s = ep_api->CreateKernelRegistry(&registry);
	for (size_t i = 0; !s && i < sizeof(ep_kernel_defs) / sizeof(ep_kernel_defs[0]); i++)
		s = kernel_def_add(ep_api, registry, &ep_kernel_defs[i],
				   &states[ep_kernel_defs[i].op]);
	if (s) {
		if (registry)
			ep_api->ReleaseKernelRegistry(registry);
		return s;
	}
	*ret_registry = registry;
	return NULL;
}
