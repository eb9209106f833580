/* SPDX-License-Identifier: MIT */
/*
 * Model I/O (SPEC 3, 9), one TCase a subject: load/save round trips of the
 * generated models and unknown fields, external data (and hostile
 * descriptors), truncated and corrupt input, atomic saves, float tensor
 * access. This file: the helpers they share and the suite.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model.h"
#include "test-model.h"
#include "testlib.h"

const cJSON *model_test_manifest_entry(const char *file)
{
	const cJSON *models = cJSON_GetObjectItemCaseSensitive(test_models_manifest, "models");
	const cJSON *entry = cJSON_GetObjectItemCaseSensitive(models, file);

	ck_assert_msg(cJSON_IsObject(entry), "manifest has no entry for %s", file);
	return entry;
}

struct onnxpass_model *model_test_load(const char *path)
{
	struct onnxpass_error err = { 0 };
	struct onnxpass_model *model = NULL;
	int r = onnxpass_model_load_file(path, &model, &err);

	ck_assert_msg(r == 0, "loading %s failed (%d): %s", path, r, err.message);
	ck_assert_ptr_nonnull(model);
	return model;
}

struct onnxpass_model *model_test_load_generated(const char *file)
{
	char *path = test_path_join(test_models_dir, file);
	struct onnxpass_model *model = model_test_load(path);

	free(path);
	return model;
}

void *model_test_save_bytes(struct onnxpass_model *model, size_t *ret_size)
{
	struct onnxpass_error err = { 0 };
	void *data = NULL;
	int r = onnxpass_model_save_bytes(model, &data, ret_size, &err);

	ck_assert_msg(r == 0, "save_bytes failed (%d): %s", r, err.message);
	ck_assert_ptr_nonnull(data);
	return data;
}

/* Both models serialise to the same bytes. */
void model_test_assert_same_bytes(struct onnxpass_model *model_a, struct onnxpass_model *model_b)
{
	size_t size_a = 0, size_b = 0;
	void *a = model_test_save_bytes(model_a, &size_a), *b = model_test_save_bytes(model_b, &size_b);

	ck_assert_uint_eq(size_a, size_b);
	ck_assert(memcmp(a, b, size_a) == 0);
	onnxpass_free(a);
	onnxpass_free(b);
}

void model_test_save_file(struct onnxpass_model *model, const char *path, unsigned flags)
{
	struct onnxpass_error err = { 0 };
	int r = onnxpass_model_save_file(model, path, flags, &err);

	ck_assert_msg(r == 0, "saving %s failed (%d): %s", path, r, err.message);
}

Onnx__TensorProto *model_test_initializer(Onnx__ModelProto *proto, const char *name)
{
	for (size_t i = 0; i < proto->graph->n_initializer; i++)
		if (strcmp(proto->graph->initializer[i]->name, name) == 0)
			return proto->graph->initializer[i];
	ck_abort_msg("no initializer %s", name);
	return NULL;
}

void model_test_assert_same_initializers(Onnx__ModelProto *a, Onnx__ModelProto *b)
{
	ck_assert_uint_eq(a->graph->n_initializer, b->graph->n_initializer);
	for (size_t i = 0; i < a->graph->n_initializer; i++) {
		const Onnx__TensorProto *ta = a->graph->initializer[i];
		const Onnx__TensorProto *tb = model_test_initializer(b, ta->name);

		ck_assert_int_eq(ta->data_type, tb->data_type);
		ck_assert_uint_eq(ta->n_dims, tb->n_dims);
		ck_assert(memcmp(ta->dims, tb->dims, ta->n_dims * sizeof(*ta->dims)) == 0);
		ck_assert_msg(ta->has_raw_data && tb->has_raw_data, "%s has no raw_data", ta->name);
		ck_assert_uint_eq(ta->raw_data.len, tb->raw_data.len);
		ck_assert_msg(memcmp(ta->raw_data.data, tb->raw_data.data, ta->raw_data.len) == 0,
			      "%s differs", ta->name);
		ck_assert_msg(!tb->has_data_location || tb->data_location == 0,
			      "%s is still marked external", tb->name);
	}
}

Suite *test_suite(void)
{
	Suite *s = suite_create("model");

	test_models_want("");
	suite_add_tcase(s, model_tcase_roundtrip());
	suite_add_tcase(s, model_tcase_external());
	suite_add_tcase(s, model_tcase_bad_bytes());
	suite_add_tcase(s, model_tcase_save());
	suite_add_tcase(s, model_tcase_tensor());
	return s;
}
