/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: external-data descriptors. The input is text, one
 * "key=value" per line, describing up to 4 tensors of a small model whose
 * data lives in side files of a fixed folder (see files_make):
 *   tensor             start the next tensor (the first starts implicitly)
 *   dims=8,8           its dims (up to 8, any integers)
 *   dtype=1            its data_type
 *   inline=1           leave data_location at DEFAULT (keep float_data)
 *   anything else      an external_data entry (key and value as written)
 * The model is loaded with that folder as base and every pass list runs.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define MAX_TENSORS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void file_write(const char *dir, const char *name, size_t size)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f)
		abort();
	for (size_t i = 0; i < size; i++)
		fputc((int)((i * 37) & 0xff), f);
	fclose(f);
}

static char top[PATH_MAX];

/* Remove what files_make made (at exit). */
static void files_remove(void)
{
	static const char *const names[] = { "model/w.data", "model/empty.data", "model/sub/x.data",
					     "model/link.data", "model/inlink.data", "model/dirlink",
					     "outside.data" };
	static const char *const dirs[] = { "model/sub", "model/adir", "model", "" };
	char path[PATH_MAX + 32];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", top, names[i]);
		unlink(path);
	}
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", top, dirs[i]);
		rmdir(path);
	}
}

/* base/: w.data (4096 B), empty.data, sub/x.data (1024 B), adir/, link.data
 * -> ../outside.data (escapes), inlink.data -> w.data, dirlink -> sub */
static const char *files_make(void)
{
	static char base[PATH_MAX];
	char tmpl[] = "/tmp/onnx-pass-fuzz-XXXXXX", path[PATH_MAX];

	if (base[0])
		return base;
	if (!mkdtemp(tmpl))
		abort();
	snprintf(top, sizeof(top), "%s", tmpl);
	atexit(files_remove);
	snprintf(base, sizeof(base), "%s/model", tmpl);
	snprintf(path, sizeof(path), "%s/sub", base);
	if (mkdir(base, 0755) < 0 || mkdir(path, 0755) < 0)
		abort();
	snprintf(path, sizeof(path), "%s/adir", base);
	if (mkdir(path, 0755) < 0)
		abort();
	file_write(tmpl, "outside.data", 4096);
	file_write(base, "w.data", 4096);
	file_write(base, "empty.data", 0);
	file_write(base, "sub/x.data", 1024);
	snprintf(path, sizeof(path), "%s/link.data", base);
	if (symlink("../outside.data", path) < 0)
		abort();
	snprintf(path, sizeof(path), "%s/inlink.data", base);
	if (symlink("w.data", path) < 0)
		abort();
	snprintf(path, sizeof(path), "%s/dirlink", base);
	if (symlink("sub", path) < 0)
		abort();
	return base;
}

static void entry_add(Onnx__TensorProto *t, const char *key, const char *value)
{
	Onnx__StringStringEntryProto *e = calloc(1, sizeof(*e));

	onnx__string_string_entry_proto__init(e);
	e->key = strdup(key);
	e->value = strdup(value);
	t->external_data = realloc(t->external_data, (t->n_external_data + 1) * sizeof(*t->external_data));
	t->external_data[t->n_external_data++] = e;
}

static void dims_set(Onnx__TensorProto *t, const char *text)
{
	char *end;

	t->n_dims = 0;
	while (*text && t->n_dims < 8) {
		long long v = strtoll(text, &end, 10);

		if (end == text)
			break;
		t->dims[t->n_dims++] = v;
		text = *end == ',' ? end + 1 : end;
	}
}

/* Apply one "key=value" line to tensor t. */
static void line_apply(Onnx__TensorProto *t, char *line)
{
	char *eq = strchr(line, '=');
	const char *value = eq ? eq + 1 : "";

	if (eq)
		*eq = '\0';
	if (strcmp(line, "dims") == 0) {
		dims_set(t, value);
	} else if (strcmp(line, "dtype") == 0) {
		t->data_type = atoi(value);
	} else if (strcmp(line, "inline") == 0) {
		t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
	} else {
		entry_add(t, line, value);
		/* the data is in the side file: drop the inline copy */
		free(t->float_data);
		t->float_data = NULL;
		t->n_float_data = 0;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *base = files_make();
	Onnx__ModelProto *m = fuzz_model_new(MAX_TENSORS);
	char *text = malloc(size + 1), *save = NULL;
	size_t n = 0, model_size;
	uint8_t *model;

	memcpy(text, data, size);
	text[size] = '\0';
	for (size_t i = 0; i < MAX_TENSORS; i++) {
		Onnx__TensorProto *t = m->graph->initializer[i];

		t->dims = realloc(t->dims, 8 * sizeof(*t->dims));
		t->has_data_location = 1;
		t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
	}
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strcmp(line, "tensor") == 0) {
			if (++n == MAX_TENSORS)
				break;
			continue;
		}
		line_apply(m->graph->initializer[n], line);
	}
	/* tensors the input did not describe stay inline */
	for (size_t i = n + 1; i < MAX_TENSORS; i++)
		m->graph->initializer[i]->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
	free(text);
	model = fuzz_model_pack(m, &model_size);
	fuzz_run_lists(model, model_size, base, fuzz_config);
	free(model);
	return 0;
}
