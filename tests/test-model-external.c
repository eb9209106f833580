/* SPDX-License-Identifier: MIT */
/*
 * External data (SPEC 3, 9): loading, saving and keeping side files, and
 * hostile descriptors (path escapes, bad files, ranges, short data).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "model.h"
#include "tensor.h"
#include "test-model.h"
#include "testlib.h"

/* external_data.onnx is mlp_gemm.onnx with every tensor in the side file. */
START_TEST(test_external_load)
{
	struct onnxpass_model *ext = model_test_load_generated("external_data.onnx");
	struct onnxpass_model *inline_model = model_test_load_generated("mlp_gemm.onnx");
	const cJSON *entry = model_test_manifest_entry("external_data.onnx");
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(entry, "external_data");
	char *data_path = test_path_join(test_models_dir, "external_data.onnx.data");
	size_t data_size = 0, n = 0;
	char *data = test_read_file(data_path, &data_size);
	const cJSON *e;

	ck_assert(ext->had_external);
	ck_assert(!inline_model->had_external);
	ck_assert_ptr_nonnull(data);
	cJSON_ArrayForEach(e, list) {
		const char *name = cJSON_GetObjectItemCaseSensitive(e, "name")->valuestring;
		size_t offset = (size_t)cJSON_GetObjectItemCaseSensitive(e, "offset")->valuedouble;
		size_t length = (size_t)cJSON_GetObjectItemCaseSensitive(e, "length")->valuedouble;
		const Onnx__TensorProto *t = model_test_initializer(ext->proto, name);

		ck_assert_uint_le(offset + length, data_size);
		ck_assert_uint_eq(t->raw_data.len, length);
		ck_assert(memcmp(t->raw_data.data, data + offset, length) == 0);
		ck_assert_uint_eq(t->n_external_data, 0);
		n++;
	}
	ck_assert_uint_eq(n, ext->proto->graph->n_initializer);
	model_test_assert_same_initializers(inline_model->proto, ext->proto);
	free(data);
	free(data_path);
	onnxpass_model_free(ext);
	onnxpass_model_free(inline_model);
}
END_TEST

/* The saved model's tensors point into "<base>.data" inside the file. */
static void assert_saved_external(const char *path, const char *location)
{
	size_t size = 0;
	char *bytes = test_read_file(path, &size);
	Onnx__ModelProto *proto;
	size_t n_external = 0;

	ck_assert_ptr_nonnull(bytes);
	proto = onnx__model_proto__unpack(NULL, size, (uint8_t *)bytes);
	ck_assert_ptr_nonnull(proto);
	for (size_t i = 0; i < proto->graph->n_initializer; i++) {
		const Onnx__TensorProto *t = proto->graph->initializer[i];

		if (!t->has_data_location || t->data_location != ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
			continue;
		n_external++;
		ck_assert(!t->has_raw_data || t->raw_data.len == 0);
		for (size_t k = 0; k < t->n_external_data; k++)
			if (strcmp(t->external_data[k]->key, "location") == 0)
				ck_assert_str_eq(t->external_data[k]->value, location);
	}
	ck_assert_msg(n_external > 0, "%s has no external tensors", path);
	onnx__model_proto__free_unpacked(proto, NULL);
	free(bytes);
}

START_TEST(test_external_save_reload)
{
	struct onnxpass_model *model = model_test_load_generated("mlp_gemm.onnx"), *again;
	char *dir = test_tmpdir(), *out = test_path_join(dir, "out.onnx");

	model_test_save_file(model, out, ONNXPASS_SAVE_EXTERNAL_DATA);
	test_assert_dir_holds(dir, (const char *[]){ "out.onnx", "out.onnx.data", NULL });
	assert_saved_external(out, "out.onnx.data");
	again = model_test_load(out);
	ck_assert(again->had_external);
	model_test_assert_same_initializers(model->proto, again->proto);
	/* the in-memory model is unchanged by the save, and equals the reload */
	model_test_assert_same_bytes(model, again);
	onnxpass_model_free(again);
	onnxpass_model_free(model);
	test_remove_tree(dir);
	free(out);
	free(dir);
}
END_TEST

/* A model that came with external data keeps it when saved without the flag. */
START_TEST(test_external_kept_on_save)
{
	struct onnxpass_model *model = model_test_load_generated("external_data.onnx"), *again;
	char *dir = test_tmpdir(), *out = test_path_join(dir, "copy.onnx");

	model_test_save_file(model, out, 0);
	test_assert_dir_holds(dir, (const char *[]){ "copy.onnx", "copy.onnx.data", NULL });
	assert_saved_external(out, "copy.onnx.data");
	again = model_test_load(out);
	model_test_assert_same_initializers(model->proto, again->proto);
	onnxpass_model_free(again);
	onnxpass_model_free(model);
	test_remove_tree(dir);
	free(out);
	free(dir);
}
END_TEST

/*
 * Hand-made descriptors. Layout of the temp folder:
 *   outside.bin        fc1.weight's bytes, outside the model folder
 *   model/w.bin        64 bytes of 0xAA, then fc1.weight's bytes
 *   model/model.onnx   mlp_gemm with fc1.weight pointing at the given keys
 */
struct ext_case {
	char *root;
	char *model_dir;
	char *model_path;
	uint8_t *weight;
	size_t weight_len;
};

static void ext_case_init(struct ext_case *c)
{
	struct onnxpass_model *model = model_test_load_generated("mlp_gemm.onnx");
	Onnx__TensorProto *t = model_test_initializer(model->proto, "fc1.weight");
	uint8_t *padded;
	char *path;

	c->root = test_tmpdir();
	ck_assert_ptr_nonnull(c->root);
	c->model_dir = test_path_join(c->root, "model");
	c->model_path = test_path_join(c->model_dir, "model.onnx");
	ck_assert_int_eq(mkdir(c->model_dir, 0755), 0);
	c->weight_len = t->raw_data.len;
	c->weight = malloc(c->weight_len);
	padded = malloc(c->weight_len + 64);
	ck_assert(c->weight && padded);
	memcpy(c->weight, t->raw_data.data, c->weight_len);
	memset(padded, 0xAA, 64);
	memcpy(padded + 64, c->weight, c->weight_len);
	path = test_path_join(c->root, "outside.bin");
	test_write_file(path, c->weight, c->weight_len);
	free(path);
	path = test_path_join(c->model_dir, "w.bin");
	test_write_file(path, padded, c->weight_len + 64);
	free(path);
	free(padded);
	onnxpass_model_free(model);
}

static void ext_case_fini(struct ext_case *c)
{
	test_remove_tree(c->root);
	free(c->root);
	free(c->model_dir);
	free(c->model_path);
	free(c->weight);
}

/* Write model.onnx with fc1.weight external, described by key/value pairs. */
static void ext_case_write(struct ext_case *c, const char *const *kv)
{
	struct onnxpass_model *model = model_test_load_generated("mlp_gemm.onnx");
	Onnx__TensorProto *t = model_test_initializer(model->proto, "fc1.weight");
	size_t n = 0, size;
	uint8_t *bytes;

	while (kv[2 * n])
		n++;
	free(t->raw_data.data);
	t->raw_data = (ProtobufCBinaryData){ 0 };
	t->has_raw_data = false;
	t->has_data_location = true;
	t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
	t->external_data = calloc(n ? n : 1, sizeof(*t->external_data));
	ck_assert_ptr_nonnull(t->external_data);
	for (size_t i = 0; i < n; i++) {
		Onnx__StringStringEntryProto *e = malloc(sizeof(*e));

		ck_assert_ptr_nonnull(e);
		onnx__string_string_entry_proto__init(e);
		e->key = strdup(kv[2 * i]);
		e->value = strdup(kv[2 * i + 1]);
		t->external_data[i] = e;
	}
	t->n_external_data = n;
	size = onnx__model_proto__get_packed_size(model->proto);
	bytes = malloc(size);
	ck_assert_ptr_nonnull(bytes);
	onnx__model_proto__pack(model->proto, bytes);
	test_write_file(c->model_path, bytes, size);
	free(bytes);
	onnxpass_model_free(model);
}

/* Loading fails with a negative errno and a message holding every needle
 * ('|' separates alternatives). */
static void ext_case_fails(struct ext_case *c, const char *const *kv, const char *const *needles)
{
	struct onnxpass_error err = { 0 };
	struct onnxpass_model *model = NULL;
	int r;

	ext_case_write(c, kv);
	r = onnxpass_model_load_file(c->model_path, &model, &err);
	ck_assert_msg(r < 0, "location '%s' loaded", kv[1]);
	ck_assert_ptr_null(model);
	ck_assert_int_eq(err.code, r);
	ck_assert_msg(strchr(err.message, '\n') == NULL, "multi-line message: %s", err.message);
	for (size_t i = 0; needles[i]; i++) {
		char alternatives[256], *save = NULL;
		bool found = false;

		snprintf(alternatives, sizeof(alternatives), "%s", needles[i]);
		for (char *s = strtok_r(alternatives, "|", &save); s; s = strtok_r(NULL, "|", &save))
			found = found || strstr(err.message, s);
		ck_assert_msg(found, "message '%s' does not mention '%s'", err.message, needles[i]);
	}
}

static void ext_case_loads(struct ext_case *c, const char *const *kv)
{
	struct onnxpass_model *model;
	const Onnx__TensorProto *t;

	ext_case_write(c, kv);
	model = model_test_load(c->model_path);
	t = model_test_initializer(model->proto, "fc1.weight");
	ck_assert(t->has_raw_data);
	ck_assert_uint_eq(t->raw_data.len, c->weight_len);
	ck_assert(memcmp(t->raw_data.data, c->weight, c->weight_len) == 0);
	onnxpass_model_free(model);
}

#define KV(...) ((const char *const[]){ __VA_ARGS__, NULL, NULL })
#define WORDS(...) ((const char *const[]){ __VA_ARGS__, NULL })

START_TEST(test_external_good_descriptors)
{
	struct ext_case c;
	char *link;

	ext_case_init(&c);
	ext_case_loads(&c, KV("location", "w.bin", "offset", "64", "length", "2048"));
	/* no length: to the end of the file */
	ext_case_loads(&c, KV("location", "w.bin", "offset", "64"));
	ext_case_loads(&c, KV("location", "./w.bin", "offset", "64", "length", "2048"));
	/* a symlink that stays inside the folder is fine */
	link = test_path_join(c.model_dir, "inside-link.bin");
	ck_assert_int_eq(symlink("w.bin", link), 0);
	ext_case_loads(&c, KV("location", "inside-link.bin", "offset", "64", "length", "2048"));
	free(link);
	ext_case_fini(&c);
}
END_TEST

START_TEST(test_external_path_escapes)
{
	struct ext_case c;
	char *abs_path, *link;

	ext_case_init(&c);
	abs_path = test_path_join(c.model_dir, "w.bin");
	/* absolute, even to a file inside the model folder */
	ext_case_fails(&c, KV("location", abs_path, "offset", "64", "length", "2048"),
		       WORDS("fc1.weight", abs_path, "absolute"));
	ext_case_fails(&c, KV("location", "../outside.bin", "length", "2048"),
		       WORDS("fc1.weight", "../outside.bin", "leaves|outside|escape"));
	ext_case_fails(&c, KV("location", "sub/../../outside.bin", "length", "2048"),
		       WORDS("fc1.weight", "sub/../../outside.bin", "leaves|outside|escape"));
	/* a symlink inside the folder that points outside it */
	link = test_path_join(c.model_dir, "link.bin");
	ck_assert_int_eq(symlink("../outside.bin", link), 0);
	ext_case_fails(&c, KV("location", "link.bin", "length", "2048"),
		       WORDS("fc1.weight", "link.bin", "leaves|outside|escape"));
	free(link);
	/* a symlinked folder that points outside it */
	link = test_path_join(c.model_dir, "linkdir");
	ck_assert_int_eq(symlink(c.root, link), 0);
	ext_case_fails(&c, KV("location", "linkdir/outside.bin", "length", "2048"),
		       WORDS("fc1.weight", "linkdir/outside.bin", "leaves|outside|escape"));
	free(link);
	free(abs_path);
	ext_case_fini(&c);
}
END_TEST

START_TEST(test_external_bad_files)
{
	struct ext_case c;
	char *sub;

	ext_case_init(&c);
	ext_case_fails(&c, KV("location", "missing.bin", "length", "2048"),
		       WORDS("fc1.weight", "missing.bin", "No such file|missing|not found"));
	ext_case_fails(&c, KV("location", "sub/missing.bin", "length", "2048"),
		       WORDS("fc1.weight", "sub/missing.bin"));
	/* a folder is not a data file */
	sub = test_path_join(c.model_dir, "subdir");
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	ext_case_fails(&c, KV("location", "subdir", "length", "2048"),
		       WORDS("subdir", "regular|directory"));
	free(sub);
	ext_case_fails(&c, KV("location", ".", "length", "2048"), WORDS("fc1.weight"));
	ext_case_fini(&c);
}
END_TEST

START_TEST(test_external_bad_ranges)
{
	struct ext_case c;

	ext_case_init(&c);
	/* w.bin holds 64 + 2048 bytes */
	ext_case_fails(&c, KV("location", "w.bin", "offset", "2113", "length", "0"),
		       WORDS("fc1.weight", "2113", "past the end|beyond|exceeds"));
	ext_case_fails(&c, KV("location", "w.bin", "offset", "2113"),
		       WORDS("fc1.weight", "2113", "past the end|beyond|exceeds"));
	ext_case_fails(&c, KV("location", "w.bin", "offset", "64", "length", "2049"),
		       WORDS("fc1.weight", "2049", "past the end|beyond|exceeds"));
	ext_case_fails(&c, KV("location", "w.bin", "offset", "18446744073709551615",
			      "length", "2048"),
		       WORDS("fc1.weight", "past the end|beyond|exceeds"));
	ext_case_fails(&c, KV("location", "w.bin", "offset", "64",
			      "length", "18446744073709551615"),
		       WORDS("fc1.weight", "past the end|beyond|exceeds"));
	ext_case_fails(&c, KV("location", "w.bin", "offset", "-1", "length", "2048"),
		       WORDS("fc1.weight", "offset"));
	ext_case_fails(&c, KV("location", "w.bin", "offset", "64", "length", "12abc"),
		       WORDS("fc1.weight", "length"));
	ext_case_fails(&c, KV("location", "w.bin", "offset", "99999999999999999999999"),
		       WORDS("fc1.weight", "offset"));
	ext_case_fails(&c, KV("offset", "64", "length", "2048"), WORDS("fc1.weight", "location"));
	ext_case_fails(&c, KV("location", "", "length", "2048"), WORDS("fc1.weight", "location"));
	ext_case_fini(&c);
}
END_TEST

/* Too little external data for the dims: the load may pass, the tensor
 * check may not. */
START_TEST(test_external_short_data)
{
	struct onnxpass_error err = { 0 };
	struct onnxpass_model *model = NULL;
	struct ext_case c;
	uint64_t numel = 0;
	int r;

	ext_case_init(&c);
	ext_case_write(&c, KV("location", "w.bin", "offset", "64", "length", "1024"));
	r = onnxpass_model_load_file(c.model_path, &model, &err);
	if (r == 0) {
		r = opass_tensor_check(model_test_initializer(model->proto, "fc1.weight"), &numel, &err);
		ck_assert_int_lt(r, 0);
		ck_assert_ptr_nonnull(strstr(err.message, "fc1.weight"));
	}
	ck_assert_int_lt(r, 0);
	onnxpass_model_free(model);
	ext_case_fini(&c);
}
END_TEST

/* External tensors need a folder: bytes loaded without one are refused. */
START_TEST(test_external_without_base_dir)
{
	struct onnxpass_error err = { 0 };
	struct onnxpass_model *model = NULL;
	char *path = test_path_join(test_models_dir, "external_data.onnx");
	size_t size = 0;
	char *bytes = test_read_file(path, &size);
	int r;

	ck_assert_ptr_nonnull(bytes);
	r = onnxpass_model_load_bytes(bytes, size, NULL, &model, &err);
	ck_assert_int_lt(r, 0);
	ck_assert_ptr_null(model);
	ck_assert_int_eq(err.code, r);
	ck_assert_msg(err.message[0], "no message");
	r = onnxpass_model_load_bytes(bytes, size, test_models_dir, &model, &err);
	ck_assert_msg(r == 0, "%s", err.message);
	onnxpass_model_free(model);
	free(bytes);
	free(path);
}
END_TEST

TCase *model_tcase_external(void)
{
	TCase *tc = tcase_create("external-data");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_external_load);
	tcase_add_test(tc, test_external_save_reload);
	tcase_add_test(tc, test_external_kept_on_save);
	tcase_add_test(tc, test_external_good_descriptors);
	tcase_add_test(tc, test_external_path_escapes);
	tcase_add_test(tc, test_external_bad_files);
	tcase_add_test(tc, test_external_bad_ranges);
	tcase_add_test(tc, test_external_short_data);
	tcase_add_test(tc, test_external_without_base_dir);
	return tc;
}
