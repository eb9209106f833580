/* SPDX-License-Identifier: MIT */
/*
 * ort-run: run an ONNX model with ONNX Runtime's CPU provider (graph optimizations on).
 *
 *   ort-run [--custom-ops LIB]... [--ep LIB [--ep-option KEY=VALUE]...] [--threads N]
 *           [--config KEY=VALUE]...
 *           [--profile PREFIX] [--runs N] [--warm PREFIX] [--no-optimize]
 *           MODEL.onnx [IN.bin...] -- OUT_PREFIX
 *
 * --ep registers LIB as an execution-provider library and appends its
 * OnnxPassSparse device before the CPU EP. --profile enables ORT's profiler and
 * prints "profile<TAB>path" after the outputs; --ep-option passes an option to
 * the EP; --runs runs the model N times (outputs of the last run), for a
 * profile of warm runs; --warm first runs it once on other inputs,
 * PREFIX.0.bin, PREFIX.1.bin, ... (say of another size, for kernels that keep
 * state from their first run). --threads sets the intra-op
 * threads (default 1); --config adds a session config entry.
 *
 * Inputs are given in the order of the model's graph inputs. Output N is written to
 * OUT_PREFIX.N.bin and a line "N<TAB>name<TAB>path" is printed on stdout.
 *
 * Tensor file: one ASCII header line "ORTT <dtype> <rank> <d0> ... <dn-1>\n" followed by
 * the elements, row-major, little-endian. dtype: float32 float16 bfloat16 float64 int8
 * uint8 int32 int64 bool. Exit status 0 on success, 1 on any error (message on stderr).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ortlib.h"

#define TENSOR_MAX_RANK 16
#define HEADER_MAX 512

struct dtype_desc {
	const char *name;
	ONNXTensorElementDataType type;
	size_t size;
};

static const struct dtype_desc dtypes[] = {
	{ "float32", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, 4 },
	{ "float16", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, 2 },
	{ "bfloat16", ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16, 2 },
	{ "float64", ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, 8 },
	{ "int8", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8, 1 },
	{ "uint8", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, 1 },
	{ "int32", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, 4 },
	{ "int64", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, 8 },
	{ "bool", ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL, 1 },
};

struct tensor {
	const struct dtype_desc *dtype;
	size_t rank;
	int64_t dims[TENSOR_MAX_RANK];
	size_t nbytes;
	void *data;
};

struct run {
	OrtEnv *env;
	struct ortlib_session s;
	struct tensor *inputs;
	OrtValue **input_values, **output_values;
};

static const struct dtype_desc *dtype_by_name(const char *name)
{
	for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
		if (strcmp(dtypes[i].name, name) == 0)
			return &dtypes[i];
	return NULL;
}

static const struct dtype_desc *dtype_by_type(ONNXTensorElementDataType type)
{
	for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
		if (dtypes[i].type == type)
			return &dtypes[i];
	return NULL;
}

/* Number of bytes of a tensor of dims, or -ERANGE on overflow. */
static int tensor_size(struct tensor *t)
{
	size_t n = t->dtype->size;

	for (size_t i = 0; i < t->rank; i++) {
		if (t->dims[i] < 0)
			return -EINVAL;
		if (t->dims[i] > 0 && n > SIZE_MAX / (uint64_t)t->dims[i])
			return -ERANGE;
		n *= (size_t)t->dims[i];
	}
	t->nbytes = n;
	return 0;
}

static int header_parse(char *line, struct tensor *t)
{
	char *save = NULL, *tok, *end;
	unsigned long long rank;

	tok = strtok_r(line, " \n", &save);
	if (!tok || strcmp(tok, "ORTT") != 0)
		return -EINVAL;
	tok = strtok_r(NULL, " \n", &save);
	t->dtype = tok ? dtype_by_name(tok) : NULL;
	if (!t->dtype)
		return -EINVAL;
	tok = strtok_r(NULL, " \n", &save);
	if (!tok)
		return -EINVAL;
	rank = strtoull(tok, &end, 10);
	if (*end || rank > TENSOR_MAX_RANK)
		return -EINVAL;
	t->rank = rank;
	for (size_t i = 0; i < t->rank; i++) {
		tok = strtok_r(NULL, " \n", &save);
		if (!tok)
			return -EINVAL;
		errno = 0;
		t->dims[i] = strtoll(tok, &end, 10);
		if (*end || errno || t->dims[i] < 0)
			return -EINVAL;
	}
	if (strtok_r(NULL, " \n", &save))
		return -EINVAL;
	return tensor_size(t);
}

static int tensor_read(const char *path, struct tensor *ret)
{
	char line[HEADER_MAX];
	struct tensor t = { 0 };
	FILE *f;
	int r = -EINVAL;

	f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "ort-run: %s: %s\n", path, strerror(errno));
		return -errno;
	}
	if (!fgets(line, sizeof(line), f) || !strchr(line, '\n') || header_parse(line, &t) < 0) {
		fprintf(stderr, "ort-run: %s: bad tensor header\n", path);
		goto out;
	}
	t.data = malloc(t.nbytes ? t.nbytes : 1);
	if (!t.data) {
		r = -ENOMEM;
		goto out;
	}
	if (fread(t.data, 1, t.nbytes, f) != t.nbytes || fgetc(f) != EOF) {
		fprintf(stderr, "ort-run: %s: data size does not match the header\n", path);
		free(t.data);
		goto out;
	}
	*ret = t;
	r = 0;
out:
	fclose(f);
	return r;
}

static int tensor_write(const char *path, const struct tensor *t)
{
	FILE *f;
	int r = 0;

	f = fopen(path, "wb");
	if (!f) {
		fprintf(stderr, "ort-run: %s: %s\n", path, strerror(errno));
		return -errno;
	}
	fprintf(f, "ORTT %s %zu", t->dtype->name, t->rank);
	for (size_t i = 0; i < t->rank; i++)
		fprintf(f, " %" PRId64, t->dims[i]);
	fputc('\n', f);
	if (t->nbytes)
		fwrite(t->data, 1, t->nbytes, f);
	if (ferror(f))
		r = -EIO;
	if (fclose(f) != 0)
		r = -EIO;
	if (r < 0)
		fprintf(stderr, "ort-run: %s: write failed\n", path);
	return r;
}

static void inputs_free(struct run *r)
{
	for (size_t i = 0; r->input_values && i < r->s.n_inputs; i++)
		ortlib_api->ReleaseValue(r->input_values[i]);
	for (size_t i = 0; r->inputs && i < r->s.n_inputs; i++)
		free(r->inputs[i].data);
	free(r->input_values);
	free(r->inputs);
	r->input_values = NULL;
	r->inputs = NULL;
}

static void run_free(struct run *r)
{
	inputs_free(r);
	for (size_t i = 0; r->output_values && i < r->s.n_outputs; i++)
		ortlib_api->ReleaseValue(r->output_values[i]);
	free(r->output_values);
	ortlib_session_close(&r->s);
	if (r->env)
		ortlib_api->ReleaseEnv(r->env);
}

static int profile_end(struct run *r)
{
	OrtAllocator *alloc;
	char *path = NULL;
	int k;

	k = ortlib_check(ortlib_api->GetAllocatorWithDefaultOptions(&alloc), "GetAllocator");
	if (k == 0)
		k = ortlib_check(ortlib_api->SessionEndProfiling(r->s.session, alloc, &path),
			      "SessionEndProfiling");
	if (k == 0) {
		printf("profile\t%s\n", path);
		k = ortlib_check(ortlib_api->AllocatorFree(alloc, path), "AllocatorFree");
	}
	return k;
}

static int inputs_load(struct run *r, char **paths, size_t n)
{
	if (n != r->s.n_inputs) {
		fprintf(stderr, "ort-run: the model has %zu inputs, %zu given:", r->s.n_inputs, n);
		for (size_t i = 0; i < r->s.n_inputs; i++)
			fprintf(stderr, " %s", r->s.input_names[i]);
		fputc('\n', stderr);
		return -EINVAL;
	}
	r->inputs = calloc(n ? n : 1, sizeof(*r->inputs));
	r->input_values = calloc(n ? n : 1, sizeof(*r->input_values));
	if (!r->inputs || !r->input_values)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct tensor *t = &r->inputs[i];
		int k = tensor_read(paths[i], t);

		if (k < 0)
			return k;
		k = ortlib_check(ortlib_api->CreateTensorWithDataAsOrtValue(r->s.meminfo, t->data, t->nbytes,
								  t->dims, t->rank,
								  t->dtype->type,
								  &r->input_values[i]),
			      r->s.input_names[i]);
		if (k < 0)
			return k;
	}
	return 0;
}

static int output_to_tensor(OrtValue *value, struct tensor *ret)
{
	OrtTensorTypeAndShapeInfo *info = NULL;
	ONNXTensorElementDataType type;
	struct tensor t = { 0 };
	int is_tensor = 0, k;

	k = ortlib_check(ortlib_api->IsTensor(value, &is_tensor), "IsTensor");
	if (k < 0 || !is_tensor)
		return k < 0 ? k : -EMEDIUMTYPE;
	k = ortlib_check(ortlib_api->GetTensorTypeAndShape(value, &info), "GetTensorTypeAndShape");
	if (k == 0)
		k = ortlib_check(ortlib_api->GetTensorElementType(info, &type), "GetTensorElementType");
	if (k == 0)
		k = ortlib_check(ortlib_api->GetDimensionsCount(info, &t.rank), "GetDimensionsCount");
	if (k == 0 && t.rank > TENSOR_MAX_RANK)
		k = -E2BIG;
	if (k == 0)
		k = ortlib_check(ortlib_api->GetDimensions(info, t.dims, t.rank), "GetDimensions");
	ortlib_api->ReleaseTensorTypeAndShapeInfo(info);
	if (k < 0)
		return k;
	t.dtype = dtype_by_type(type);
	if (!t.dtype)
		return -EMEDIUMTYPE;
	k = tensor_size(&t);
	if (k == 0)
		k = ortlib_check(ortlib_api->GetTensorMutableData(value, &t.data), "GetTensorMutableData");
	if (k == 0)
		*ret = t;
	return k;
}

static int outputs_write(struct run *r, const char *prefix)
{
	for (size_t i = 0; i < r->s.n_outputs; i++) {
		struct tensor t = { 0 };
		char *path;
		int k;

		k = output_to_tensor(r->output_values[i], &t);
		if (k == -EMEDIUMTYPE || k == -E2BIG)
			fprintf(stderr, "ort-run: output %s: not a tensor of a supported type/rank\n",
				r->s.output_names[i]);
		if (k < 0)
			return k;
		if (asprintf(&path, "%s.%zu.bin", prefix, i) < 0)
			return -ENOMEM;
		k = tensor_write(path, &t);
		if (k == 0)
			printf("%zu\t%s\t%s\n", i, r->s.output_names[i], path);
		free(path);
		if (k < 0)
			return k;
	}
	return 0;
}

static int run_model(struct run *r)
{
	const struct ortlib_session *s = &r->s;

	if (!r->output_values)
		r->output_values = calloc(s->n_outputs ? s->n_outputs : 1,
					  sizeof(*r->output_values));
	if (!r->output_values)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_outputs; i++) {
		if (r->output_values[i])
			ortlib_api->ReleaseValue(r->output_values[i]);
		r->output_values[i] = NULL;
	}
	return ortlib_check(ortlib_api->Run(s->session, NULL, (const char *const *)s->input_names,
					    (const OrtValue *const *)r->input_values, s->n_inputs,
					    (const char *const *)s->output_names, s->n_outputs,
					    r->output_values), "Run");
}

static int usage(void)
{
	fprintf(stderr, "usage: ort-run [--custom-ops LIB]... [--ep LIB [--ep-option K=V]...] "
		"[--threads N] "
		"[--config KEY=VALUE]... [--profile PREFIX] [--runs N] [--warm PREFIX] "
		"[--no-optimize] MODEL.onnx "
		"[IN.bin...] -- OUT_PREFIX\n");
	return 1;
}

/* Options before the model; returns the index of the model or -1. */
static int opts_parse(int argc, char **argv, struct ortlib_options *o, int *runs,
		      const char **warm)
{
	int i = 1;

	ortlib_options_init(o);
	for (; i < argc && strncmp(argv[i], "--", 2) == 0 && argv[i][2]; i++) {
		if (strcmp(argv[i], "--no-optimize") == 0)
			o->optimize = 0;
		else if (strcmp(argv[i], "--profile") == 0 && i + 1 < argc)
			o->profile = argv[++i];
		else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
			*runs = atoi(argv[++i]);
		else if (strcmp(argv[i], "--warm") == 0 && i + 1 < argc)
			*warm = argv[++i];
		else if (i + 1 < argc && ortlib_options_parse(o, argv[i], argv[i + 1]) == 1)
			i++;
		else
			return -1;
	}
	return i;
}

/* One run on the inputs PREFIX.0.bin ... (as many as the model has), then freed. */
static int warm_run(struct run *r, const char *prefix)
{
	char **paths = calloc(r->s.n_inputs ? r->s.n_inputs : 1, sizeof(*paths));
	int k = paths ? 0 : -ENOMEM;

	for (size_t i = 0; k == 0 && i < r->s.n_inputs; i++)
		if (asprintf(&paths[i], "%s.%zu.bin", prefix, i) < 0)
			k = -ENOMEM;
	if (k == 0)
		k = inputs_load(r, paths, r->s.n_inputs);
	if (k == 0)
		k = run_model(r);
	inputs_free(r);
	for (size_t i = 0; paths && i < r->s.n_inputs; i++)
		free(paths[i]);
	free(paths);
	return k;
}

int main(int argc, char **argv)
{
	size_t n_in;
	struct run r = { 0 };
	struct ortlib_options o;
	const char *warm = NULL;
	int i, sep, k, runs = 1;

	i = opts_parse(argc, argv, &o, &runs, &warm);
	if (i < 0 || runs < 1)
		return usage();
	for (sep = i; sep < argc && strcmp(argv[sep], "--") != 0; sep++)
		;
	if (i >= sep || sep + 2 != argc)
		return usage();
	n_in = (size_t)(sep - i - 1);

	if (ortlib_init("ort-run") < 0)
		return 1;
	k = ortlib_env_open(&r.env, ORT_LOGGING_LEVEL_ERROR, &o);
	if (k == 0)
		k = ortlib_session_open(&r.s, r.env, argv[i], &o);
	if (k == 0 && warm)
		k = warm_run(&r, warm);
	if (k == 0)
		k = inputs_load(&r, argv + i + 1, n_in);
	for (int n = 0; k == 0 && n < runs; n++)
		k = run_model(&r);
	if (k == 0)
		k = outputs_write(&r, argv[sep + 1]);
	if (k == 0 && o.profile)
		k = profile_end(&r);
	if (k == -ENOMEM)
		fprintf(stderr, "ort-run: out of memory\n");
	run_free(&r);
	return k < 0 ? 1 : 0;
}
