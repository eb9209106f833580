/* SPDX-License-Identifier: MIT */
/*
 * Float tensor access (SPEC 3): float, double, float16, bfloat16 values,
 * tensor checks and dtype names.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "model.h"
#include "tensor.h"
#include "test-model.h"
#include "testlib.h"

#define DT(x) ONNX__TENSOR_PROTO__DATA_TYPE__##x

static Onnx__TensorProto tensor_2x2(int32_t dtype, int64_t *dims)
{
	Onnx__TensorProto t;

	onnx__tensor_proto__init(&t);
	t.name = (char *)"t";
	t.has_data_type = true;
	t.data_type = dtype;
	dims[0] = 2;
	dims[1] = 2;
	t.dims = dims;
	t.n_dims = 2;
	return t;
}

static void assert_values(const Onnx__TensorProto *t, const double *want, size_t n)
{
	struct onnxpass_error err = { 0 };
	uint64_t numel = 0;
	double got[8];
	int r = opass_tensor_check(t, &numel, &err);

	ck_assert_msg(r == 0, "check failed: %s", err.message);
	ck_assert_uint_eq(numel, n);
	opass_tensor_read(t, got);
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(opass_tensor_get(t, i) == want[i], "%s element %zu: %g != %g",
			      opass_dtype_name(t->data_type), i, opass_tensor_get(t, i), want[i]);
		ck_assert_msg(got[i] == want[i], "read element %zu: %g != %g", i, got[i], want[i]);
	}
}

START_TEST(test_tensor_float)
{
	const float values[] = { 1.5f, -2.25f, 0.0f, 3.0e38f };
	double want[4];
	uint8_t raw[16];
	int64_t dims[2];
	Onnx__TensorProto t = tensor_2x2(DT(FLOAT), dims);

	for (size_t i = 0; i < 4; i++)
		want[i] = values[i];
	t.float_data = (float *)values;
	t.n_float_data = 4;
	assert_values(&t, want, 4);
	/* raw_data is little-endian; this test assumes a little-endian host */
	memcpy(raw, values, sizeof(raw));
	t.float_data = NULL;
	t.n_float_data = 0;
	t.has_raw_data = true;
	t.raw_data = (ProtobufCBinaryData){ .len = 16, .data = raw };
	assert_values(&t, want, 4);
	ck_assert(!opass_tensor_is_zero(&t, 0));
	ck_assert(opass_tensor_is_zero(&t, 2));
	opass_tensor_zero(&t, 1);
	ck_assert(opass_tensor_is_zero(&t, 1));
	ck_assert(opass_tensor_get(&t, 1) == 0.0);
	ck_assert(opass_tensor_get(&t, 0) == 1.5);
}
END_TEST

START_TEST(test_tensor_double)
{
	double values[] = { 0.1, -1e300, 5e-324, 2.0 };
	uint8_t raw[32];
	int64_t dims[2];
	Onnx__TensorProto t = tensor_2x2(DT(DOUBLE), dims);

	t.double_data = values;
	t.n_double_data = 4;
	assert_values(&t, values, 4);
	opass_tensor_zero(&t, 3);
	ck_assert(values[3] == 0.0 && !signbit(values[3]));
	values[3] = 2.0;
	memcpy(raw, values, sizeof(raw));
	t.double_data = NULL;
	t.n_double_data = 0;
	t.has_raw_data = true;
	t.raw_data = (ProtobufCBinaryData){ .len = 32, .data = raw };
	assert_values(&t, values, 4);
}
END_TEST

/* A 2x2 tensor of 16-bit floats given as bits, read from int32_data and from
 * raw_data (little-endian), and zeroed element by element in both. */
static void check_16bit(int32_t dtype, const uint16_t bits[4], const double want[4])
{
	int32_t ints[4];
	uint8_t raw[8];
	int64_t dims[2];
	Onnx__TensorProto t = tensor_2x2(dtype, dims);

	for (size_t i = 0; i < 4; i++) {
		ints[i] = bits[i];
		raw[2 * i] = (uint8_t)(bits[i] & 0xff);
		raw[2 * i + 1] = (uint8_t)(bits[i] >> 8);
	}
	t.int32_data = ints;
	t.n_int32_data = 4;
	assert_values(&t, want, 4);
	opass_tensor_zero(&t, 1);
	ck_assert_int_eq(ints[1], 0);
	t.int32_data = NULL;
	t.n_int32_data = 0;
	t.has_raw_data = true;
	t.raw_data = (ProtobufCBinaryData){ .len = 8, .data = raw };
	assert_values(&t, want, 4);
	opass_tensor_zero(&t, 2);
	ck_assert(raw[4] == 0 && raw[5] == 0);
}

/* fp16 bit patterns: 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal). */
START_TEST(test_tensor_float16)
{
	const uint16_t bits[] = { 0x3c00, 0xc000, 0x7bff, 0x0001 };
	const double want[] = { 1.0, -2.0, 65504.0, 1.0 / 16777216.0 };

	check_16bit(DT(FLOAT16), bits, want);
}
END_TEST

/* bf16 bit patterns: 1.0, -3.0, 1.5, 2^-133 (smallest subnormal). */
START_TEST(test_tensor_bfloat16)
{
	const uint16_t bits[] = { 0x3f80, 0xc040, 0x3fc0, 0x0001 };
	const double want[] = { 1.0, -3.0, 1.5, ldexp(1.0, -133) };

	check_16bit(DT(BFLOAT16), bits, want);
}
END_TEST

static void check_fails(const Onnx__TensorProto *t, const char *want)
{
	struct onnxpass_error err = { 0 };
	uint64_t numel = 12345;
	int r = opass_tensor_check(t, &numel, &err);

	ck_assert_msg(r < 0, "check passed for: %s", want);
	ck_assert_int_eq(err.code, r);
	ck_assert_uint_eq(numel, 12345);
	ck_assert_msg(strstr(err.message, want), "message '%s' lacks '%s'", err.message, want);
	ck_assert_msg(strstr(err.message, "'bad'"), "message '%s' names no tensor", err.message);
}

START_TEST(test_tensor_check_errors)
{
	float values[5] = { 1, 2, 3, 4, 5 };
	int32_t ints[3] = { 0 };
	uint8_t raw[10] = { 0 };
	int64_t dims[2];
	Onnx__TensorProto t = tensor_2x2(DT(FLOAT), dims);
	struct onnxpass_error err = { 0 };
	uint64_t numel = 0;

	t.name = (char *)"bad";
	t.float_data = values;
	t.n_float_data = 5;
	check_fails(&t, "4");
	t.n_float_data = 3;
	check_fails(&t, "3");
	t.n_float_data = 0;
	check_fails(&t, "0");
	/* raw_data whose size is no multiple of the element, or too short */
	t.has_raw_data = true;
	t.raw_data = (ProtobufCBinaryData){ .len = 10, .data = raw };
	check_fails(&t, "10");
	t.raw_data.len = 8;
	check_fails(&t, "2");
	t.has_raw_data = false;
	/* negative dims */
	t.n_float_data = 4;
	dims[0] = -2;
	dims[1] = -2;
	check_fails(&t, "-2");
	ck_assert_int_lt(opass_tensor_numel(&t, &numel, &err), 0);
	/* dims whose product overflows */
	dims[0] = INT64_MAX;
	dims[1] = 4;
	check_fails(&t, "overflow");
	dims[0] = 2;
	dims[1] = 2;
	ck_assert_int_eq(opass_tensor_check(&t, &numel, &err), 0);
	ck_assert_uint_eq(numel, 4);
	/* fp16 in int32_data with the wrong count */
	t.data_type = DT(FLOAT16);
	t.int32_data = ints;
	t.n_int32_data = 3;
	check_fails(&t, "3");
	/* other dtypes are refused */
	t.data_type = DT(INT32);
	check_fails(&t, "int32");
	/* a zero dim holds no elements */
	t.data_type = DT(FLOAT);
	dims[0] = 0;
	t.n_float_data = 0;
	ck_assert_int_eq(opass_tensor_check(&t, &numel, &err), 0);
	ck_assert_uint_eq(numel, 0);
	/* a scalar (no dims) holds one */
	t.n_dims = 0;
	t.n_float_data = 1;
	ck_assert_int_eq(opass_tensor_check(&t, &numel, &err), 0);
	ck_assert_uint_eq(numel, 1);
}
END_TEST

START_TEST(test_dtype_names)
{
	ck_assert_str_eq(opass_dtype_name(DT(FLOAT)), "float32");
	ck_assert_str_eq(opass_dtype_name(DT(FLOAT16)), "float16");
	ck_assert_str_eq(opass_dtype_name(DT(BFLOAT16)), "bfloat16");
	ck_assert_str_eq(opass_dtype_name(DT(DOUBLE)), "float64");
	ck_assert(opass_dtype_is_float(DT(BFLOAT16)));
	ck_assert(!opass_dtype_is_float(DT(INT32)));
	ck_assert_uint_eq(opass_dtype_size(DT(FLOAT16)), 2);
	ck_assert_uint_eq(opass_dtype_size(DT(DOUBLE)), 8);
	ck_assert_uint_eq(opass_dtype_size(DT(STRING)), 0);
}

TCase *model_tcase_tensor(void)
{
	TCase *tc = tcase_create("tensor");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_tensor_float);
	tcase_add_test(tc, test_tensor_double);
	tcase_add_test(tc, test_tensor_float16);
	tcase_add_test(tc, test_tensor_bfloat16);
	tcase_add_test(tc, test_tensor_check_errors);
	tcase_add_test(tc, test_dtype_names);
	return tc;
}
