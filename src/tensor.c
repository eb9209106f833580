/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "half.h"
#include "tensor.h"

#define DT(x) ONNX__TENSOR_PROTO__DATA_TYPE__##x

const char *opass_dtype_name(int32_t dtype)
{
	switch (dtype) {
	case DT(FLOAT): return "float32";
	case DT(FLOAT16): return "float16";
	case DT(BFLOAT16): return "bfloat16";
	case DT(DOUBLE): return "float64";
	case DT(UINT8): return "uint8";
	case DT(INT8): return "int8";
	case DT(UINT16): return "uint16";
	case DT(INT16): return "int16";
	case DT(INT32): return "int32";
	case DT(INT64): return "int64";
	case DT(UINT32): return "uint32";
	case DT(UINT64): return "uint64";
	case DT(STRING): return "string";
	case DT(BOOL): return "bool";
	case DT(COMPLEX64): return "complex64";
	case DT(COMPLEX128): return "complex128";
	default: return "unknown";
	}
}

bool opass_dtype_is_float(int32_t dtype)
{
	return dtype == DT(FLOAT) || dtype == DT(FLOAT16) || dtype == DT(BFLOAT16) ||
	       dtype == DT(DOUBLE);
}

size_t opass_dtype_size(int32_t dtype)
{
	switch (dtype) {
	case DT(BOOL): case DT(UINT8): case DT(INT8): return 1;
	case DT(FLOAT16): case DT(BFLOAT16): case DT(UINT16): case DT(INT16): return 2;
	case DT(FLOAT): case DT(INT32): case DT(UINT32): return 4;
	case DT(DOUBLE): case DT(INT64): case DT(UINT64): case DT(COMPLEX64): return 8;
	case DT(COMPLEX128): return 16;
	default: return 0;
	}
}

int opass_tensor_numel(const Onnx__TensorProto *t, uint64_t *ret_numel, struct onnxpass_error *err)
{
	const char *name = t->name ? t->name : "";
	uint64_t n = 1;

	for (size_t i = 0; i < t->n_dims; i++) {
		if (t->dims[i] < 0)
			return opass_error(err, -EBADMSG, "tensor '%s': negative dimension %" PRId64,
					   name, t->dims[i]);
		if (t->dims[i] != 0 && n > UINT64_MAX / (uint64_t)t->dims[i])
			return opass_error(err, -EOVERFLOW, "tensor '%s': dimensions overflow", name);
		n *= (uint64_t)t->dims[i];
	}
	*ret_numel = n;
	return 0;
}

/* Number of elements the tensor's storage holds, for float dtypes. */
static uint64_t tensor_stored(const Onnx__TensorProto *t)
{
	if (t->has_raw_data)
		return t->raw_data.len / opass_dtype_size(t->data_type);
	switch (t->data_type) {
	case DT(FLOAT): return t->n_float_data;
	case DT(DOUBLE): return t->n_double_data;
	default: return t->n_int32_data;
	}
}

int opass_tensor_check(const Onnx__TensorProto *t, uint64_t *ret_numel, struct onnxpass_error *err)
{
	const char *name = t->name ? t->name : "";
	uint64_t n;
	int r;

	if (!opass_dtype_is_float(t->data_type))
		return opass_error(err, -EBADMSG, "tensor '%s': dtype %s is not a float type",
				   name, opass_dtype_name(t->data_type));
	r = opass_tensor_numel(t, &n, err);
	if (r < 0)
		return r;
	if (t->has_raw_data && t->raw_data.len % opass_dtype_size(t->data_type))
		return opass_error(err, -EBADMSG, "tensor '%s': raw_data size %zu is not a multiple of %zu",
				   name, t->raw_data.len, opass_dtype_size(t->data_type));
	if (tensor_stored(t) != n)
		return opass_error(err, -EBADMSG, "tensor '%s': dims hold %" PRIu64
				   " elements but the data holds %" PRIu64, name, n, tensor_stored(t));
	*ret_numel = n;
	return 0;
}

double opass_tensor_get(const Onnx__TensorProto *t, uint64_t i)
{
	const uint8_t *raw = t->raw_data.data;
	uint16_t h;
	float f;
	double d;

	switch (t->data_type) {
	case DT(FLOAT):
		if (!t->has_raw_data)
			return t->float_data[i];
		memcpy(&f, raw + 4 * i, 4);
		return f;
	case DT(DOUBLE):
		if (!t->has_raw_data)
			return t->double_data[i];
		memcpy(&d, raw + 8 * i, 8);
		return d;
	default:
		if (t->has_raw_data)
			memcpy(&h, raw + 2 * i, 2);
		else
			h = (uint16_t)t->int32_data[i];
		return t->data_type == DT(FLOAT16) ? opass_half_to_float(h) : opass_bf16_to_float(h);
	}
}

void opass_tensor_read(const Onnx__TensorProto *t, double *out)
{
	uint64_t n = tensor_stored(t);

	if (t->data_type == DT(FLOAT) && t->has_raw_data) {
		const uint8_t *raw = t->raw_data.data;

		for (uint64_t i = 0; i < n; i++) {
			float f;

			memcpy(&f, raw + 4 * i, 4);
			out[i] = f;
		}
		return;
	}
	for (uint64_t i = 0; i < n; i++)
		out[i] = opass_tensor_get(t, i);
}

void opass_tensor_read_f32(const Onnx__TensorProto *t, float *out)
{
	uint64_t n = tensor_stored(t);

	if (n == 0)
		return; /* memcpy from a NULL array is undefined even for 0 bytes */
	if (t->data_type == DT(FLOAT) && t->has_raw_data) {
		memcpy(out, t->raw_data.data, n * 4);
		return;
	}
	if (t->data_type == DT(FLOAT)) {
		memcpy(out, t->float_data, n * 4);
		return;
	}
	for (uint64_t i = 0; i < n; i++)
		out[i] = (float)opass_tensor_get(t, i);
}

/* The field that holds t's elements, and its size in bytes. */
static void *tensor_storage(const Onnx__TensorProto *t, size_t *ret_size)
{
	if (t->has_raw_data) {
		*ret_size = t->raw_data.len;
		return t->raw_data.data;
	}
	if (t->n_float_data) {
		*ret_size = t->n_float_data * sizeof(*t->float_data);
		return t->float_data;
	}
	if (t->n_double_data) {
		*ret_size = t->n_double_data * sizeof(*t->double_data);
		return t->double_data;
	}
	*ret_size = t->n_int32_data * sizeof(*t->int32_data);
	return t->int32_data;
}

int opass_tensor_backup(const Onnx__TensorProto *t, struct opass_tensor_backup *ret_backup)
{
	size_t size;
	const void *data = tensor_storage(t, &size);
	void *copy = malloc(size ? size : 1);

	if (!copy)
		return -ENOMEM;
	if (size)
		memcpy(copy, data, size);
	*ret_backup = (struct opass_tensor_backup){ .bytes = copy, .size = size };
	return 0;
}

void opass_tensor_restore(Onnx__TensorProto *t, const struct opass_tensor_backup *backup)
{
	size_t size;
	void *data = tensor_storage(t, &size);

	if (size == backup->size && size)
		memcpy(data, backup->bytes, size);
}

void opass_tensor_backup_fini(struct opass_tensor_backup *backup)
{
	if (!backup)
		return;
	free(backup->bytes);
	*backup = (struct opass_tensor_backup){ 0 };
}

void opass_tensor_set(Onnx__TensorProto *t, uint64_t i, double v)
{
	float f = (float)v;
	uint16_t h;

	switch (t->data_type) {
	case DT(FLOAT):
		if (t->has_raw_data)
			memcpy(t->raw_data.data + 4 * i, &f, 4);
		else
			t->float_data[i] = f;
		return;
	case DT(DOUBLE):
		if (t->has_raw_data)
			memcpy(t->raw_data.data + 8 * i, &v, 8);
		else
			t->double_data[i] = v;
		return;
	default:
		h = t->data_type == DT(FLOAT16) ? opass_half_from_float(f) : opass_bf16_from_float(f);
		if (t->has_raw_data)
			memcpy(t->raw_data.data + 2 * i, &h, 2);
		else
			t->int32_data[i] = h;
	}
}

void opass_tensor_zero(Onnx__TensorProto *t, uint64_t i)
{
	size_t size = opass_dtype_size(t->data_type);

	if (t->has_raw_data) {
		memset(t->raw_data.data + size * i, 0, size);
		return;
	}
	switch (t->data_type) {
	case DT(FLOAT): t->float_data[i] = 0.0f; break;
	case DT(DOUBLE): t->double_data[i] = 0.0; break;
	case DT(INT64): t->int64_data[i] = 0; break;
	case DT(UINT32): case DT(UINT64): t->uint64_data[i] = 0; break;
	default: t->int32_data[i] = 0; break;
	}
}

/* Zero test on the raw little-endian bits of a float (sign ignored). */
static bool raw_float_is_zero(const uint8_t *p, size_t size)
{
	uint64_t v = 0;

	memcpy(&v, p, size);
	return (v << (65 - 8 * size)) == 0;
}

bool opass_tensor_is_zero(const Onnx__TensorProto *t, uint64_t i)
{
	if (t->has_raw_data) {
		size_t size = opass_dtype_size(t->data_type);

		return raw_float_is_zero(t->raw_data.data + size * i, size);
	}
	return opass_tensor_get(t, i) == 0.0;
}

uint64_t opass_tensor_count_nonzero(const Onnx__TensorProto *t, uint64_t n)
{
	uint64_t nnz = 0;

	if (t->has_raw_data && t->data_type == DT(FLOAT)) {
		const uint8_t *raw = t->raw_data.data;

		for (uint64_t i = 0; i < n; i++) {
			uint32_t v;

			memcpy(&v, raw + 4 * i, 4);
			nnz += (v & 0x7fffffffu) != 0;
		}
		return nnz;
	}
	for (uint64_t i = 0; i < n; i++)
		nnz += !opass_tensor_is_zero(t, i);
	return nnz;
}

uint64_t opass_tensor_zero_masked(Onnx__TensorProto *t, const uint8_t *keep, uint64_t n)
{
	size_t size = opass_dtype_size(t->data_type);
	uint64_t nnz = 0;

	if (t->has_raw_data && size == 4) {
		uint8_t *raw = t->raw_data.data;

		/* branch-free: keep[i] is 0 or 1 */
		for (uint64_t i = 0; i < n; i++) {
			uint32_t v;

			memcpy(&v, raw + 4 * i, 4);
			v &= -(uint32_t)(keep[i] != 0);
			nnz += (v & 0x7fffffffu) != 0;
			memcpy(raw + 4 * i, &v, 4);
		}
		return nnz;
	}
	for (uint64_t i = 0; i < n; i++) {
		if (!keep[i])
			opass_tensor_zero(t, i);
		nnz += !opass_tensor_is_zero(t, i);
	}
	return nnz;
}

Onnx__TensorProto *opass_tensor_new(const char *name, int32_t dtype, const int64_t *dims,
				    size_t n_dims)
{
	Onnx__TensorProto *t = malloc(sizeof(*t));
	uint64_t numel = 1;

	for (size_t i = 0; i < n_dims; i++) {
		if (dims[i] < 0 || (dims[i] && numel > UINT64_MAX / (uint64_t)dims[i]))
			numel = UINT64_MAX;
		else
			numel *= (uint64_t)dims[i];
	}
	if (!t || numel > SIZE_MAX / 16 || !opass_dtype_size(dtype)) {
		free(t);
		return NULL;
	}
	onnx__tensor_proto__init(t);
	t->name = name ? strdup(name) : NULL;
	t->has_data_type = true;
	t->data_type = dtype;
	t->dims = malloc((n_dims ? n_dims : 1) * sizeof(*t->dims));
	t->has_raw_data = true;
	t->raw_data.len = (size_t)numel * opass_dtype_size(dtype);
	t->raw_data.data = malloc(t->raw_data.len ? t->raw_data.len : 1);
	if ((name && !t->name) || !t->dims || !t->raw_data.data) {
		onnx__tensor_proto__free_unpacked(t, NULL);
		return NULL;
	}
	t->n_dims = n_dims;
	memcpy(t->dims, dims, n_dims * sizeof(*dims));
	return t;
}
