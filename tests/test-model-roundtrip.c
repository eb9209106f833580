/* SPDX-License-Identifier: MIT */
/*
 * Model I/O round trips (SPEC 3): the generated models re-serialise to the same
 * bytes, unknown fields are kept, metadata is read and written.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model.h"
#include "test-model.h"
#include "testlib.h"

static size_t first_difference(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
	size_t i = 0;

	while (i < na && i < nb && a[i] == b[i])
		i++;
	return i;
}

/* Every generated model whose load changes nothing re-serialises to the very
 * same bytes: protobuf-c writes fields in the order python protobuf does.
 * external_data.onnx is left out: loading moves its tensors into raw_data. */
START_TEST(test_roundtrip_identical)
{
	const cJSON *models = cJSON_GetObjectItemCaseSensitive(test_models_manifest, "models");
	const cJSON *entry;
	size_t n_checked = 0;

	cJSON_ArrayForEach(entry, models) {
		struct onnxpass_error err = { 0 };
		struct onnxpass_model *model = NULL;
		size_t in_size = 0, out_size = 0;
		char *path, *in;
		uint8_t *out;
		int r;

		if (cJSON_GetObjectItemCaseSensitive(entry, "external_data"))
			continue;
		path = test_path_join(test_models_dir, entry->string);
		in = test_read_file(path, &in_size);
		ck_assert_msg(in, "cannot read %s", path);
		r = onnxpass_model_load_bytes(in, in_size, test_models_dir, &model, &err);
		ck_assert_msg(r == 0, "%s: load failed (%d): %s", entry->string, r, err.message);
		ck_assert(!model->had_external);
		out = model_test_save_bytes(model, &out_size);
		ck_assert_msg(out_size == in_size && memcmp(in, out, in_size) == 0,
			      "%s: re-serialised %zu bytes differ from the %zu input bytes at offset %zu",
			      entry->string, out_size, in_size,
			      first_difference((uint8_t *)in, in_size, out, out_size));
		n_checked++;
		onnxpass_free(out);
		onnxpass_model_free(model);
		free(in);
		free(path);
	}
	ck_assert_uint_ge(n_checked, 7);
}
END_TEST

/* load_file + save_file gives the input file back too. */
START_TEST(test_roundtrip_file)
{
	char *dir = test_tmpdir(), *in_path = test_path_join(test_models_dir, "edge_cases.onnx");
	char *out_path = test_path_join(dir, "out.onnx");
	struct onnxpass_model *model = model_test_load(in_path);
	size_t in_size = 0, out_size = 0;
	char *in, *out;

	model_test_save_file(model, out_path, 0);
	in = test_read_file(in_path, &in_size);
	out = test_read_file(out_path, &out_size);
	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(in_size, out_size);
	ck_assert(memcmp(in, out, in_size) == 0);
	test_assert_dir_holds(dir, (const char *[]){ "out.onnx", NULL });
	free(in);
	free(out);
	onnxpass_model_free(model);
	test_remove_tree(dir);
	free(out_path);
	free(in_path);
	free(dir);
}
END_TEST

static size_t hex_decode(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = strlen(hex) / 2;

	ck_assert_uint_le(n, cap);
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static bool contains(const uint8_t *hay, size_t n_hay, const uint8_t *needle, size_t n_needle)
{
	for (size_t i = 0; n_needle <= n_hay && i <= n_hay - n_needle; i++)
		if (memcmp(hay + i, needle, n_needle) == 0)
			return true;
	return false;
}

/* The message the manifest's path names ("model.graph.node[0]", ...). */
static const ProtobufCMessage *message_at(Onnx__ModelProto *proto, const char *path)
{
	if (strcmp(path, "model") == 0)
		return &proto->base;
	ck_assert_ptr_nonnull(proto->graph);
	if (strcmp(path, "model.graph") == 0)
		return &proto->graph->base;
	if (strcmp(path, "model.graph.node[0]") == 0 && proto->graph->n_node > 0)
		return &proto->graph->node[0]->base;
	if (strcmp(path, "model.graph.initializer[0]") == 0 && proto->graph->n_initializer > 0)
		return &proto->graph->initializer[0]->base;
	ck_abort_msg("unknown manifest path %s", path);
	return NULL;
}

static void assert_unknown_fields(Onnx__ModelProto *proto, const uint8_t *bytes, size_t size)
{
	const cJSON *entry = model_test_manifest_entry("unknown_fields.onnx");
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(entry, "unknown_fields");
	const cJSON *u;
	size_t n = 0;

	ck_assert(cJSON_IsArray(list));
	cJSON_ArrayForEach(u, list) {
		const char *hex = cJSON_GetObjectItemCaseSensitive(u, "hex")->valuestring;
		const char *where = cJSON_GetObjectItemCaseSensitive(u, "path")->valuestring;
		const ProtobufCMessage *msg = message_at(proto, where);
		size_t packed_size = protobuf_c_message_get_packed_size(msg), len;
		uint8_t field[256], *packed = malloc(packed_size + 1);

		len = hex_decode(hex, field, sizeof(field));
		ck_assert_msg(contains(bytes, size, field, len), "unknown field %s lost", hex);
		ck_assert_ptr_nonnull(packed);
		protobuf_c_message_pack(msg, packed);
		ck_assert_msg(contains(packed, packed_size, field, len),
			      "unknown field %s is no longer in %s", hex, where);
		free(packed);
		n++;
	}
	ck_assert_uint_eq(n, 5);
}

START_TEST(test_unknown_fields_kept)
{
	struct onnxpass_model *model = model_test_load_generated("unknown_fields.onnx"), *again = NULL;
	struct onnxpass_error err = { 0 };
	size_t size = 0, size2 = 0;
	uint8_t *out, *out2;
	int r;

	ck_assert_int_eq(model->proto->ir_version, 10);
	/* change the model so the tree is really rebuilt, then save */
	ck_assert_int_eq(opass_model_set_metadata(model->proto, "touched", "yes"), 0);
	out = model_test_save_bytes(model, &size);
	assert_unknown_fields(model->proto, out, size);
	r = onnxpass_model_load_bytes(out, size, NULL, &again, &err);
	ck_assert_msg(r == 0, "saved model does not load again (%d): %s", r, err.message);
	ck_assert_str_eq(opass_model_get_metadata(again->proto, "touched"), "yes");
	ck_assert_str_eq(again->proto->graph->initializer[0]->name, "fc.w");
	out2 = model_test_save_bytes(again, &size2);
	assert_unknown_fields(again->proto, out2, size2);
	ck_assert_uint_eq(size, size2);
	ck_assert(memcmp(out, out2, size) == 0);
	onnxpass_free(out);
	onnxpass_free(out2);
	onnxpass_model_free(again);
	onnxpass_model_free(model);
}
END_TEST

START_TEST(test_metadata)
{
	struct onnxpass_model *model = model_test_load_generated("mlp_gemm.onnx"), *again = NULL;
	struct onnxpass_error err = { 0 };
	Onnx__ModelProto *p = model->proto;
	size_t n0 = p->n_metadata_props, size = 0;
	void *bytes;

	ck_assert_ptr_null(opass_model_get_metadata(p, "a"));
	ck_assert_int_eq(opass_model_set_metadata(p, "a", "1"), 0);
	ck_assert_int_eq(opass_model_set_metadata(p, "b", "2"), 0);
	ck_assert_int_eq(opass_model_set_metadata(p, "c", ""), 0);
	ck_assert_uint_eq(p->n_metadata_props, n0 + 3);
	ck_assert_str_eq(opass_model_get_metadata(p, "a"), "1");
	ck_assert_str_eq(opass_model_get_metadata(p, "b"), "2");
	ck_assert_str_eq(opass_model_get_metadata(p, "c"), "");
	/* overwrite keeps the place, remove keeps the order of the rest */
	ck_assert_int_eq(opass_model_set_metadata(p, "a", "one"), 0);
	ck_assert_uint_eq(p->n_metadata_props, n0 + 3);
	ck_assert_str_eq(p->metadata_props[n0]->key, "a");
	ck_assert_str_eq(p->metadata_props[n0]->value, "one");
	ck_assert_int_eq(opass_model_set_metadata(p, "a", NULL), 0);
	ck_assert_ptr_null(opass_model_get_metadata(p, "a"));
	ck_assert_uint_eq(p->n_metadata_props, n0 + 2);
	ck_assert_str_eq(p->metadata_props[n0]->key, "b");
	ck_assert_str_eq(p->metadata_props[n0 + 1]->key, "c");
	ck_assert_int_eq(opass_model_set_metadata(p, "never-set", NULL), 0);
	ck_assert_uint_eq(p->n_metadata_props, n0 + 2);
	ck_assert_int_eq(opass_model_set_metadata(p, "b", "{\"json\": [1, 2]}"), 0);
	bytes = model_test_save_bytes(model, &size);
	ck_assert_int_eq(onnxpass_model_load_bytes(bytes, size, NULL, &again, &err), 0);
	ck_assert_str_eq(opass_model_get_metadata(again->proto, "b"), "{\"json\": [1, 2]}");
	ck_assert_str_eq(opass_model_get_metadata(again->proto, "c"), "");
	ck_assert_ptr_null(opass_model_get_metadata(again->proto, "a"));
	onnxpass_free(bytes);
	onnxpass_model_free(again);
	onnxpass_model_free(model);
}
END_TEST

TCase *model_tcase_roundtrip(void)
{
	TCase *tc = tcase_create("roundtrip");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_roundtrip_identical);
	tcase_add_test(tc, test_roundtrip_file);
	tcase_add_test(tc, test_unknown_fields_kept);
	tcase_add_test(tc, test_metadata);
	return tc;
}
