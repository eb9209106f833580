/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "external.h"
#include "filemap.h"
#include "fileio.h"
#include "proto_walk.h"
#include "store.h"
#include "strmap.h"

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

/* Side files opened so far (most models have one). */
struct side_file {
	char *path;
	int fd;
	uint64_t size;
};

struct load_ctx {
	const char *base_dir;
	struct opass_store *store;
	bool had_external;
	struct side_file *files;
	size_t n_files;
	struct opass_store_src *srcs;  /* initializers to map */
	size_t n_srcs;
	struct onnxpass_error *err;
};

static bool is_external(const Onnx__TensorProto *t)
{
	return t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
}

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

/* The open side file at path (opened on first use; takes path). */
static int side_file_get(struct load_ctx *ctx, char *path, struct side_file **ret,
			 struct onnxpass_error *err)
{
	struct side_file *files, *f;
	struct stat st;
	int fd, r = 0;

	for (size_t i = 0; i < ctx->n_files; i++)
		if (strcmp(ctx->files[i].path, path) == 0) {
			free(path);
			*ret = &ctx->files[i];
			return 0;
		}
	files = realloc(ctx->files, (ctx->n_files + 1) * sizeof(*files));
	if (!files) {
		free(path);
		return opass_error(err, -ENOMEM, "out of memory");
	}
	ctx->files = files;
	/* O_NONBLOCK: a FIFO in place of the side file must not block */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0)
		r = opass_error(err, -errno, "%s: %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		r = opass_error(err, -EISDIR, "%s: not a regular file", path);
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		free(path);
		return r;
	}
	f = &ctx->files[ctx->n_files++];
	*f = (struct side_file){ .path = path, .fd = fd, .size = (uint64_t)st.st_size };
	*ret = f;
	return 0;
}

/* Where t's bytes are: an open side file and a checked range. */
static int ext_resolve(struct load_ctx *ctx, const Onnx__TensorProto *t, struct side_file **ret_file,
		       struct ext_ref *ret_ref)
{
	const char *name = t->name ? t->name : "";
	struct ext_ref ref = { 0 };
	struct side_file *file = NULL;
	char *path = NULL;
	int r;

	ctx->had_external = true;
	if (!ctx->base_dir)
		return opass_error(ctx->err, -ENOENT,
				   "tensor '%s' uses external data but the model has no folder", name);
	r = ext_ref_parse(t, &ref, ctx->err);
	if (r == 0)
		r = ext_path_check(ctx->base_dir, ref.location, name, &path, ctx->err);
	if (r == 0)
		r = side_file_get(ctx, path, &file, ctx->err);
	if (r < 0)
		return r;
	if (!ref.has_length)
		ref.length = ref.offset <= file->size ? file->size - ref.offset : 0;
	if (ref.offset > file->size || ref.length > file->size - ref.offset)
		return opass_error(ctx->err, -EBADMSG,
				   "tensor '%s': external data offset %" PRIu64 " + length %" PRIu64
				   " is past the end of '%s' (%" PRIu64 " bytes)",
				   name, ref.offset, ref.length, ref.location, file->size);
	*ret_file = file;
	*ret_ref = ref;
	return 0;
}

/* The location wins over bytes a file also has inline. */
static int ext_drop_inline(Onnx__TensorProto *t, void *userdata)
{
	(void)userdata;
	if (is_external(t) && t->has_raw_data) {
		free(t->raw_data.data);
		t->raw_data = (ProtobufCBinaryData){ 0 };
		t->has_raw_data = false;
	}
	return 0;
}

/* Read t's bytes (the range ref of file) into raw_data. */
static int ext_read_from(struct load_ctx *ctx, Onnx__TensorProto *t, const struct side_file *file,
			 const struct ext_ref *ref)
{
	uint8_t *data = malloc(ref->length ? ref->length : 1);

	if (!data)
		return opass_error(ctx->err, -ENOMEM, "out of memory");
	for (uint64_t done = 0; done < ref->length;) {
		ssize_t n = pread(file->fd, data + done, ref->length - done, (off_t)(ref->offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(data);
			return opass_error(ctx->err, n < 0 ? -errno : -EIO, "%s: cannot read: %s", file->path,
					   n < 0 ? strerror(errno) : "file shrank");
		}
		done += (uint64_t)n;
	}
	t->raw_data.data = data;
	t->raw_data.len = ref->length;
	t->has_raw_data = true;
	ext_clear(t);
	return 0;
}

/* External initializers: the large ones go to the store (mapped, not
 * read), the others are read at once. */
static int ext_collect(Onnx__GraphProto *graph, void *userdata)
{
	struct load_ctx *ctx = userdata;

	for (size_t i = 0; i < graph->n_initializer; i++) {
		Onnx__TensorProto *t = graph->initializer[i];
		struct opass_store_src *srcs;
		struct side_file *file;
		struct ext_ref ref;
		int r;

		if (!is_external(t))
			continue;
		r = ext_resolve(ctx, t, &file, &ref);
		if (r == 0 && ref.length < OPASS_STORE_MIN_BYTES)
			r = ext_read_from(ctx, t, file, &ref);
		if (r < 0)
			return r;
		if (!is_external(t))
			continue;
		srcs = realloc(ctx->srcs, (ctx->n_srcs + 1) * sizeof(*srcs));
		if (!srcs)
			return opass_error(ctx->err, -ENOMEM, "out of memory");
		ctx->srcs = srcs;
		srcs[ctx->n_srcs++] = (struct opass_store_src){
			.tensor = t, .fd = file->fd, .offset = ref.offset, .length = ref.length,
		};
	}
	return 0;
}

/* Every other external tensor (Constant values, sparse initializers, and
 * large initializers the store could not take) is read into raw_data. */
static int ext_read(Onnx__TensorProto *t, void *userdata)
{
	struct load_ctx *ctx = userdata;
	struct side_file *file;
	struct ext_ref ref;
	int r;

	if (!is_external(t) || opass_filemap_holds(&ctx->store->map, t))
		return 0;
	r = ext_resolve(ctx, t, &file, &ref);
	return r < 0 ? r : ext_read_from(ctx, t, file, &ref);
}

int opass_external_load(Onnx__ModelProto *proto, const char *base_dir, struct opass_store *store,
			bool *ret_had_external, struct onnxpass_error *err)
{
	struct load_ctx ctx = { .base_dir = base_dir, .store = store, .err = err };
	int r;

	opass_proto_foreach_tensor(proto, ext_drop_inline, NULL);
	r = opass_proto_foreach_graph(proto, ext_collect, &ctx);
	/* without a work file (read-only folders and no /tmp) they are read */
	if (r == 0 && ctx.n_srcs)
		(void)opass_store_fill(store, base_dir, ctx.srcs, ctx.n_srcs);
	if (r == 0)
		r = opass_proto_foreach_tensor(proto, ext_read, &ctx);
	for (size_t i = 0; i < ctx.n_files; i++) {
		close(ctx.files[i].fd);
		free(ctx.files[i].path);
	}
	free(ctx.files);
	free(ctx.srcs);
	if (r == 0)
		*ret_had_external = ctx.had_external;
	return r;
}

/* --- saving ---------------------------------------------------------------- */

/* A tensor as it was before saving changed where its bytes are. */
struct saved_tensor {
	Onnx__TensorProto *tensor;
	Onnx__TensorProto was;
};

struct save_ctx {
	const struct opass_store *store;
	bool adopted;                   /* data_file is the store's work file */
	struct opass_atomic_file data_file;
	const char *location;
	struct saved_tensor *saved;
	size_t n_saved;
	size_t cap_saved;
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

/* Remember t's data fields and clear its external_data (restored later). */
static int stash(struct save_ctx *ctx, Onnx__TensorProto *t)
{
	if (ctx->n_saved == ctx->cap_saved) {
		size_t cap = ctx->cap_saved ? 2 * ctx->cap_saved : 64;
		struct saved_tensor *s = realloc(ctx->saved, cap * sizeof(*s));

		if (!s)
			return -ENOMEM;
		ctx->saved = s;
		ctx->cap_saved = cap;
	}
	ctx->saved[ctx->n_saved++] = (struct saved_tensor){ .tensor = t, .was = *t };
	t->external_data = NULL;
	t->n_external_data = 0;
	t->has_data_location = false;
	t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
	return 0;
}

static void save_restore(struct save_ctx *ctx)
{
	for (size_t i = 0; i < ctx->n_saved; i++) {
		Onnx__TensorProto *t = ctx->saved[i].tensor;
		const Onnx__TensorProto *was = &ctx->saved[i].was;

		for (size_t k = 0; k < t->n_external_data; k++)
			if (t->external_data[k])
				onnx__string_string_entry_proto__free_unpacked(t->external_data[k], NULL);
		free(t->external_data);
		t->external_data = was->external_data;
		t->n_external_data = was->n_external_data;
		t->raw_data = was->raw_data;
		t->has_raw_data = was->has_raw_data;
		t->has_data_location = was->has_data_location;
		t->data_location = was->data_location;
	}
	free(ctx->saved);
	ctx->saved = NULL;
	ctx->n_saved = 0;
}

static int write_bytes(struct save_ctx *ctx, const Onnx__TensorProto *t)
{
	/* the work file is what the model holds until it was published */
	if (opass_filemap_holds(&ctx->store->map, t) && !opass_store_is_published(ctx->store))
		return opass_atomic_copy(&ctx->data_file, ctx->store->fd,
					 opass_store_offset(ctx->store, t), t->raw_data.len);
	return opass_atomic_write(&ctx->data_file, t->raw_data.data, t->raw_data.len);
}

static int save_externalize(Onnx__TensorProto *t, void *userdata)
{
	static const uint8_t zeros[OPASS_EXTERNAL_ALIGN];
	struct save_ctx *ctx = userdata;
	uint64_t pad, offset, length = t->raw_data.len;
	Onnx__StringStringEntryProto **entries;

	if (!t->has_raw_data || t->raw_data.len < OPASS_EXTERNAL_MIN_BYTES)
		return 0;
	if (ctx->adopted && opass_filemap_holds(&ctx->store->map, t)) {
		offset = opass_store_offset(ctx->store, t);   /* already there */
	} else {
		pad = (OPASS_EXTERNAL_ALIGN - ctx->data_file.offset % OPASS_EXTERNAL_ALIGN) %
		      OPASS_EXTERNAL_ALIGN;
		opass_atomic_write(&ctx->data_file, zeros, pad);
		offset = ctx->data_file.offset;
		if (write_bytes(ctx, t) < 0)
			return ctx->data_file.error;
	}
	entries = calloc(3, sizeof(*entries));
	if (!entries || stash(ctx, t) < 0) {
		free(entries);
		return -ENOMEM;
	}
	entries[0] = entry_new("location", "%s", ctx->location);
	entries[1] = entry_new("offset", "%" PRIu64, offset);
	entries[2] = entry_new("length", "%" PRIu64, length);
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

/* A tensor the store holds is packed like an inline one. */
static int save_inline(Onnx__TensorProto *t, void *userdata)
{
	struct save_ctx *ctx = userdata;

	return opass_filemap_holds(&ctx->store->map, t) ? stash(ctx, t) : 0;
}

int opass_external_pack(Onnx__ModelProto *proto, const struct opass_store *store, void **ret_data,
			size_t *ret_size, struct onnxpass_error *err)
{
	struct save_ctx ctx = { .store = store };
	uint8_t *buf = NULL;
	size_t size = 0;
	int r;

	r = opass_proto_foreach_tensor(proto, save_inline, &ctx);
	if (r == 0) {
		size = onnx__model_proto__get_packed_size(proto);
		if (size >= ((size_t)2 << 30))
			r = opass_error(err, -EFBIG, "model is over 2 GiB: save it to a file with external data");
		else if (!(buf = malloc(size ? size : 1)))
			r = opass_error(err, -ENOMEM, "out of memory");
		else
			onnx__model_proto__pack(proto, buf);
	} else {
		opass_error(err, r, "out of memory");
	}
	save_restore(&ctx);
	if (r == 0) {
		*ret_data = buf;
		*ret_size = size;
	}
	return r;
}

static int count_held(Onnx__TensorProto *t, void *userdata)
{
	struct save_ctx *ctx = userdata;

	ctx->n_saved += opass_filemap_holds(&ctx->store->map, t);
	return 0;
}

/* The side file: the store's work file itself when every tensor it holds is
 * still in the model and it can be linked next to data_path (an unnamed file
 * on the same filesystem), else a new unnamed file. */
static int data_file_open(Onnx__ModelProto *proto, struct save_ctx *ctx, const char *data_path,
			  bool sync, struct onnxpass_error *err)
{
	const struct opass_store *store = ctx->store;
	struct onnxpass_error ignored = { 0 };

	if (store->fd >= 0 && !opass_store_is_published(store)) {
		opass_proto_foreach_dense_tensor(proto, count_held, ctx);
		ctx->adopted = ctx->n_saved == store->n_tensors &&
			       opass_atomic_adopt(data_path, store->fd, store->map.size, sync,
						  &ctx->data_file, &ignored) == 0;
		ctx->n_saved = 0;
		if (ctx->adopted)
			return 0;
	}
	return opass_atomic_open(data_path, sync, &ctx->data_file, err);
}

/* The side files an existing OUT refers to that are ours to replace:
 * BASE.data (older saves, onnx.save) and BASE.*.data, in OUT's folder. */
struct old_data {
	const char *base;
	struct opass_strmap names;
	int error;
};

static bool data_name_ours(const char *base, const char *name)
{
	size_t nb = strlen(base), nn = strlen(name);

	if (strchr(name, '/') || nn < nb + 5 || strncmp(name, base, nb) != 0 || name[nb] != '.')
		return false;
	return strcmp(name + nn - 5, ".data") == 0;
}

static int old_data_add(Onnx__TensorProto *t, void *userdata)
{
	struct old_data *old = userdata;

	for (size_t i = 0; i < t->n_external_data; i++) {
		const Onnx__StringStringEntryProto *e = t->external_data[i];

		if (e->key && e->value && strcmp(e->key, "location") == 0 &&
		    data_name_ours(old->base, e->value) &&
		    !opass_strmap_get(&old->names, e->value, NULL) &&
		    opass_strmap_put_copy(&old->names, e->value, NULL) < 0)
			old->error = -ENOMEM;
	}
	return 0;
}

/* Read OUT (when it is a model small enough to be one with external data). */
static void old_data_find(const char *path, struct old_data *old)
{
	struct onnxpass_error ignored = { 0 };
	struct opass_mapped_file file = { 0 };
	Onnx__ModelProto *proto;

	if (opass_file_map(path, &file, &ignored) < 0)
		return;
	proto = file.size <= ((size_t)256 << 20) ?
		onnx__model_proto__unpack(NULL, file.size, file.data) : NULL;
	if (proto)
		opass_proto_foreach_tensor(proto, old_data_add, old);
	onnx__model_proto__free_unpacked(proto, NULL);
	opass_file_unmap(&file);
}

static void old_data_remove(const char *path, struct old_data *old, const char *keep)
{
	char *copy = strdup(path), *dir = copy ? dirname(copy) : NULL;

	for (size_t i = 0; dir && i < old->names.cap; i++) {
		const char *name = old->names.slots[i].key;
		char *full;

		if (!name || strcmp(name, keep) == 0 || asprintf(&full, "%s/%s", dir, name) < 0)
			continue;
		unlink(full);
		free(full);
	}
	free(copy);
}

/* A new side file name next to OUT: the first of OUT.data, OUT.1.data,
 * OUT.2.data, ... that does not exist (the name is deterministic; a writer
 * that loses a race for it fails when linking, it never replaces it). */
static char *data_path_new(const char *path)
{
	struct stat st;

	for (unsigned i = 0; i < 1000; i++) {
		char *name = NULL;
		int n = i ? asprintf(&name, "%s.%u.data", path, i) : asprintf(&name, "%s.data", path);

		if (n < 0)
			return NULL;
		if (lstat(name, &st) < 0 && errno == ENOENT)
			return name;
		free(name);
	}
	errno = EEXIST;
	return NULL;
}

/*
 * OUT is the only commit point: the new side file gets a fresh name
 * (data_path_new) just before OUT is renamed over, and the side files
 * the replaced OUT used are removed after. A crash at any point leaves the
 * old pair or the new one (at worst with an unreferenced side file).
 */
static int commit_pair(struct opass_atomic_file *data, struct opass_atomic_file *model,
		       const char *data_path, struct onnxpass_error *err)
{
	const char *base = strrchr(model->path, '/') ? strrchr(model->path, '/') + 1 : model->path;
	struct old_data old = { .base = base };
	char *path = strdup(model->path);
	int r;

	if (!path)
		return opass_error(err, -ENOMEM, "out of memory");
	old_data_find(path, &old);
	r = opass_atomic_link_as(data, data_path);
	if (r < 0)
		opass_error(err, r, "%s: cannot write: %s", data_path, strerror(-r));
	if (r == 0) {
		r = opass_atomic_commit(model, err);
		if (r < 0)
			unlink(data_path);
	}
	if (r == 0 && !old.error)
		old_data_remove(path, &old, strrchr(data_path, '/') ? strrchr(data_path, '/') + 1 :
					    data_path);
	opass_strmap_fini(&old.names);
	free(path);
	return r;
}

int opass_external_save(Onnx__ModelProto *proto, struct opass_store *store, const char *path,
			bool sync, struct onnxpass_error *err)
{
	struct save_ctx ctx = { .store = store, .data_file = { .fd = -1 } };
	struct opass_atomic_file model_file = { .fd = -1 };
	char *data_path = NULL;
	const char *base;
	int r, lost = 0;

	r = opass_atomic_open(path, sync, &model_file, err);
	if (r == 0 && model_file.stream)
		r = opass_error_usage(err, "%s: cannot write a model with external data to a stream",
				      path);
	if (r == 0 && !(data_path = data_path_new(model_file.path)))
		r = opass_error(err, -errno, "%s: no free name for its external data: %s",
				model_file.path, strerror(errno));
	if (r < 0)
		goto out;
	base = strrchr(data_path, '/') ? strrchr(data_path, '/') + 1 : data_path;
	ctx.location = base;
	r = data_file_open(proto, &ctx, data_path, sync, err);
	if (r < 0)
		goto out;
	/* sparse initializers stay inline: onnx.load does not read their
	 * external data */
	r = opass_proto_foreach_dense_tensor(proto, save_externalize, &ctx);
	if (r == 0 && ctx.adopted)
		r = opass_atomic_truncate(&ctx.data_file);
	if (r < 0) {
		opass_error(err, r, "%s: cannot write external data: %s", model_file.path, strerror(-r));
		goto out;
	}
	if (opass_atomic_write_proto(&model_file, &proto->base) < 0)
		r = opass_error(err, model_file.error, "%s: cannot write: %s", path,
				strerror(-model_file.error));
	if (r == 0)
		r = commit_pair(&ctx.data_file, &model_file, data_path, err);
	if (r == 0 && ctx.adopted) {
		lost = opass_store_published(store);
		if (lost < 0)
			r = opass_error(err, lost, "%s: saved, but the model cannot stay loaded: %s",
					path, strerror(-lost));
	}
out:
	opass_atomic_abort(&ctx.data_file);
	opass_atomic_abort(&model_file);
	save_restore(&ctx);
	/* the tensors' bytes may be unmapped: they must not be read again */
	if (lost < 0)
		opass_filemap_detach_all(&store->map, proto);
	free(data_path);
	return r;
}
