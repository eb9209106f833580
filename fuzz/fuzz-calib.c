/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: calibration data (src/calib.c). The first byte picks the
 * form, the rest is the file:
 *   even  one .npz file (zip of .npy arrays)
 *   odd   test_data_set_0/input_0.pb (a TensorProto) in a folder
 * Each is opened and read against a model with two inputs, x: float32
 * ["n", 8] and i: int64 [2], so the model check runs on whatever parses.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char top[PATH_MAX];

static void files_remove(void)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/x.npz", top);
	unlink(path);
	snprintf(path, sizeof(path), "%s/sets/test_data_set_0/input_0.pb", top);
	unlink(path);
	snprintf(path, sizeof(path), "%s/sets/test_data_set_0", top);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/sets", top);
	rmdir(path);
	rmdir(top);
}

static Onnx__ValueInfoProto *input(const char *name, int32_t dtype, const int64_t *dims,
				   size_t n_dims)
{
	Onnx__ValueInfoProto *v = calloc(1, sizeof(*v));
	Onnx__TypeProto *type = calloc(1, sizeof(*type));
	Onnx__TypeProto__Tensor *tt = calloc(1, sizeof(*tt));
	Onnx__TensorShapeProto *shape = calloc(1, sizeof(*shape));

	onnx__value_info_proto__init(v);
	onnx__type_proto__init(type);
	onnx__type_proto__tensor__init(tt);
	onnx__tensor_shape_proto__init(shape);
	v->name = strdup(name);
	v->type = type;
	type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
	type->tensor_type = tt;
	tt->has_elem_type = 1;
	tt->elem_type = dtype;
	tt->shape = shape;
	shape->dim = calloc(n_dims, sizeof(*shape->dim));
	shape->n_dim = n_dims;
	for (size_t i = 0; i < n_dims; i++) {
		Onnx__TensorShapeProto__Dimension *d = calloc(1, sizeof(*d));

		onnx__tensor_shape_proto__dimension__init(d);
		if (dims[i] < 0) {
			d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
			d->dim_param = strdup("n");
		} else {
			d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
			d->dim_value = dims[i];
		}
		shape->dim[i] = d;
	}
	return v;
}

static const Onnx__ModelProto *model(void)
{
	static Onnx__ModelProto *m;
	Onnx__GraphProto *g;

	if (m)
		return m;
	m = calloc(1, sizeof(*m));
	g = calloc(1, sizeof(*g));
	onnx__model_proto__init(m);
	onnx__graph_proto__init(g);
	m->graph = g;
	g->input = calloc(2, sizeof(*g->input));
	g->input[g->n_input++] = input("x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
				       (const int64_t[]){ -1, 8 }, 2);
	g->input[g->n_input++] = input("i", ONNX__TENSOR_PROTO__DATA_TYPE__INT64,
				       (const int64_t[]){ 2 }, 1);
	return m;
}

static int write_file(const char *path, const uint8_t *data, size_t size)
{
	FILE *f = fopen(path, "wb");

	if (!f)
		abort();
	if (size && fwrite(data, 1, size, f) != size)
		abort();
	return fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct onnxpass_error err = { 0 };
	struct opass_calib_source *src = NULL;
	struct opass_calib_batch *batch = NULL;
	char path[PATH_MAX + 64];
	int r;

	if (!top[0]) {
		char tmpl[] = "/tmp/onnx-pass-fuzz-calib-XXXXXX";

		if (!mkdtemp(tmpl))
			abort();
		snprintf(top, sizeof(top), "%s", tmpl);
		snprintf(path, sizeof(path), "%s/sets", top);
		if (mkdir(path, 0755) < 0)
			abort();
		snprintf(path, sizeof(path), "%s/sets/test_data_set_0", top);
		if (mkdir(path, 0755) < 0)
			abort();
		atexit(files_remove);
	}
	if (size < 1)
		return 0;
	if (data[0] % 2 == 0) {
		snprintf(path, sizeof(path), "%s/x.npz", top);
		write_file(path, data + 1, size - 1);
	} else {
		snprintf(path, sizeof(path), "%s/sets/test_data_set_0/input_0.pb", top);
		write_file(path, data + 1, size - 1);
		snprintf(path, sizeof(path), "%s/sets", top);
	}
	r = opass_calib_open(path, &src, &err);
	for (size_t i = 0; r == 0 && i < opass_calib_count(src); i++) {
		r = opass_calib_read(src, i, model(), &batch, &err);
		if (r == 0) {
			/* touch every byte: ASan catches a short buffer */
			volatile uint8_t sum = 0;

			for (size_t t = 0; t < batch->n_tensors; t++)
				for (size_t k = 0; k < batch->tensors[t].size; k++)
					sum += ((const uint8_t *)batch->tensors[t].data)[k];
			(void)sum;
		}
		batch = opass_calib_batch_free(batch);
	}
	if (r < 0 && (!err.message[0] || strchr(err.message, '\n')))
		abort(); /* every failure is one line */
	opass_calib_free(src);
	return 0;
}
