/* SPDX-License-Identifier: MIT */
/*
 * Truncated and corrupt input (SPEC 9): loading fails with a message or
 * succeeds, never crashes; load_file errors.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "test-model.h"
#include "testlib.h"

/* Loading either fails with a negative errno and a message, or succeeds. */
static int load_bytes_clean(const void *data, size_t size)
{
	struct onnxpass_error err = { 0 };
	struct onnxpass_model *model = NULL;
	int r = onnxpass_model_load_bytes(data, size, NULL, &model, &err);

	if (r == 0) {
		ck_assert_ptr_nonnull(model);
		onnxpass_model_free(model);
		return 0;
	}
	ck_assert_int_lt(r, 0);
	ck_assert_ptr_null(model);
	ck_assert_int_eq(err.code, r);
	ck_assert_msg(err.message[0] != '\0', "failure %d without a message", r);
	return r;
}

START_TEST(test_truncated)
{
	char *path = test_path_join(test_models_dir, "mlp_gemm.onnx");
	size_t size = 0, n_failed = 0;
	char *bytes = test_read_file(path, &size);
	char *copy;

	ck_assert_ptr_nonnull(bytes);
	for (size_t len = 0; len < size; len++) {
		/* exact-size copies so that a read past the end is caught by ASan */
		copy = malloc(len ? len : 1);
		ck_assert_ptr_nonnull(copy);
		memcpy(copy, bytes, len);
		n_failed += load_bytes_clean(copy, len) < 0;
		free(copy);
	}
	/* the graph is most of the file: cutting it in the middle must fail */
	ck_assert_int_lt(load_bytes_clean(bytes, size / 2), 0);
	ck_assert_int_lt(load_bytes_clean(bytes, 0), 0);
	ck_assert_uint_gt(n_failed, size * 9 / 10);
	free(bytes);
	free(path);
}
END_TEST

/* Deterministic byte flips and garbage: no crash, clean result. */
START_TEST(test_corrupt)
{
	char *path = test_path_join(test_models_dir, "edge_cases.onnx");
	size_t size = 0;
	char *bytes = test_read_file(path, &size);
	uint32_t seed = 12345;
	/* field 7 (graph), length-delimited, claimed length 2^62 */
	static const uint8_t huge[] = { 0x3a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40,
					0x00 };
	/* field 1 (ir_version) declared as length-delimited */
	static const uint8_t wrong_type[] = { 0x0a, 0x02, 0x08, 0x07 };

	ck_assert_ptr_nonnull(bytes);
	for (int round = 0; round < 2000; round++) {
		char *copy = malloc(size);

		ck_assert_ptr_nonnull(copy);
		memcpy(copy, bytes, size);
		for (int k = 0; k < 1 + round % 4; k++) {
			seed = seed * 1103515245u + 12345u;
			copy[(seed >> 8) % size] ^= (char)(1u << ((seed >> 4) % 8));
		}
		load_bytes_clean(copy, size);
		free(copy);
	}
	for (int round = 0; round < 200; round++) {
		uint8_t garbage[512];

		for (size_t i = 0; i < sizeof(garbage); i++) {
			seed = seed * 1103515245u + 12345u;
			garbage[i] = (uint8_t)(seed >> 16);
		}
		load_bytes_clean(garbage, 1 + (size_t)round * 2);
	}
	ck_assert_int_lt(load_bytes_clean(huge, sizeof(huge)), 0);
	ck_assert_int_lt(load_bytes_clean(wrong_type, sizeof(wrong_type)), 0);
	free(bytes);
	free(path);
}
END_TEST

START_TEST(test_load_file_errors)
{
	struct onnxpass_error err = { 0 };
	struct onnxpass_model *model = NULL;
	char *dir = test_tmpdir(), *missing = test_path_join(dir, "missing.onnx");
	char *bad = test_path_join(dir, "bad.onnx"), *empty = test_path_join(dir, "empty.onnx");
	int r;

	r = onnxpass_model_load_file(missing, &model, &err);
	ck_assert_int_eq(r, -ENOENT);
	ck_assert_ptr_null(model);
	ck_assert_ptr_nonnull(strstr(err.message, missing));
	r = onnxpass_model_load_file(dir, &model, &err);
	ck_assert_int_lt(r, 0);
	ck_assert_ptr_null(model);
	test_write_file(bad, "this is not a model", 19);
	r = onnxpass_model_load_file(bad, &model, &err);
	ck_assert_int_lt(r, 0);
	ck_assert_ptr_null(model);
	ck_assert_msg(err.message[0], "no message");
	test_write_file(empty, "", 0);
	r = onnxpass_model_load_file(empty, &model, &err);
	ck_assert_int_lt(r, 0);
	ck_assert_ptr_null(model);
	/* a NULL error struct is allowed */
	ck_assert_int_lt(onnxpass_model_load_file(missing, &model, NULL), 0);
	test_remove_tree(dir);
	free(empty);
	free(bad);
	free(missing);
	free(dir);
}
END_TEST

TCase *model_tcase_bad_bytes(void)
{
	TCase *tc = tcase_create("bad-bytes");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_corrupt);
	tcase_add_test(tc, test_load_file_errors);
	return tc;
}
