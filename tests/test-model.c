/* SPDX-License-Identifier: MIT */
/*
 * Model I/O (SPEC 3, 9): load/save round trips of the generated models,
 * unknown fields, external data (and hostile descriptors), truncated and
 * corrupt input, atomic saves, metadata, and float tensor access.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "model.h"
#include "tensor.h"
#include "testlib.h"

static char *path_join(const char *dir, const char *name)
{
	char *path = NULL;

	ck_assert_int_ge(asprintf(&path, "%s/%s", dir, name), 0);
	return path;
}

static const cJSON *manifest_entry(const char *file)
{
	const cJSON *models = cJSON_GetObjectItemCaseSensitive(test_models_manifest, "models");
	const cJSON *entry = cJSON_GetObjectItemCaseSensitive(models, file);

	ck_assert_msg(cJSON_IsObject(entry), "manifest has no entry for %s", file);
	return entry;
}

static struct onnxpass_model *load_ok(const char *path)
{
	struct onnxpass_error err = { 0 };
	struct onnxpass_model *model = NULL;
	int r = onnxpass_model_load_file(path, &model, &err);

	ck_assert_msg(r == 0, "loading %s failed (%d): %s", path, r, err.message);
	ck_assert_ptr_nonnull(model);
	return model;
}

static struct onnxpass_model *load_generated(const char *file)
{
	char *path = path_join(test_models_dir, file);
	struct onnxpass_model *model = load_ok(path);

	free(path);
	return model;
}

static void *save_bytes_ok(struct onnxpass_model *model, size_t *ret_size)
{
	struct onnxpass_error err = { 0 };
	void *data = NULL;
	int r = onnxpass_model_save_bytes(model, &data, ret_size, &err);

	ck_assert_msg(r == 0, "save_bytes failed (%d): %s", r, err.message);
	ck_assert_ptr_nonnull(data);
	return data;
}

/* Both models serialise to the same bytes. */
static void assert_same_bytes(struct onnxpass_model *model_a, struct onnxpass_model *model_b)
{
	size_t size_a = 0, size_b = 0;
	void *a = save_bytes_ok(model_a, &size_a), *b = save_bytes_ok(model_b, &size_b);

	ck_assert_uint_eq(size_a, size_b);
	ck_assert(memcmp(a, b, size_a) == 0);
	onnxpass_free(a);
	onnxpass_free(b);
}

static void save_file_ok(struct onnxpass_model *model, const char *path, unsigned flags)
{
	struct onnxpass_error err = { 0 };
	int r = onnxpass_model_save_file(model, path, flags, &err);

	ck_assert_msg(r == 0, "saving %s failed (%d): %s", path, r, err.message);
}

static void write_file(const char *path, const void *data, size_t size)
{
	FILE *f = fopen(path, "wb");

	ck_assert_msg(f, "cannot create %s", path);
	ck_assert_uint_eq(fwrite(data, 1, size, f), size);
	ck_assert_int_eq(fclose(f), 0);
}

static void copy_file(const char *from, const char *to)
{
	size_t size = 0;
	char *data = test_read_file(from, &size);

	ck_assert_msg(data, "cannot read %s", from);
	write_file(to, data, size);
	free(data);
}

static size_t first_difference(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
	size_t i = 0;

	while (i < na && i < nb && a[i] == b[i])
		i++;
	return i;
}

/* The folder holds exactly the NULL-terminated names (no temp files). */
static void assert_dir_holds(const char *dir, const char *const *names)
{
	size_t n_expected = 0, n_found = 0;
	struct dirent *de;
	DIR *d = opendir(dir);

	ck_assert_msg(d, "cannot open %s", dir);
	while (names[n_expected])
		n_expected++;
	while ((de = readdir(d))) {
		bool known = false;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		for (size_t i = 0; i < n_expected; i++)
			known = known || strcmp(de->d_name, names[i]) == 0;
		ck_assert_msg(known, "unexpected file '%s' left in %s", de->d_name, dir);
		n_found++;
	}
	closedir(d);
	ck_assert_msg(n_found == n_expected, "%s holds %zu files, expected %zu", dir, n_found,
		      n_expected);
}

static void remove_tree(const char *dir)
{
	if (dir && strncmp(dir, "/tmp/", 5) == 0)
		ck_assert_int_eq(test_system("rm -rf '%s'", dir), 0);
}

/* --- round trips ----------------------------------------------------------- */

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
		path = path_join(test_models_dir, entry->string);
		in = test_read_file(path, &in_size);
		ck_assert_msg(in, "cannot read %s", path);
		r = onnxpass_model_load_bytes(in, in_size, test_models_dir, &model, &err);
		ck_assert_msg(r == 0, "%s: load failed (%d): %s", entry->string, r, err.message);
		ck_assert(!model->had_external);
		out = save_bytes_ok(model, &out_size);
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
	char *dir = test_tmpdir(), *in_path = path_join(test_models_dir, "edge_cases.onnx");
	char *out_path = path_join(dir, "out.onnx");
	struct onnxpass_model *model = load_ok(in_path);
	size_t in_size = 0, out_size = 0;
	char *in, *out;

	save_file_ok(model, out_path, 0);
	in = test_read_file(in_path, &in_size);
	out = test_read_file(out_path, &out_size);
	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(in_size, out_size);
	ck_assert(memcmp(in, out, in_size) == 0);
	assert_dir_holds(dir, (const char *[]){ "out.onnx", NULL });
	free(in);
	free(out);
	onnxpass_model_free(model);
	remove_tree(dir);
	free(out_path);
	free(in_path);
	free(dir);
}
END_TEST

/* --- unknown fields -------------------------------------------------------- */

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
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(manifest_entry("unknown_fields.onnx"),
							      "unknown_fields");
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
	struct onnxpass_model *model = load_generated("unknown_fields.onnx"), *again = NULL;
	struct onnxpass_error err = { 0 };
	size_t size = 0, size2 = 0;
	uint8_t *out, *out2;
	int r;

	ck_assert_int_eq(model->proto->ir_version, 10);
	/* change the model so the tree is really rebuilt, then save */
	ck_assert_int_eq(opass_model_set_metadata(model->proto, "touched", "yes"), 0);
	out = save_bytes_ok(model, &size);
	assert_unknown_fields(model->proto, out, size);
	r = onnxpass_model_load_bytes(out, size, NULL, &again, &err);
	ck_assert_msg(r == 0, "saved model does not load again (%d): %s", r, err.message);
	ck_assert_str_eq(opass_model_get_metadata(again->proto, "touched"), "yes");
	ck_assert_str_eq(again->proto->graph->initializer[0]->name, "fc.w");
	out2 = save_bytes_ok(again, &size2);
	assert_unknown_fields(again->proto, out2, size2);
	ck_assert_uint_eq(size, size2);
	ck_assert(memcmp(out, out2, size) == 0);
	onnxpass_free(out);
	onnxpass_free(out2);
	onnxpass_model_free(again);
	onnxpass_model_free(model);
}
END_TEST

/* --- external data ------------------------------------------------------- */

static Onnx__TensorProto *initializer(Onnx__ModelProto *proto, const char *name)
{
	for (size_t i = 0; i < proto->graph->n_initializer; i++)
		if (strcmp(proto->graph->initializer[i]->name, name) == 0)
			return proto->graph->initializer[i];
	ck_abort_msg("no initializer %s", name);
	return NULL;
}

static void assert_same_initializers(Onnx__ModelProto *a, Onnx__ModelProto *b)
{
	ck_assert_uint_eq(a->graph->n_initializer, b->graph->n_initializer);
	for (size_t i = 0; i < a->graph->n_initializer; i++) {
		const Onnx__TensorProto *ta = a->graph->initializer[i];
		const Onnx__TensorProto *tb = initializer(b, ta->name);

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

/* external_data.onnx is mlp_gemm.onnx with every tensor in the side file. */
START_TEST(test_external_load)
{
	struct onnxpass_model *ext = load_generated("external_data.onnx");
	struct onnxpass_model *inline_model = load_generated("mlp_gemm.onnx");
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(manifest_entry("external_data.onnx"),
							      "external_data");
	char *data_path = path_join(test_models_dir, "external_data.onnx.data");
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
		const Onnx__TensorProto *t = initializer(ext->proto, name);

		ck_assert_uint_le(offset + length, data_size);
		ck_assert_uint_eq(t->raw_data.len, length);
		ck_assert(memcmp(t->raw_data.data, data + offset, length) == 0);
		ck_assert_uint_eq(t->n_external_data, 0);
		n++;
	}
	ck_assert_uint_eq(n, ext->proto->graph->n_initializer);
	assert_same_initializers(inline_model->proto, ext->proto);
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
	struct onnxpass_model *model = load_generated("mlp_gemm.onnx"), *again;
	char *dir = test_tmpdir(), *out = path_join(dir, "out.onnx");

	save_file_ok(model, out, ONNXPASS_SAVE_EXTERNAL_DATA);
	assert_dir_holds(dir, (const char *[]){ "out.onnx", "out.onnx.data", NULL });
	assert_saved_external(out, "out.onnx.data");
	again = load_ok(out);
	ck_assert(again->had_external);
	assert_same_initializers(model->proto, again->proto);
	/* the in-memory model is unchanged by the save, and equals the reload */
	assert_same_bytes(model, again);
	onnxpass_model_free(again);
	onnxpass_model_free(model);
	remove_tree(dir);
	free(out);
	free(dir);
}
END_TEST

/* A model that came with external data keeps it when saved without the flag. */
START_TEST(test_external_kept_on_save)
{
	struct onnxpass_model *model = load_generated("external_data.onnx"), *again;
	char *dir = test_tmpdir(), *out = path_join(dir, "copy.onnx");

	save_file_ok(model, out, 0);
	assert_dir_holds(dir, (const char *[]){ "copy.onnx", "copy.onnx.data", NULL });
	assert_saved_external(out, "copy.onnx.data");
	again = load_ok(out);
	assert_same_initializers(model->proto, again->proto);
	onnxpass_model_free(again);
	onnxpass_model_free(model);
	remove_tree(dir);
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
	struct onnxpass_model *model = load_generated("mlp_gemm.onnx");
	Onnx__TensorProto *t = initializer(model->proto, "fc1.weight");
	uint8_t *padded;
	char *path;

	c->root = test_tmpdir();
	ck_assert_ptr_nonnull(c->root);
	c->model_dir = path_join(c->root, "model");
	c->model_path = path_join(c->model_dir, "model.onnx");
	ck_assert_int_eq(mkdir(c->model_dir, 0755), 0);
	c->weight_len = t->raw_data.len;
	c->weight = malloc(c->weight_len);
	padded = malloc(c->weight_len + 64);
	ck_assert(c->weight && padded);
	memcpy(c->weight, t->raw_data.data, c->weight_len);
	memset(padded, 0xAA, 64);
	memcpy(padded + 64, c->weight, c->weight_len);
	path = path_join(c->root, "outside.bin");
	write_file(path, c->weight, c->weight_len);
	free(path);
	path = path_join(c->model_dir, "w.bin");
	write_file(path, padded, c->weight_len + 64);
	free(path);
	free(padded);
	onnxpass_model_free(model);
}

static void ext_case_fini(struct ext_case *c)
{
	remove_tree(c->root);
	free(c->root);
	free(c->model_dir);
	free(c->model_path);
	free(c->weight);
}

/* Write model.onnx with fc1.weight external, described by key/value pairs. */
static void ext_case_write(struct ext_case *c, const char *const *kv)
{
	struct onnxpass_model *model = load_generated("mlp_gemm.onnx");
	Onnx__TensorProto *t = initializer(model->proto, "fc1.weight");
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
	write_file(c->model_path, bytes, size);
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
	model = load_ok(c->model_path);
	t = initializer(model->proto, "fc1.weight");
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
	link = path_join(c.model_dir, "inside-link.bin");
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
	abs_path = path_join(c.model_dir, "w.bin");
	/* absolute, even to a file inside the model folder */
	ext_case_fails(&c, KV("location", abs_path, "offset", "64", "length", "2048"),
		       WORDS("fc1.weight", abs_path, "absolute"));
	ext_case_fails(&c, KV("location", "../outside.bin", "length", "2048"),
		       WORDS("fc1.weight", "../outside.bin", "leaves|outside|escape"));
	ext_case_fails(&c, KV("location", "sub/../../outside.bin", "length", "2048"),
		       WORDS("fc1.weight", "sub/../../outside.bin", "leaves|outside|escape"));
	/* a symlink inside the folder that points outside it */
	link = path_join(c.model_dir, "link.bin");
	ck_assert_int_eq(symlink("../outside.bin", link), 0);
	ext_case_fails(&c, KV("location", "link.bin", "length", "2048"),
		       WORDS("fc1.weight", "link.bin", "leaves|outside|escape"));
	free(link);
	/* a symlinked folder that points outside it */
	link = path_join(c.model_dir, "linkdir");
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
	sub = path_join(c.model_dir, "subdir");
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
		r = opass_tensor_check(initializer(model->proto, "fc1.weight"), &numel, &err);
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
	char *path = path_join(test_models_dir, "external_data.onnx");
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

/* --- bad bytes ------------------------------------------------------------ */

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
	char *path = path_join(test_models_dir, "mlp_gemm.onnx");
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
	char *path = path_join(test_models_dir, "edge_cases.onnx");
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
	char *dir = test_tmpdir(), *missing = path_join(dir, "missing.onnx");
	char *bad = path_join(dir, "bad.onnx"), *empty = path_join(dir, "empty.onnx");
	int r;

	r = onnxpass_model_load_file(missing, &model, &err);
	ck_assert_int_eq(r, -ENOENT);
	ck_assert_ptr_null(model);
	ck_assert_ptr_nonnull(strstr(err.message, missing));
	r = onnxpass_model_load_file(dir, &model, &err);
	ck_assert_int_lt(r, 0);
	ck_assert_ptr_null(model);
	write_file(bad, "this is not a model", 19);
	r = onnxpass_model_load_file(bad, &model, &err);
	ck_assert_int_lt(r, 0);
	ck_assert_ptr_null(model);
	ck_assert_msg(err.message[0], "no message");
	write_file(empty, "", 0);
	r = onnxpass_model_load_file(empty, &model, &err);
	ck_assert_int_lt(r, 0);
	ck_assert_ptr_null(model);
	/* a NULL error struct is allowed */
	ck_assert_int_lt(onnxpass_model_load_file(missing, &model, NULL), 0);
	remove_tree(dir);
	free(empty);
	free(bad);
	free(missing);
	free(dir);
}
END_TEST

/* --- atomic saves ---------------------------------------------------------- */

START_TEST(test_save_over_input)
{
	char *dir = test_tmpdir(), *path = path_join(dir, "m.onnx"), *src;
	struct onnxpass_model *model, *again;

	src = path_join(test_models_dir, "mlp_gemm.onnx");
	copy_file(src, path);
	model = load_ok(path);
	ck_assert_int_eq(opass_model_set_metadata(model->proto, "onnx_pass.test", "over"), 0);
	save_file_ok(model, path, 0);
	assert_dir_holds(dir, (const char *[]){ "m.onnx", NULL });
	again = load_ok(path);
	ck_assert_str_eq(opass_model_get_metadata(again->proto, "onnx_pass.test"), "over");
	assert_same_bytes(model, again);
	onnxpass_model_free(again);
	onnxpass_model_free(model);
	remove_tree(dir);
	free(src);
	free(path);
	free(dir);
}
END_TEST

/* Saving an external-data model over itself rewrites both files: the new
 * side file under a fresh name, the old one removed after the rename. */
START_TEST(test_save_over_input_external)
{
	char *dir = test_tmpdir(), *path = path_join(dir, "e.onnx");
	char *data = NULL, *src;
	struct onnxpass_model *orig = load_generated("external_data.onnx"), *model, *again;

	src = path_join(test_models_dir, "external_data.onnx");
	copy_file(src, path);
	/* the copy names the generator's side file (not OUT's: kept) */
	save_file_ok(orig, path, 0);
	assert_dir_holds(dir, (const char *[]){ "e.onnx", "e.onnx.data", NULL });
	model = load_ok(path);
	save_file_ok(model, path, 0);
	assert_dir_holds(dir, (const char *[]){ "e.onnx", "e.onnx.1.data", NULL });
	again = load_ok(path);
	assert_same_initializers(orig->proto, again->proto);
	onnxpass_model_free(again);
	onnxpass_model_free(model);
	onnxpass_model_free(orig);
	remove_tree(dir);
	free(src);
	free(data);
	free(path);
	free(dir);
}
END_TEST

START_TEST(test_save_bad_paths)
{
	struct onnxpass_model *model = load_generated("mlp_gemm.onnx");
	char *dir = test_tmpdir(), *file = path_join(dir, "file"), *p = NULL;
	struct onnxpass_error err = { 0 };
	const unsigned flags[] = { 0, ONNXPASS_SAVE_EXTERNAL_DATA };
	int r;

	write_file(file, "x", 1);
	for (size_t i = 0; i < 2; i++) {
		free(p);
		p = path_join(dir, "no/such/dir/out.onnx");
		r = onnxpass_model_save_file(model, p, flags[i], &err);
		ck_assert_int_eq(r, -ENOENT);
		ck_assert_int_eq(err.code, r);
		ck_assert_msg(strstr(err.message, "out.onnx"), "message '%s' names no file", err.message);
		free(p);
		p = path_join(file, "out.onnx");
		r = onnxpass_model_save_file(model, p, flags[i], &err);
		ck_assert_int_eq(r, -ENOTDIR);
		ck_assert_msg(strstr(err.message, "out.onnx"), "message '%s' names no file", err.message);
		assert_dir_holds(dir, (const char *[]){ "file", NULL });
	}
	onnxpass_model_free(model);
	remove_tree(dir);
	free(p);
	free(file);
	free(dir);
}
END_TEST

/* A folder where the output should go: the final rename fails, after the
 * temp files are complete. Nothing may be left, with external data too. */
static void save_over_folder(unsigned flags)
{
	struct onnxpass_model *model = load_generated("mlp_gemm.onnx");
	char *dir = test_tmpdir(), *p = path_join(dir, "sub");
	struct onnxpass_error err = { 0 };
	int r;

	ck_assert_int_eq(mkdir(p, 0755), 0);
	r = onnxpass_model_save_file(model, p, flags, &err);
	ck_assert_int_lt(r, 0);
	ck_assert_int_eq(err.code, r);
	ck_assert_msg(strstr(err.message, "sub"), "message '%s' names no file", err.message);
	assert_dir_holds(p, (const char *[]){ NULL });
	assert_dir_holds(dir, (const char *[]){ "sub", NULL });
	onnxpass_model_free(model);
	remove_tree(dir);
	free(p);
	free(dir);
}

START_TEST(test_save_rename_fails)
{
	save_over_folder(0);
}
END_TEST

START_TEST(test_save_rename_fails_external)
{
	save_over_folder(ONNXPASS_SAVE_EXTERNAL_DATA);
}
END_TEST

/* Save while the file size limit makes writes fail half-way (works as root,
 * where permission bits would not); in a child, so the limit stays there. */
static void save_with_small_fsize(const char *path, unsigned flags)
{
	pid_t pid = fork();
	int status = 0;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct onnxpass_model *model = NULL;
		struct onnxpass_error err = { 0 };
		struct rlimit lim = { 4096, 4096 };
		char *src = path_join(test_models_dir, "mlp_gemm.onnx");
		int r;

		signal(SIGXFSZ, SIG_IGN);
		if (onnxpass_model_load_file(src, &model, &err) < 0)
			_exit(3);
		if (setrlimit(RLIMIT_FSIZE, &lim) < 0)
			_exit(6);
		r = onnxpass_model_save_file(model, path, flags, &err);
		if (r == 0)
			_exit(4);
		if (err.code != r || !strstr(err.message, "out.onnx"))
			_exit(5);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_msg(WEXITSTATUS(status) == 0, "child: %s",
		      (const char *[]){ "", "", "", "load failed", "save succeeded",
					"wrong error or message", "setrlimit failed",
					"?" }[WEXITSTATUS(status) % 8]);
}

START_TEST(test_save_write_failure)
{
	char *dir = test_tmpdir(), *path = path_join(dir, "out.onnx"), *text;
	size_t size = 0;

	write_file(path, "old", 3);
	save_with_small_fsize(path, 0);
	assert_dir_holds(dir, (const char *[]){ "out.onnx", NULL });
	text = test_read_file(path, &size);
	ck_assert_str_eq(text, "old");
	free(text);
	save_with_small_fsize(path, ONNXPASS_SAVE_EXTERNAL_DATA);
	assert_dir_holds(dir, (const char *[]){ "out.onnx", NULL });
	text = test_read_file(path, &size);
	ck_assert_str_eq(text, "old");
	free(text);
	remove_tree(dir);
	free(path);
	free(dir);
}
END_TEST

/* Without root, a read-only folder refuses the temp file. */
START_TEST(test_save_readonly_dir)
{
	struct onnxpass_model *model;
	struct onnxpass_error err = { 0 };
	char *dir, *path;
	int r;

	if (geteuid() == 0)
		return; /* root writes anyway: test_save_write_failure covers it */
	model = load_generated("mlp_gemm.onnx");
	dir = test_tmpdir();
	path = path_join(dir, "out.onnx");
	ck_assert_int_eq(chmod(dir, 0555), 0);
	r = onnxpass_model_save_file(model, path, 0, &err);
	ck_assert_int_eq(r, -EACCES);
	ck_assert_ptr_nonnull(strstr(err.message, "out.onnx"));
	ck_assert_int_eq(chmod(dir, 0755), 0);
	assert_dir_holds(dir, (const char *[]){ NULL });
	onnxpass_model_free(model);
	remove_tree(dir);
	free(path);
	free(dir);
}
END_TEST

/* --- metadata -------------------------------------------------------------- */

START_TEST(test_metadata)
{
	struct onnxpass_model *model = load_generated("mlp_gemm.onnx"), *again = NULL;
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
	bytes = save_bytes_ok(model, &size);
	ck_assert_int_eq(onnxpass_model_load_bytes(bytes, size, NULL, &again, &err), 0);
	ck_assert_str_eq(opass_model_get_metadata(again->proto, "b"), "{\"json\": [1, 2]}");
	ck_assert_str_eq(opass_model_get_metadata(again->proto, "c"), "");
	ck_assert_ptr_null(opass_model_get_metadata(again->proto, "a"));
	onnxpass_free(bytes);
	onnxpass_model_free(again);
	onnxpass_model_free(model);
}
END_TEST

/* --- tensors --------------------------------------------------------------- */

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
END_TEST

Suite *test_suite(void)
{
	Suite *s = suite_create("model");
	TCase *tc = tcase_create("core");

	test_models_want("");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_roundtrip_identical);
	tcase_add_test(tc, test_roundtrip_file);
	tcase_add_test(tc, test_unknown_fields_kept);
	tcase_add_test(tc, test_external_load);
	tcase_add_test(tc, test_external_save_reload);
	tcase_add_test(tc, test_external_kept_on_save);
	tcase_add_test(tc, test_external_good_descriptors);
	tcase_add_test(tc, test_external_path_escapes);
	tcase_add_test(tc, test_external_bad_files);
	tcase_add_test(tc, test_external_bad_ranges);
	tcase_add_test(tc, test_external_short_data);
	tcase_add_test(tc, test_external_without_base_dir);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_corrupt);
	tcase_add_test(tc, test_load_file_errors);
	tcase_add_test(tc, test_save_over_input);
	tcase_add_test(tc, test_save_over_input_external);
	tcase_add_test(tc, test_save_bad_paths);
	tcase_add_test(tc, test_save_rename_fails);
	tcase_add_test(tc, test_save_rename_fails_external);
	tcase_add_test(tc, test_save_write_failure);
	tcase_add_test(tc, test_save_readonly_dir);
	tcase_add_test(tc, test_metadata);
	tcase_add_test(tc, test_tensor_float);
	tcase_add_test(tc, test_tensor_double);
	tcase_add_test(tc, test_tensor_float16);
	tcase_add_test(tc, test_tensor_bfloat16);
	tcase_add_test(tc, test_tensor_check_errors);
	tcase_add_test(tc, test_dtype_names);
	suite_add_tcase(s, tc);
	return s;
}
