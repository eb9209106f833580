/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "external.h"
#include "fileio.h"

/* Tensors smaller than this stay inline when saving with external data. */
#define OPASS_EXTERNAL_MIN_BYTES 1024
#define OPASS_EXTERNAL_ALIGN 64

struct ext_ref {
	const char *location;
	uint64_t offset;
	uint64_t length;
	bool has_length;
};

static int parse_u64(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int ext_ref_parse(const Onnx__TensorProto *t, struct ext_ref *ret, struct onnxpass_error *err)
{
	struct ext_ref ref = { 0 };
	const char *name = t->name ? t->name : "";

	for (size_t i = 0; i < t->n_external_data; i++) {
		const Onnx__StringStringEntryProto *e = t->external_data[i];
		int r = 0;

		if (!e->key)
			continue;
		if (strcmp(e->key, "location") == 0)
			ref.location = e->value;
		else if (strcmp(e->key, "offset") == 0)
			r = parse_u64(e->value, &ref.offset);
		else if (strcmp(e->key, "length") == 0) {
			r = parse_u64(e->value, &ref.length);
			ref.has_length = true;
		}
		if (r < 0)
			return opass_error(err, -EBADMSG, "tensor '%s': external data %s '%s' is not a number",
					   name, e->key, e->value ? e->value : "");
	}
	if (!ref.location || !*ref.location)
		return opass_error(err, -EBADMSG, "tensor '%s': external data without a location", name);
	*ret = ref;
	return 0;
}

/* location must stay inside the model folder. */
static int ext_path_check(const char *base_dir, const char *location, const char *name,
			  char **ret_path, struct onnxpass_error *err)
{
	char *path = NULL, real_base[PATH_MAX], real_path[PATH_MAX];
	const char *p = location;
	size_t n;

	if (location[0] == '/')
		return opass_error(err, -EPERM, "tensor '%s': external data path '%s' is absolute",
				   name, location);
	while (*p) {
		n = strcspn(p, "/\\");
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return opass_error(err, -EPERM, "tensor '%s': external data path '%s' leaves the model folder",
					   name, location);
		p += n + (p[n] ? 1 : 0);
	}
	if (asprintf(&path, "%s/%s", base_dir, location) < 0)
		return opass_error(err, -ENOMEM, "out of memory");
	if (!realpath(base_dir, real_base) || !realpath(path, real_path)) {
		int r = opass_error(err, -ENOENT, "tensor '%s': external data file '%s': %s",
				    name, path, strerror(errno));

		free(path);
		return r;
	}
	n = strlen(real_base);
	if (strncmp(real_base, real_path, n) != 0 || (real_path[n] != '/' && strcmp(real_base, "/"))) {
		free(path);
		return opass_error(err, -EPERM, "tensor '%s': external data path '%s' leaves the model folder",
				   name, location);
	}
	*ret_path = path;
	return 0;
}

struct load_ctx {
	struct onnxpass_model *model;
	struct onnxpass_error *err;
};

static void ext_clear(Onnx__TensorProto *t)
{
	for (size_t i = 0; i < t->n_external_data; i++)
		onnx__string_string_entry_proto__free_unpacked(t->external_data[i], NULL);
	free(t->external_data);
	t->external_data = NULL;
	t->n_external_data = 0;
	t->has_data_location = false;
	t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
}

static int ext_load_tensor(Onnx__TensorProto *t, void *userdata)
{
	struct load_ctx *ctx = userdata;
	const char *name = t->name ? t->name : "";
	struct opass_mapped_file file = { 0 };
	struct ext_ref ref = { 0 };
	char *path = NULL;
	uint8_t *data;
	int r;

	if (!t->has_data_location || t->data_location != ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
		return 0;
	ctx->model->had_external = true;
	if (!ctx->model->base_dir)
		return opass_error(ctx->err, -ENOENT,
				   "tensor '%s' uses external data but the model has no folder", name);
	r = ext_ref_parse(t, &ref, ctx->err);
	if (r == 0)
		r = ext_path_check(ctx->model->base_dir, ref.location, name, &path, ctx->err);
	if (r == 0)
		r = opass_file_map(path, &file, ctx->err);
	if (r < 0)
		goto out;
	if (!ref.has_length)
		ref.length = ref.offset <= file.size ? file.size - ref.offset : 0;
	if (ref.offset > file.size || ref.length > file.size - ref.offset) {
		r = opass_error(ctx->err, -EBADMSG,
				"tensor '%s': external data offset %" PRIu64 " + length %" PRIu64
				" is past the end of '%s' (%zu bytes)",
				name, ref.offset, ref.length, ref.location, file.size);
		goto out;
	}
	data = malloc(ref.length ? ref.length : 1);
	if (!data) {
		r = opass_error(ctx->err, -ENOMEM, "out of memory");
		goto out;
	}
	if (ref.length)
		memcpy(data, (uint8_t *)file.data + ref.offset, ref.length);
	free(t->raw_data.data);
	t->raw_data.data = data;
	t->raw_data.len = ref.length;
	t->has_raw_data = true;
	ext_clear(t);
out:
	opass_file_unmap(&file);
	free(path);
	return r;
}

int opass_external_load(struct onnxpass_model *model, struct onnxpass_error *err)
{
	struct load_ctx ctx = { .model = model, .err = err };

	return opass_model_foreach_tensor(model->proto, ext_load_tensor, &ctx);
}

/* --- saving ---------------------------------------------------------------- */

struct saved_tensor {
	Onnx__TensorProto *tensor;
	ProtobufCBinaryData raw;
};

struct save_ctx {
	struct opass_atomic_file data_file;
	const char *location;
	struct saved_tensor *saved;
	size_t n_saved;
	size_t cap_saved;
	int error;
};

static Onnx__StringStringEntryProto *entry_new(const char *key, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static Onnx__StringStringEntryProto *entry_new(const char *key, const char *fmt, ...)
{
	Onnx__StringStringEntryProto *e = malloc(sizeof(*e));
	va_list ap;
	int r;

	if (!e)
		return NULL;
	onnx__string_string_entry_proto__init(e);
	e->key = strdup(key);
	va_start(ap, fmt);
	r = vasprintf(&e->value, fmt, ap);
	va_end(ap);
	if (r < 0)
		e->value = NULL;
	if (!e->key || !e->value) {
		onnx__string_string_entry_proto__free_unpacked(e, NULL);
		return NULL;
	}
	return e;
}

static int save_externalize(Onnx__TensorProto *t, void *userdata)
{
	static const uint8_t zeros[OPASS_EXTERNAL_ALIGN];
	struct save_ctx *ctx = userdata;
	uint64_t pad, offset;
	Onnx__StringStringEntryProto **entries;

	if (!t->has_raw_data || t->raw_data.len < OPASS_EXTERNAL_MIN_BYTES)
		return 0;
	if (ctx->n_saved == ctx->cap_saved) {
		size_t cap = ctx->cap_saved ? 2 * ctx->cap_saved : 64;
		struct saved_tensor *s = realloc(ctx->saved, cap * sizeof(*s));

		if (!s)
			return -ENOMEM;
		ctx->saved = s;
		ctx->cap_saved = cap;
	}
	pad = (OPASS_EXTERNAL_ALIGN - ctx->data_file.offset % OPASS_EXTERNAL_ALIGN) % OPASS_EXTERNAL_ALIGN;
	opass_atomic_write(&ctx->data_file, zeros, pad);
	offset = ctx->data_file.offset;
	if (opass_atomic_write(&ctx->data_file, t->raw_data.data, t->raw_data.len) < 0)
		return ctx->data_file.error;
	entries = calloc(3, sizeof(*entries));
	if (!entries)
		return -ENOMEM;
	entries[0] = entry_new("location", "%s", ctx->location);
	entries[1] = entry_new("offset", "%" PRIu64, offset);
	entries[2] = entry_new("length", "%zu", t->raw_data.len);
	ctx->saved[ctx->n_saved++] = (struct saved_tensor){ .tensor = t, .raw = t->raw_data };
	t->external_data = entries;
	t->n_external_data = 3;
	t->has_raw_data = false;
	t->raw_data = (ProtobufCBinaryData){ 0 };
	t->has_data_location = true;
	t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
	if (!entries[0] || !entries[1] || !entries[2])
		return -ENOMEM;
	return 0;
}

static void save_restore(struct save_ctx *ctx)
{
	for (size_t i = 0; i < ctx->n_saved; i++) {
		Onnx__TensorProto *t = ctx->saved[i].tensor;

		for (size_t k = 0; k < t->n_external_data; k++)
			if (t->external_data[k])
				onnx__string_string_entry_proto__free_unpacked(t->external_data[k], NULL);
		free(t->external_data);
		t->external_data = NULL;
		t->n_external_data = 0;
		t->raw_data = ctx->saved[i].raw;
		t->has_raw_data = true;
		t->has_data_location = false;
		t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
	}
	free(ctx->saved);
	ctx->saved = NULL;
	ctx->n_saved = 0;
}

/*
 * Make the new side file and model visible. The old side file (if any) is
 * kept under a backup link until the model's rename succeeded, and put back
 * if it failed, so a failed save leaves the old pair as it was.
 */
static int commit_pair(struct opass_atomic_file *data, struct opass_atomic_file *model,
		       const char *data_path, struct onnxpass_error *err)
{
	char *backup = NULL;
	bool had_old;
	int r;

	if (asprintf(&backup, "%s.old", data->tmp_path) < 0)
		return opass_error(err, -ENOMEM, "out of memory");
	had_old = link(data_path, backup) == 0;
	r = opass_atomic_commit(data, err);
	if (r == 0) {
		r = opass_atomic_commit(model, err);
		if (r < 0 && had_old)
			rename(backup, data_path);
		else if (r < 0)
			unlink(data_path);
	}
	if (had_old)
		unlink(backup);
	free(backup);
	return r;
}

int opass_external_save(struct onnxpass_model *model, const char *path, bool sync,
			struct onnxpass_error *err)
{
	struct save_ctx ctx = { .data_file = { .fd = -1 } };
	struct opass_atomic_file model_file = { .fd = -1 };
	char *data_path = NULL;
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	int r;

	if (asprintf(&data_path, "%s.data", path) < 0)
		return opass_error(err, -ENOMEM, "out of memory");
	ctx.location = base[0] ? data_path + (base - path) : "model.data";
	r = opass_atomic_open(data_path, sync, &ctx.data_file, err);
	if (r < 0)
		goto out;
	r = opass_model_foreach_tensor(model->proto, save_externalize, &ctx);
	if (r < 0) {
		opass_error(err, r, "%s: cannot write external data: %s", data_path, strerror(-r));
		opass_atomic_abort(&ctx.data_file);
		goto out;
	}
	/* both files complete on disk before either becomes visible */
	r = opass_atomic_open(path, sync, &model_file, err);
	if (r == 0 && opass_atomic_write_proto(&model_file, &model->proto->base) < 0)
		r = opass_error(err, model_file.error, "%s: cannot write: %s", path,
				strerror(-model_file.error));
	if (r == 0)
		r = commit_pair(&ctx.data_file, &model_file, data_path, err);
	opass_atomic_abort(&ctx.data_file);
	opass_atomic_abort(&model_file);
out:
	save_restore(&ctx);
	free(data_path);
	return r;
}
