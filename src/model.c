/* SPDX-License-Identifier: MIT */
/* Model load/save (file and bytes) and its metadata. */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "external.h"
#include "fileio.h"
#include "model.h"
#include "proto_walk.h"
#include "unpack.h"
#include "wire.h"

/* The protobuf tree may take this many times the serialised size, plus a
 * constant; a legitimate model needs far less (see opass_wire_check). */
#define OPASS_MAX_MEMORY_FACTOR 16
#define OPASS_MAX_MEMORY_SLACK ((uint64_t)64 << 20)

/* Bounded, iterative check of the bytes before protobuf-c's recursive unpack. */
static int model_wire_check(const void *data, size_t size, struct onnxpass_error *err)
{
	const struct opass_wire_limits limits = {
		.max_depth = OPASS_MAX_MESSAGE_DEPTH,
		.counted = &onnx__graph_proto__descriptor,
		.max_counted = OPASS_MAX_GRAPH_DEPTH,
		.counted_what = "subgraphs",
		.max_memory = OPASS_MAX_MEMORY_FACTOR * (uint64_t)size + OPASS_MAX_MEMORY_SLACK,
	};
	int r = opass_wire_check(&onnx__model_proto__descriptor, data, size, &limits, NULL, err);

	if (r == -EBADMSG)
		opass_error_prefix(err, "not a valid ONNX model: ");
	return r;
}

static int model_check(Onnx__ModelProto *proto, struct onnxpass_error *err)
{
	if (!proto->graph)
		return opass_error(err, -EBADMSG, "model has no graph");
	return 0;
}

/* release: data is our own file mapping, its pages may be dropped. */
static int model_load(const void *data, size_t size, const char *base_dir, bool release,
		      struct onnxpass_model **ret_model, struct onnxpass_error *err)
{
	struct onnxpass_model *model;
	int r;

	model = calloc(1, sizeof(*model));
	if (!model)
		return opass_error(err, -ENOMEM, "out of memory");
	model->store.fd = -1;
	r = model_wire_check(data, size, err);
	if (r < 0)
		goto fail;
	model->proto = opass_model_unpack(data, size, release);
	if (!model->proto) {
		r = opass_error(err, -EBADMSG, "not a valid ONNX model (protobuf parse failed)");
		goto fail;
	}
	r = model_check(model->proto, err);
	if (r < 0)
		goto fail;
	if (base_dir) {
		model->base_dir = strdup(base_dir);
		if (!model->base_dir) {
			r = opass_error(err, -ENOMEM, "out of memory");
			goto fail;
		}
	}
	r = opass_external_load(model->proto, model->base_dir, &model->store, &model->had_external,
				err);
	if (r < 0)
		goto fail;
	*ret_model = model;
	return 0;
fail:
	onnxpass_model_free(model);
	return r;
}

ONNXPASS_EXPORT int onnxpass_model_load_bytes(const void *data, size_t size, const char *base_dir,
					      struct onnxpass_model **ret_model,
					      struct onnxpass_error *err)
{
	return model_load(data, size, base_dir, false, ret_model, err);
}

ONNXPASS_EXPORT int onnxpass_model_load_file(const char *path, struct onnxpass_model **ret_model,
					     struct onnxpass_error *err)
{
	struct opass_mapped_file file = { 0 };
	char *copy;
	int r;

	r = opass_file_map(path, &file, err);
	if (r < 0)
		return r;
	copy = strdup(path);
	if (copy)
		r = model_load(file.data, file.size, dirname(copy), true, ret_model, err);
	else
		r = opass_error(err, -ENOMEM, "out of memory");
	free(copy);
	opass_file_unmap(&file);
	return r;
}

static int count_raw(Onnx__TensorProto *t, void *userdata)
{
	*(uint64_t *)userdata += t->has_raw_data ? t->raw_data.len : 0;
	return 0;
}

ONNXPASS_EXPORT int onnxpass_model_save_file(struct onnxpass_model *model, const char *path,
					     unsigned flags, struct onnxpass_error *err)
{
	uint64_t raw = 0;
	bool external, sync = flags & ONNXPASS_SAVE_FSYNC;

	opass_proto_foreach_tensor(model->proto, count_raw, &raw);
	/* protobuf cannot hold 2 GiB in one message: such models always
	 * keep their tensors outside. */
	external = model->had_external || (flags & ONNXPASS_SAVE_EXTERNAL_DATA) ||
		   raw >= ((uint64_t)2 << 30) - ((uint64_t)64 << 20);
	if (external)
		return opass_external_save(model->proto, &model->store, path, sync, err);
	return opass_file_write_proto(path, &model->proto->base, sync, err);
}

ONNXPASS_EXPORT int onnxpass_file_write(const char *path, const void *data, size_t size,
					unsigned flags, struct onnxpass_error *err)
{
	struct opass_atomic_file file;
	int r;

	r = opass_atomic_open(path, flags & ONNXPASS_SAVE_FSYNC, &file, err);
	if (r < 0)
		return r;
	if (opass_atomic_write(&file, data, size) < 0) {
		r = opass_error(err, file.error, "%s: cannot write: %s", path, strerror(-file.error));
		opass_atomic_abort(&file);
		return r;
	}
	return opass_atomic_commit(&file, err);
}

ONNXPASS_EXPORT int onnxpass_model_save_bytes(struct onnxpass_model *model, void **ret_data,
					      size_t *ret_size, struct onnxpass_error *err)
{
	return opass_external_pack(model->proto, &model->store, ret_data, ret_size, err);
}

ONNXPASS_EXPORT struct onnxpass_model *onnxpass_model_free(struct onnxpass_model *model)
{
	if (!model)
		return NULL;
	opass_filemap_detach_all(&model->store.map, model->proto);
	opass_store_fini(&model->store);
	if (model->proto)
		onnx__model_proto__free_unpacked(model->proto, NULL);
	free(model->base_dir);
	free(model);
	return NULL;
}

ONNXPASS_EXPORT void *onnxpass_model_get_proto(struct onnxpass_model *model)
{
	return model ? model->proto : NULL;
}

ONNXPASS_EXPORT void onnxpass_free(void *p)
{
	free(p);
}

/* --- metadata ------------------------------------------------------------ */

const char *opass_model_get_metadata(const Onnx__ModelProto *proto, const char *key)
{
	for (size_t i = 0; i < proto->n_metadata_props; i++) {
		const Onnx__StringStringEntryProto *e = proto->metadata_props[i];

		if (e->key && strcmp(e->key, key) == 0)
			return e->value ? e->value : "";
	}
	return NULL;
}

static int metadata_remove(Onnx__ModelProto *proto, const char *key)
{
	for (size_t i = 0; i < proto->n_metadata_props; i++) {
		Onnx__StringStringEntryProto *e = proto->metadata_props[i];

		if (e->key && strcmp(e->key, key) == 0) {
			onnx__string_string_entry_proto__free_unpacked(e, NULL);
			memmove(&proto->metadata_props[i], &proto->metadata_props[i + 1],
				(proto->n_metadata_props - i - 1) * sizeof(*proto->metadata_props));
			proto->n_metadata_props--;
			return 0;
		}
	}
	return 0;
}

int opass_model_set_metadata(Onnx__ModelProto *proto, const char *key, const char *value)
{
	Onnx__StringStringEntryProto **props, *e;
	char *v;

	if (!value)
		return metadata_remove(proto, key);
	v = strdup(value);
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < proto->n_metadata_props; i++) {
		e = proto->metadata_props[i];
		if (e->key && strcmp(e->key, key) == 0) {
			free(e->value);
			e->value = v;
			return 0;
		}
	}
	props = realloc(proto->metadata_props, (proto->n_metadata_props + 1) * sizeof(*props));
	if (props)
		proto->metadata_props = props;
	e = malloc(sizeof(*e));
	if (e) {
		onnx__string_string_entry_proto__init(e);
		e->key = strdup(key);
	}
	if (!props || !e || !e->key) {
		free(e ? e->key : NULL);
		free(e);
		free(v);
		return -ENOMEM;
	}
	e->value = v;
	proto->metadata_props[proto->n_metadata_props++] = e;
	return 0;
}
