/* SPDX-License-Identifier: MIT */
/*
 * Test driver for src/calib.c and src/ort_runtime.c (tests/test_calib.py):
 *   calib-tool read MODEL PATH          every batch, checked against MODEL
 *   calib-tool file FILE                one .npz / .pb file, no model check
 *   calib-tool run MODEL PATH OUT...    every batch run in ONNX Runtime
 *   calib-tool mutate MODEL FILE        truncations and byte flips of FILE:
 *                                       each must read or fail with one line
 * read/file/run print one JSON document: {"batches": [{"path": ...,
 * "tensors": [{"name", "dtype", "dims", "hex"}]}]}; errors go to stderr as
 * "calib-tool: error: MESSAGE", exit 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "calib.h"
#include "model.h"
#include "ort_runtime.h"

static int fail(const struct onnxpass_error *err)
{
	fprintf(stderr, "calib-tool: error: %s\n", err->message);
	return 1;
}

static cJSON *tensors_json(const struct opass_calib_tensor *t, size_t n)
{
	cJSON *list = cJSON_CreateArray();

	for (size_t i = 0; i < n; i++) {
		cJSON *o = cJSON_CreateObject(), *dims = cJSON_CreateArray();
		char *hex = malloc(2 * t[i].size + 1);

		for (size_t k = 0; k < t[i].size; k++)
			sprintf(hex + 2 * k, "%02x", ((const unsigned char *)t[i].data)[k]);
		hex[2 * t[i].size] = '\0';
		for (size_t k = 0; k < t[i].n_dims; k++)
			cJSON_AddItemToArray(dims, cJSON_CreateNumber((double)t[i].dims[k]));
		cJSON_AddStringToObject(o, "name", t[i].name);
		cJSON_AddNumberToObject(o, "dtype", t[i].dtype);
		cJSON_AddItemToObject(o, "dims", dims);
		cJSON_AddStringToObject(o, "hex", hex);
		free(hex);
		cJSON_AddItemToArray(list, o);
	}
	return list;
}

static void add_batch(cJSON *batches, const char *path, const struct opass_calib_tensor *t, size_t n)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "path", path);
	cJSON_AddItemToObject(o, "tensors", tensors_json(t, n));
	cJSON_AddItemToArray(batches, o);
}

static int print_json(cJSON *doc)
{
	char *text = cJSON_PrintUnformatted(doc);

	puts(text);
	free(text);
	cJSON_Delete(doc);
	return 0;
}

static int cmd_read(const char *model_path, const char *path, char **outputs, size_t n_outputs)
{
	struct onnxpass_error err = { 0 };
	struct onnxpass_model *model = NULL;
	struct opass_calib_source *src = NULL;
	struct opass_ort *ort = NULL;
	struct opass_ort_session *session = NULL;
	cJSON *doc = cJSON_CreateObject(), *batches = cJSON_AddArrayToObject(doc, "batches");
	int r;

	r = onnxpass_model_load_file(model_path, &model, &err);
	if (r == 0)
		r = opass_calib_open(path, &src, &err);
	if (r == 0 && outputs) {
		void *bytes = NULL;
		size_t size = 0;

		r = opass_ort_open(&ort, &err);
		if (r == 0)
			r = onnxpass_model_save_bytes(model, &bytes, &size, &err);
		if (r == 0)
			r = opass_ort_session_new(ort, bytes, size, 1, NULL, &session, &err);
		free(bytes);
	}
	for (size_t i = 0; r == 0 && i < opass_calib_count(src); i++) {
		struct opass_calib_batch *batch = NULL;
		struct opass_calib_tensor *out = NULL;

		r = opass_calib_read(src, i, model->proto, &batch, &err);
		if (r == 0 && !outputs)
			add_batch(batches, batch->path, batch->tensors, batch->n_tensors);
		if (r == 0 && outputs) {
			r = opass_ort_session_run(session, batch, (const char *const *)outputs,
						  n_outputs, &out, &err);
			if (r == 0)
				add_batch(batches, batch->path, out, n_outputs);
			opass_calib_tensors_free(out, r == 0 ? n_outputs : 0);
		}
		opass_calib_batch_free(batch);
	}
	opass_ort_session_free(session);
	opass_ort_close(ort);
	opass_calib_free(src);
	onnxpass_model_free(model);
	if (r < 0) {
		cJSON_Delete(doc);
		return fail(&err);
	}
	return print_json(doc);
}

static int cmd_file(const char *path)
{
	struct onnxpass_error err = { 0 };
	struct opass_calib_batch *batch = NULL;
	cJSON *doc = cJSON_CreateObject(), *batches = cJSON_AddArrayToObject(doc, "batches");

	if (opass_calib_read_file(path, &batch, &err) < 0) {
		cJSON_Delete(doc);
		return fail(&err);
	}
	add_batch(batches, batch->path, batch->tensors, batch->n_tensors);
	opass_calib_batch_free(batch);
	return print_json(doc);
}

static int read_all(const char *path, unsigned char **ret, size_t *ret_size)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	size_t n = 0, cap = 0, k;

	if (!f)
		return -errno;
	do {
		if (n == cap && !(buf = realloc(buf, cap = cap ? 2 * cap : 4096)))
			abort();
		k = fread(buf + n, 1, cap - n, f);
		n += k;
	} while (k);
	fclose(f);
	*ret = buf;
	*ret_size = n;
	return 0;
}

/* One mutated file: read it, and require success or one clean error line. */
static int try_one(const char *tmp, const unsigned char *data, size_t size,
		   const Onnx__ModelProto *proto, const char *what, unsigned *n_ok, unsigned *n_err)
{
	struct onnxpass_error err = { 0 };
	struct opass_calib_source *src = NULL;
	struct opass_calib_batch *batch = NULL;
	FILE *f = fopen(tmp, "wb");
	int r;

	if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
		perror(tmp);
		return -1;
	}
	r = opass_calib_open(tmp, &src, &err);
	if (r == 0)
		r = opass_calib_read(src, 0, proto, &batch, &err);
	opass_calib_batch_free(batch);
	opass_calib_free(src);
	if (r == 0) {
		(*n_ok)++;
		return 0;
	}
	if (!err.message[0] || strchr(err.message, '\n') || !strstr(err.message, tmp)) {
		fprintf(stderr, "%s: bad error message: '%s'\n", what, err.message);
		return -1;
	}
	(*n_err)++;
	return 0;
}

static int cmd_mutate(const char *model_path, const char *path)
{
	struct onnxpass_error err = { 0 };
	struct onnxpass_model *model = NULL;
	unsigned char *data = NULL, *copy;
	unsigned n_ok = 0, n_err = 0, seed = 12345;
	char tmp[] = "/tmp/calib-tool-XXXXXX.npz", what[64];
	size_t size = 0;
	int fd, r = 0;

	if (onnxpass_model_load_file(model_path, &model, &err) < 0)
		return fail(&err);
	if (read_all(path, &data, &size) < 0) {
		perror(path);
		return 1;
	}
	fd = mkstemps(tmp, 4);
	if (fd < 0) {
		perror("mkstemps");
		return 1;
	}
	close(fd);
	copy = malloc(size + 1);
	/* every truncation */
	for (size_t len = 0; r == 0 && len < size; len++) {
		snprintf(what, sizeof(what), "truncated to %zu", len);
		r = try_one(tmp, data, len, model->proto, what, &n_ok, &n_err);
	}
	/* single random byte changes, and bursts of 4 */
	for (unsigned i = 0; r == 0 && size && i < 3000; i++) {
		memcpy(copy, data, size);
		for (unsigned k = 0; k < (i % 2 ? 4u : 1u); k++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % size;
			seed = seed * 1103515245u + 12345u;
			copy[at] = (unsigned char)(i % 3 == 0 ? 0xff : seed >> 16);
		}
		snprintf(what, sizeof(what), "mutation %u", i);
		r = try_one(tmp, copy, size, model->proto, what, &n_ok, &n_err);
	}
	unlink(tmp);
	free(copy);
	free(data);
	onnxpass_model_free(model);
	printf("{\"ok\": %u, \"errors\": %u}\n", n_ok, n_err);
	return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "read") == 0)
		return cmd_read(argv[2], argv[3], NULL, 0);
	if (argc == 3 && strcmp(argv[1], "file") == 0)
		return cmd_file(argv[2]);
	if (argc >= 5 && strcmp(argv[1], "run") == 0)
		return cmd_read(argv[2], argv[3], argv + 4, (size_t)argc - 4);
	if (argc == 4 && strcmp(argv[1], "mutate") == 0)
		return cmd_mutate(argv[2], argv[3]);
	fputs("usage: calib-tool read MODEL PATH | file FILE | run MODEL PATH OUTPUT... | "
	      "mutate MODEL FILE\n", stderr);
	return 2;
}
