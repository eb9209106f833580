/* SPDX-License-Identifier: MIT */
/* TensorProto access: sizes, dtype names, float views of the four float
 * dtypes (FLOAT, FLOAT16, BFLOAT16, DOUBLE) in any storage field. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "onnx.pb-c.h"
#include "onnxpass/onnxpass.h"

/* Name of an ONNX dtype ("float32", "float16", ...; "dtype N" if unknown). */
const char *opass_dtype_name(int32_t dtype);

/* True for FLOAT, FLOAT16, BFLOAT16, DOUBLE. */
bool opass_dtype_is_float(int32_t dtype);

/* Bytes per element of fixed-size dtypes, 0 for others (string, 4-bit...). */
size_t opass_dtype_size(int32_t dtype);

/* Dense element count above which a tensor whose dims are not backed by
 * stored elements (a sparse tensor) is refused rather than expanded. */
#define OPASS_MAX_DENSE_ELEMENTS ((uint64_t)1 << 31)

/* Element count from dims, checking for negative dims and overflow. */
int opass_tensor_numel(const Onnx__TensorProto *t, uint64_t *ret_numel, struct onnxpass_error *err);

/* Check that a float tensor's data matches its dims; returns numel. */
int opass_tensor_check(const Onnx__TensorProto *t, uint64_t *ret_numel, struct onnxpass_error *err);

/* Read all elements of a checked float tensor as doubles (exact widening). */
void opass_tensor_read(const Onnx__TensorProto *t, double *out);

/* The same as float for FLOAT, FLOAT16 and BFLOAT16 tensors (exact). */
void opass_tensor_read_f32(const Onnx__TensorProto *t, float *out);

/* Read element i as double. */
double opass_tensor_get(const Onnx__TensorProto *t, uint64_t i);

/* Set float element i to v (rounded to nearest even for float16/bfloat16)
 * in whatever storage it uses. */
void opass_tensor_set(Onnx__TensorProto *t, uint64_t i, double v);

/* A copy of a tensor's stored elements (whichever field holds them), to
 * put back after in-place changes that keep its size. */
struct opass_tensor_backup {
	void *bytes;
	size_t size;
};

int opass_tensor_backup(const Onnx__TensorProto *t, struct opass_tensor_backup *ret_backup);
void opass_tensor_restore(Onnx__TensorProto *t, const struct opass_tensor_backup *backup);
void opass_tensor_backup_fini(struct opass_tensor_backup *backup);

/* Set element i to +0.0 in whatever storage it uses. */
void opass_tensor_zero(Onnx__TensorProto *t, uint64_t i);

/* Is float element i equal to 0 (either sign)? */
bool opass_tensor_is_zero(const Onnx__TensorProto *t, uint64_t i);

/* Number of nonzero elements among the first n of a checked float tensor. */
uint64_t opass_tensor_count_nonzero(const Onnx__TensorProto *t, uint64_t n);

/* Set element i to +0.0 wherever keep[i] is 0; returns the nonzeros left. */
uint64_t opass_tensor_zero_masked(Onnx__TensorProto *t, const uint8_t *keep, uint64_t n);

/* A new tensor with uninitialised raw_data for dims (malloc'd, for splicing
 * into a model); name may be NULL. NULL when out of memory or too large. */
Onnx__TensorProto *opass_tensor_new(const char *name, int32_t dtype, const int64_t *dims,
				    size_t n_dims);
